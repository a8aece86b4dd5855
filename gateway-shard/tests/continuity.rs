//! Every recovery keeps the user's stream whole: after each fault, the dispatches of a session
//! arrive with no gap and no repeat, and a new session is marked by READY (whose own sequence
//! number is 1). Each scenario runs against a fresh fake gateway over loopback.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_codec::{Compression, Limits};
use gateway_model::{Intents, Token};
use gateway_shard::{Shard, ShardConfig, ShardEvent};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, WorldConfig};

mod common;

use common::Checked;

/// Sends `n` dispatches on shard 0's live connection and reads them back.
async fn traffic(gw: &FakeGateway, events: &mut Checked, n: u64) {
    let connection = gw.shard_connection(0).expect("a live connection");
    for i in 0..n {
        connection.dispatch("TESTKIT_EVENT", format!(r#"{{"i":{i}}}"#));
    }
    events.dispatches(n).await;
}

async fn fake_gateway() -> FakeGateway {
    FakeGateway::start_with(
        GatewayConfig {
            identify_window: Duration::ZERO,
            world: WorldConfig::uniform(1, 1, 5),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap()
}

fn shard_config(gw: &FakeGateway, compression: Compression) -> ShardConfig {
    let limits = Limits {
        max_message_size: 64 * 1024,
        ..Limits::default()
    };
    ShardConfig::new(Token::new(gw.config().token.clone()), Intents::GUILDS)
        .with_gateway_url(gw.url())
        .with_compression(compression)
        .with_limits(limits)
        .with_seed(4)
}

/// Reads events until the shard is back: RESUMED or READY.
async fn back(events: &mut Checked) -> ShardEvent {
    events
        .until(|e| matches!(e, ShardEvent::Ready(_) | ShardEvent::Resumed { .. }))
        .await
}

#[derive(Debug, Clone, Copy)]
enum Then {
    Resumes,
    Reidentifies,
}

async fn scenario(name: &str, compression: Compression, fault: Fault, then: Then) {
    let gw = fake_gateway().await;
    let (shard, events) = Shard::spawn(shard_config(&gw, compression)).unwrap();
    let mut events = Checked::new(events, name);
    events.until(|e| matches!(e, ShardEvent::Dispatch(_))).await;
    traffic(&gw, &mut events, 3).await;
    let connection = gw.shard_connection(0).unwrap();
    let corrupt = matches!(fault, Fault::CorruptNext);
    connection.inject(fault);
    if corrupt {
        // The corrupted dispatch is lost with its stream, and replayed by the resume.
        connection.dispatch("TESTKIT_EVENT", r#"{"corrupted":true}"#);
    }
    let back = events
        .until(|e| matches!(e, ShardEvent::Ready(_) | ShardEvent::Resumed { .. }))
        .await;
    match then {
        Then::Resumes => assert!(
            matches!(back, ShardEvent::Resumed { .. }),
            "{name}: {back:?}"
        ),
        Then::Reidentifies => assert!(matches!(back, ShardEvent::Ready(_)), "{name}: {back:?}"),
    }
    traffic(&gw, &mut events, 3).await;
    shard.close(false).await;
}

#[tokio::test(start_paused = true)]
async fn resumable_close_codes_lose_and_repeat_nothing() {
    for code in [1000, 1001, 4000, 4001, 4002, 4003, 4005, 4006, 4008] {
        scenario(
            &format!("close {code}"),
            Compression::ZlibStream,
            Fault::Close(code),
            Then::Resumes,
        )
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn reconnects_invalid_sessions_and_corruption() {
    scenario(
        "op 7",
        Compression::ZlibStream,
        Fault::Reconnect,
        Then::Resumes,
    )
    .await;
    scenario(
        "op 9 true",
        Compression::ZstdStream,
        Fault::InvalidSession { resumable: true },
        Then::Resumes,
    )
    .await;
    scenario(
        "op 9 false",
        Compression::None,
        Fault::InvalidSession { resumable: false },
        Then::Reidentifies,
    )
    .await;
    scenario(
        "dropped",
        Compression::ZstdStream,
        Fault::Drop,
        Then::Resumes,
    )
    .await;
    scenario(
        "zombie 4009",
        Compression::ZlibStream,
        Fault::Close(4009),
        Then::Reidentifies,
    )
    .await;
    scenario(
        "corrupt zlib",
        Compression::ZlibStream,
        Fault::CorruptNext,
        Then::Resumes,
    )
    .await;
    scenario(
        "corrupt zstd",
        Compression::ZstdStream,
        Fault::CorruptNext,
        Then::Resumes,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn oversize_messages_start_a_new_session_in_every_compression() {
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        scenario(
            &format!("oversize {compression}"),
            compression,
            Fault::Oversize(100 * 1024),
            Then::Reidentifies,
        )
        .await;
    }
}

/// op 7 before HELLO on the reconnecting connection: the shard tries again and resumes.
#[tokio::test(start_paused = true)]
async fn reconnect_before_hello_then_resume() {
    let gw = fake_gateway().await;
    let (shard, events) = Shard::spawn(shard_config(&gw, Compression::ZlibStream)).unwrap();
    let mut events = Checked::new(events, "op 7 before HELLO");
    events.until(|e| matches!(e, ShardEvent::Dispatch(_))).await;
    traffic(&gw, &mut events, 3).await;
    gw.on_next_connection(Fault::ReconnectBeforeHello);
    gw.shard_connection(0).unwrap().inject(Fault::Drop);
    let came = back(&mut events).await;
    assert!(matches!(came, ShardEvent::Resumed { .. }), "{came:?}");
    traffic(&gw, &mut events, 3).await;
    // `close(false)` ends the session: a new shard cannot resume it and identifies anew.
    let exported = shard.close(false).await;
    assert!(exported.is_none(), "a closed session is not exported");
    let disconnected = gw.connections().iter().filter(|c| !c.open).count();
    assert!(disconnected >= 2);
}

/// RESUMED never comes after a replay: the READY/RESUMED timeout reconnects, and the next resume
/// (from the last sequence the user saw) loses and repeats nothing.
#[tokio::test(start_paused = true)]
async fn a_stalled_resumed_is_retried_without_loss() {
    let gw = fake_gateway().await;
    let (shard, events) = Shard::spawn(shard_config(&gw, Compression::ZlibStream)).unwrap();
    let mut events = Checked::new(events, "RESUMED stall");
    events.until(|e| matches!(e, ShardEvent::Dispatch(_))).await;
    traffic(&gw, &mut events, 3).await;
    let connection = gw.shard_connection(0).unwrap();
    // Two dispatches lost with the connection; the first resume replays them but stalls.
    connection.inject(Fault::LoseNext(2));
    connection.dispatch("TESTKIT_EVENT", r#"{"lost":1}"#);
    connection.dispatch("TESTKIT_EVENT", r#"{"lost":2}"#);
    gw.on_next_connection(Fault::StallResumed);
    connection.inject(Fault::Drop);
    let came = back(&mut events).await;
    assert!(matches!(came, ShardEvent::Resumed { .. }), "{came:?}");
    assert!(gw.stats().resumes >= 2, "the stalled resume was retried");
    traffic(&gw, &mut events, 3).await;
    shard.close(false).await;
}

/// `close(false)` ends the session on the gateway too (close 1000): `close` exports nothing, and
/// a shard that tries to resume the session it had is told to start anew, with READY and no
/// replay of the old session's dispatches.
#[tokio::test(start_paused = true)]
async fn close_false_invalidates_the_session() {
    let gw = fake_gateway().await;
    let config = shard_config(&gw, Compression::ZlibStream);
    let (shard, events) = Shard::spawn(config.clone()).unwrap();
    let mut events = Checked::new(events, "close(false)");
    events.until(|e| matches!(e, ShardEvent::Dispatch(_))).await;
    traffic(&gw, &mut events, 3).await;
    let stale = shard.resume_info().expect("a live session");
    assert!(
        shard.close(false).await.is_none(),
        "close(false) exports no session"
    );
    shard.join().await.unwrap();

    let (again, events) = Shard::spawn(config.with_resume(stale.clone())).unwrap();
    let mut events = Checked::new(events, "resume after close(false)");
    let came = back(&mut events).await;
    let ShardEvent::Ready(ready) = came else {
        panic!("the closed session was resumed: {came:?}");
    };
    assert_ne!(ready.session_id, stale.session_id);
    traffic(&gw, &mut events, 3).await;
    again.close(false).await;
}
