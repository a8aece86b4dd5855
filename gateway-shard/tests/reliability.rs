//! Defects found by hostile probing, each reproduced over loopback against the testkit: the
//! shard neither loops nor drops what it should deliver.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_codec::{Compression, Limits};
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::{Reconnect, Shard, ShardConfig, ShardEvent, ShardEvents};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, WorldConfig};

async fn gateway() -> FakeGateway {
    let config = GatewayConfig {
        identify_window: Duration::ZERO,
        world: WorldConfig::uniform(1, 1, 5),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await.unwrap()
}

fn config(gw: &FakeGateway, compression: Compression) -> ShardConfig {
    ShardConfig::new(Token::new(gw.config().token.clone()), Intents::GUILDS)
        .with_gateway_url(gw.url())
        .with_compression(compression)
        .with_seed(3)
}

async fn until(events: &mut ShardEvents, mut want: impl FnMut(&ShardEvent) -> bool) -> ShardEvent {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(600), events.next())
            .await
            .expect("no event in time")
            .expect("events ended");
        if want(&e) {
            return e;
        }
    }
}

/// An oversize message on an uncompressed connection is refused by the websocket before the
/// decoder sees it; it must start a new session like the compressed paths, not resume into the
/// same message forever.
#[tokio::test]
async fn an_oversize_uncompressed_message_reidentifies_once() {
    let gw = gateway().await;
    let limits = Limits {
        max_message_size: 64 * 1024,
        ..Limits::default()
    };
    let (shard, mut events) = Shard::start(config(&gw, Compression::None).with_limits(limits))
        .await
        .unwrap();
    until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await;
    gw.shard_connection(0)
        .unwrap()
        .inject(Fault::Oversize(100 * 1024));
    let e = until(&mut events, |e| {
        matches!(e, ShardEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            e,
            ShardEvent::Disconnected {
                next: Reconnect::Reidentify,
                ..
            }
        ),
        "{e:?}"
    );
    until(&mut events, |e| matches!(e, ShardEvent::Ready(_))).await;
    assert_eq!(gw.stats().resumes, 0, "never resumed into the same message");
    shard.close(false).await;
}

/// A GUILD_CREATE whose `d` does not fit the type still reaches the user, raw, in sequence.
#[tokio::test]
async fn a_dispatch_that_does_not_type_is_delivered_raw() {
    let gw = gateway().await;
    let (shard, mut events) = Shard::start(config(&gw, Compression::ZlibStream))
        .await
        .unwrap();
    let ShardEvent::Dispatch(first) =
        until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await
    else {
        unreachable!()
    };
    gw.shard_connection(0)
        .unwrap()
        .dispatch("GUILD_CREATE", r#"{"id":{"an":"object"}}"#);
    let ShardEvent::Dispatch(bad) =
        until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await
    else {
        unreachable!()
    };
    assert_eq!(bad.seq, first.seq + 1);
    assert!(matches!(&bad.event, DispatchEvent::Other(raw) if &*raw.name == "GUILD_CREATE"));
    shard.close(false).await;
}
