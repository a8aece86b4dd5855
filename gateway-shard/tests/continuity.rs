//! Every recovery keeps the user's stream whole: after each fault, the dispatches of a session
//! arrive with no gap and no repeat, and a new session is marked by READY (whose own sequence
//! number is 1). Each scenario runs against a fresh fake gateway over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_codec::{Compression, Limits};
use gateway_model::{Intents, Token};
use gateway_shard::{Shard, ShardConfig, ShardEvent, ShardEvents};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, WorldConfig};

/// Checks each event against the sequence it must follow.
#[derive(Default)]
struct Continuity {
    expected: Option<u64>,
    dispatches: u64,
    sessions: u64,
}

impl Continuity {
    fn see(&mut self, event: &ShardEvent, scenario: &str) {
        match event {
            ShardEvent::Ready(_) => {
                self.sessions += 1;
                self.expected = Some(2);
            }
            // RESUMED takes a sequence number of its own, as Discord's does.
            ShardEvent::Resumed { .. } => self.expected = self.expected.map(|e| e + 1),
            ShardEvent::Dispatch(d) => {
                let expected = self.expected.expect("a dispatch before READY");
                assert_eq!(d.seq, expected, "{scenario}: a gap or a repeat");
                self.expected = Some(expected + 1);
                self.dispatches += 1;
            }
            _ => {}
        }
    }
}

async fn next(events: &mut ShardEvents) -> ShardEvent {
    tokio::time::timeout(Duration::from_secs(120), events.next())
        .await
        .expect("no event in time")
        .expect("events ended")
}

/// Reads events (checking them) until one matches.
async fn until(
    events: &mut ShardEvents,
    seen: &mut Continuity,
    scenario: &str,
    mut want: impl FnMut(&ShardEvent) -> bool,
) -> ShardEvent {
    loop {
        let e = next(events).await;
        seen.see(&e, scenario);
        if want(&e) {
            return e;
        }
    }
}

/// Sends `n` dispatches on shard 0's live connection and reads them back.
async fn traffic(
    gw: &FakeGateway,
    events: &mut ShardEvents,
    seen: &mut Continuity,
    scenario: &str,
    n: u64,
) {
    let connection = gw.shard_connection(0).expect("a live connection");
    let before = seen.dispatches;
    for i in 0..n {
        connection.dispatch("TESTKIT_EVENT", format!(r#"{{"i":{i}}}"#));
    }
    while seen.dispatches < before + n {
        let e = next(events).await;
        seen.see(&e, scenario);
    }
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
async fn back(events: &mut ShardEvents, seen: &mut Continuity, scenario: &str) -> ShardEvent {
    until(events, seen, scenario, |e| {
        matches!(e, ShardEvent::Ready(_) | ShardEvent::Resumed { .. })
    })
    .await
}

#[derive(Debug, Clone, Copy)]
enum Then {
    Resumes,
    Reidentifies,
}

async fn scenario(name: &str, compression: Compression, fault: Fault, then: Then) {
    let gw = fake_gateway().await;
    let (shard, mut events) = Shard::spawn(shard_config(&gw, compression)).unwrap();
    let mut seen = Continuity::default();
    until(&mut events, &mut seen, name, |e| {
        matches!(e, ShardEvent::Dispatch(_))
    })
    .await;
    traffic(&gw, &mut events, &mut seen, name, 3).await;
    let connection = gw.shard_connection(0).unwrap();
    let corrupt = matches!(fault, Fault::CorruptNext);
    connection.inject(fault);
    if corrupt {
        // The corrupted dispatch is lost with its stream, and replayed by the resume.
        connection.dispatch("TESTKIT_EVENT", r#"{"corrupted":true}"#);
    }
    let back = until(&mut events, &mut seen, name, |e| {
        matches!(e, ShardEvent::Ready(_) | ShardEvent::Resumed { .. })
    })
    .await;
    match then {
        Then::Resumes => assert!(
            matches!(back, ShardEvent::Resumed { .. }),
            "{name}: {back:?}"
        ),
        Then::Reidentifies => assert!(matches!(back, ShardEvent::Ready(_)), "{name}: {back:?}"),
    }
    traffic(&gw, &mut events, &mut seen, name, 3).await;
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
    let (shard, mut events) = Shard::spawn(shard_config(&gw, Compression::ZlibStream)).unwrap();
    let mut seen = Continuity::default();
    let name = "op 7 before HELLO";
    until(&mut events, &mut seen, name, |e| {
        matches!(e, ShardEvent::Dispatch(_))
    })
    .await;
    traffic(&gw, &mut events, &mut seen, name, 3).await;
    gw.on_next_connection(Fault::ReconnectBeforeHello);
    gw.shard_connection(0).unwrap().inject(Fault::Drop);
    let came = back(&mut events, &mut seen, name).await;
    assert!(matches!(came, ShardEvent::Resumed { .. }), "{came:?}");
    traffic(&gw, &mut events, &mut seen, name, 3).await;
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
    let (shard, mut events) = Shard::spawn(shard_config(&gw, Compression::ZlibStream)).unwrap();
    let mut seen = Continuity::default();
    let name = "RESUMED stall";
    until(&mut events, &mut seen, name, |e| {
        matches!(e, ShardEvent::Dispatch(_))
    })
    .await;
    traffic(&gw, &mut events, &mut seen, name, 3).await;
    let connection = gw.shard_connection(0).unwrap();
    // Two dispatches lost with the connection; the first resume replays them but stalls.
    connection.inject(Fault::LoseNext(2));
    connection.dispatch("TESTKIT_EVENT", r#"{"lost":1}"#);
    connection.dispatch("TESTKIT_EVENT", r#"{"lost":2}"#);
    gw.on_next_connection(Fault::StallResumed);
    connection.inject(Fault::Drop);
    let came = back(&mut events, &mut seen, name).await;
    assert!(matches!(came, ShardEvent::Resumed { .. }), "{came:?}");
    assert!(gw.stats().resumes >= 2, "the stalled resume was retried");
    traffic(&gw, &mut events, &mut seen, name, 3).await;
    shard.close(false).await;
}
