//! The shard under load on the wall clock, not on paused time (paused time hid both defects of
//! issue 20): the fake gateway runs on a runtime of its own, on its own thread, heartbeating every
//! second, and 50,000 MESSAGE_CREATEs are queued for the shard's session at once. The tests
//! assert outcomes, not durations: every dispatch once and in order, in one session, with no
//! disconnect. Their time bounds are generous.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_codec::Compression;
use gateway_model::{EventTypes, Intents, Token};
use gateway_shard::{Shard, ShardConfig, ShardEvent};
use gateway_testkit::{ConnectionHandle, FakeGateway, GatewayConfig, WorldConfig};

mod common;

use common::Checked;

const EVENTS: u64 = 50_000;

/// A fake gateway with a 1 s heartbeat on a runtime of its own; it lives until `stop` is sent.
fn gateway_on_its_own_thread() -> (String, std::sync::mpsc::Sender<()>, FakeGatewayView) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = GatewayConfig {
                identify_window: Duration::ZERO,
                heartbeat_interval: Duration::from_secs(1),
                world: WorldConfig::uniform(1, 1, 5),
                ..GatewayConfig::default()
            };
            let gw = FakeGateway::start_with(config, 0).await.unwrap();
            ready_tx.send(gw).unwrap();
            // Until told to stop, or until the test's end drops the sender: either ends it.
            let stopped = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            assert!(stopped.is_ok(), "the gateway's stop wait panicked");
        });
    });
    let gw = ready_rx.recv().unwrap();
    let url = gw.url().to_owned();
    (url, stop_tx, FakeGatewayView(gw))
}

/// The gateway, read from the test's runtime (its tasks run on the other).
struct FakeGatewayView(FakeGateway);

impl FakeGatewayView {
    fn connection(&self) -> ConnectionHandle {
        self.0.shard_connection(0).expect("the shard's connection")
    }
}

/// Runs one scenario: the shard reads at once, or pauses `pause` after READY.
async fn backlog_of_50_000(pause: Duration, scenario: &str) {
    let (url, stop, gw) = gateway_on_its_own_thread();
    let config = ShardConfig::new(Token::new(gw.0.config().token.clone()), Intents::GUILDS)
        .with_gateway_url(url)
        .with_compression(Compression::ZlibStream)
        .with_event_types(EventTypes::all())
        .with_raw_dispatches(true)
        .with_seed(5);
    let (shard, events) = Shard::start(config).await.unwrap();
    let mut events = Checked::new(events, scenario);
    events.until(|e| matches!(e, ShardEvent::Ready(_))).await;
    // Queued at once, in steps of 1,000 so that the gateway (compressing in a debug build) starts
    // writing while the rest is queued, as Discord would; on a blocking thread, so that queueing
    // (the gateway's work) never stalls the shard's runtime.
    let connection = gw.connection();
    let queueing = tokio::task::spawn_blocking(move || {
        let content = "x".repeat(300);
        let backlog = (0..EVENTS).map(|i| {
            (
                "MESSAGE_CREATE",
                format!(r#"{{"i":{i},"content":"{content}"}}"#),
            )
        });
        connection.dispatch_in_steps(backlog, 1_000)
    });
    tokio::time::sleep(pause).await;
    let mut next = 0;
    let read = async {
        while next < EVENTS {
            match events.until(|_| true).await {
                ShardEvent::Dispatch(d) => {
                    if let Some(i) = common::numbered(&d, "MESSAGE_CREATE") {
                        assert_eq!(i, next, "every dispatch once, in order");
                        next += 1;
                    }
                }
                ShardEvent::Disconnected { code, reason, .. } => {
                    panic!("disconnected ({code:?}, {reason}) after {next} events")
                }
                ShardEvent::Ready(_) => panic!("a new session after {next} events"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), read)
        .await
        .unwrap_or_else(|_| panic!("{scenario}: {next} of {EVENTS} in 300 s"));
    assert_eq!(queueing.await.unwrap(), EVENTS as usize);
    let stats = gw.0.stats();
    assert_eq!(stats.readies, 1, "one session");
    assert_eq!(stats.connections, 1, "no reconnect");
    assert!(shard.is_connected());
    shard.close(false).await;
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_backlog_of_many_intervals_drains_on_one_connection() {
    backlog_of_50_000(Duration::ZERO, "a_backlog_of_many_intervals_drains").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_consumer_paused_for_15_intervals_loses_nothing_and_stays_connected() {
    backlog_of_50_000(
        Duration::from_secs(15),
        "a_consumer_paused_for_15_intervals",
    )
    .await;
}
