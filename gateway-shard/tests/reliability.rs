//! Defects found by hostile probing, each reproduced over loopback against the testkit: the
//! shard neither loops nor drops what it should deliver.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_codec::{Compression, Limits};
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::{Reconnect, Shard, ShardConfig, ShardEvent};
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

mod common;

use common::Checked;

/// Skips events (each checked for continuity, see `common`) until one matches.
async fn until(events: &mut Checked, want: impl FnMut(&ShardEvent) -> bool) -> ShardEvent {
    events.until(want).await
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
    let (shard, events) = Shard::start(config(&gw, Compression::None).with_limits(limits))
        .await
        .unwrap();
    let mut events = Checked::new(events, "an_oversize_uncompressed_message_reidentifies_once");
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
    let (shard, events) = Shard::start(config(&gw, Compression::ZlibStream))
        .await
        .unwrap();
    let mut events = Checked::new(events, "a_dispatch_that_does_not_type_is_delivered_raw");
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

/// The user stops reading for 5 minutes (of paused time) while the gateway sends 50,000 events:
/// the shard buffers up to its byte budget, then stops reading the socket; heartbeats go on, the
/// quiet is not taken for a zombie, and afterwards every event arrives, in order, on the same
/// session.
#[tokio::test(start_paused = true)]
async fn a_slow_consumer_loses_nothing_and_heartbeats_go_on() {
    const EVENTS: u64 = 50_000;
    const BUDGET: usize = 256 * 1024;
    let gw = FakeGateway::start_with(
        GatewayConfig {
            identify_window: Duration::ZERO,
            heartbeat_interval: Duration::from_secs(5),
            world: WorldConfig::uniform(1, 1, 5),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let mut config = config(&gw, Compression::ZlibStream).with_event_buffer_bytes(BUDGET);
    config.event_buffer = 16;
    let (shard, events) = Shard::start(config).await.unwrap();
    let mut events = Checked::new(events, "a_slow_consumer_loses_nothing_and_heartbeats_go_on");
    until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await;
    let connection = gw.shard_connection(0).unwrap();
    let pad = "x".repeat(200);
    for i in 0..EVENTS {
        connection.dispatch("TESTKIT_EVENT", format!(r#"{{"i":{i},"pad":"{pad}"}}"#));
    }
    let heartbeats_before = gw.stats().heartbeats;
    // The consumer stops for 5 minutes.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let (_, peak) = shard.buffered_event_bytes();
    assert!(peak > 0, "events waited");
    assert!(
        peak <= BUDGET + 4096,
        "peak {peak} bytes over the budget of {BUDGET}"
    );
    let mut next_i = 0;
    let mut last_seq = 0;
    while next_i < EVENTS {
        match until(&mut events, |_| true).await {
            ShardEvent::Dispatch(d) => {
                assert!(d.seq > last_seq, "in order");
                last_seq = d.seq;
                if let Some(i) = common::numbered(&d, "TESTKIT_EVENT") {
                    assert_eq!(i, next_i, "no gap, no repeat");
                    next_i += 1;
                }
            }
            ShardEvent::Disconnected { code, reason, .. } => {
                panic!("disconnected ({code:?}, {reason}) after {next_i} events")
            }
            _ => {}
        }
    }
    // Heartbeats went on while the user was away: 300 s at 5 s, whatever the server read late.
    let sent = gw.stats().heartbeats - heartbeats_before;
    assert!(sent >= 50, "{sent} heartbeats in 5 minutes");
    assert!(shard.is_connected());
    shard.close(false).await;
}

/// The handshake says who is connecting, as Discord asks of bot libraries; gateways such as
/// Spacebar refuse a handshake without a User-Agent.
#[tokio::test]
async fn the_handshake_sends_a_discordbot_user_agent() {
    let gw = gateway().await;
    let (shard, _events) = Shard::start(config(&gw, Compression::None)).await.unwrap();
    let agent = gw.connections()[0].user_agent.clone().unwrap_or_default();
    assert!(agent.starts_with("DiscordBot (https://"), "{agent}");
    assert_eq!(agent, gateway_shard::USER_AGENT_VALUE);
    shard.close(false).await;
}

/// A gateway that cannot be reached: the user hears why, as events, while the shard keeps trying
/// within the unreachable cap.
#[tokio::test(start_paused = true)]
async fn refused_connections_reach_the_user_with_their_reason() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = ShardConfig::new(Token::new("t"), Intents::GUILDS)
        .with_gateway_url(format!("ws://127.0.0.1:{port}"))
        .with_seed(1);
    let (shard, events) = Shard::spawn(refused).unwrap();
    let mut events = Checked::new(
        events,
        "refused_connections_reach_the_user_with_their_reason",
    );
    for _ in 0..3 {
        let e = until(&mut events, |e| {
            matches!(e, ShardEvent::ConnectFailed { .. })
        })
        .await;
        let ShardEvent::ConnectFailed { reason, retry_in } = e else {
            unreachable!()
        };
        assert!(reason.contains("TCP connect"), "{reason}");
        assert!(retry_in <= Duration::from_secs(8));
    }
    shard.close(false).await;
}
