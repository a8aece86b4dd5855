//! The handoff runs, on any Redis target (one server, or a Redis Cluster's URLs), with a hook
//! for what a test does to Redis in the middle (a failover), so that both targets face the same
//! checks.

use std::time::Duration;

use gateway_cluster::{ClusterNode, Consumer, Keys, NodeConfig, NodeEvent, SessionStore};
use gateway_testkit::FakeGateway;

use super::{SHARDS, Seen, connection, consumer, gateway, node, traffic};

const READ_LIMIT: Duration = Duration::from_secs(30);

/// A node's shards handed to the next node by a graceful shutdown: no IDENTIFY, nothing lost,
/// nothing repeated. `midway` runs between the first node's traffic and its shutdown.
pub async fn graceful_handoff(
    redis: &str,
    app: &str,
    tune: impl Fn(&mut NodeConfig),
    midway: impl AsyncFnOnce(),
) {
    let gw = gateway().await;
    let token = gw.config().token.clone();
    let config = |name: &str| tuned(node(redis, gw.url(), &token, app, name), &tune);
    let (a, _a_events) = ClusterNode::start(config("a")).await.unwrap();
    gw.wait_for_readies(u64::from(SHARDS)).await;
    let mut reader = consumer(redis, app, "r1", Duration::from_secs(30)).await;
    let mut seen = Seen::default();
    traffic(&gw, 20, "before").await;
    seen.read_until(&mut reader, 20, READ_LIMIT).await;
    midway().await;
    traffic(&gw, 20, "midway").await;
    seen.read_until(&mut reader, 40, READ_LIMIT).await;

    a.shutdown().await.unwrap();
    let (b, mut b_events) = ClusterNode::start(config("b")).await.unwrap();
    let mut resumed = 0;
    while resumed < SHARDS {
        if let Some(NodeEvent::Took { resuming, .. }) = b_events.next().await {
            assert!(resuming.is_some(), "the stored session is resumed");
            resumed += 1;
        }
    }
    resumed_whole(&gw, &mut seen, &mut reader, 60).await;
    b.shutdown().await.unwrap();
}

/// Once every shard RESUMED under the next node: 20 more events each, then the stream holds
/// each event once, in one session per shard, with no IDENTIFY after the first ones.
async fn resumed_whole(gw: &FakeGateway, seen: &mut Seen, reader: &mut Consumer, total: usize) {
    gw.wait_for_resumed(u64::from(SHARDS)).await;
    traffic(gw, 20, "after").await;
    seen.read_until(reader, total, READ_LIMIT).await;
    seen.assert_continuous();
    assert_eq!(reader.repeats, 0, "the stream repeats nothing");
    assert_eq!(
        gw.stats().identifies,
        u64::from(SHARDS),
        "the shards were resumed, not identified"
    );
}

/// The body of a test binary's `child_node`: a node configured from the environment, run
/// until it is killed.
pub async fn child_node() {
    let var = |k: &str| std::env::var(k).expect(k);
    let mut config = node(
        &var("REDIS_URL"),
        &var("GATEWAY_URL"),
        &var("TOKEN"),
        &var("APP"),
        "child",
    );
    if let Ok(ttl) = std::env::var("LEASE_TTL_MS") {
        config.lease_ttl = Duration::from_millis(ttl.parse().unwrap());
    }
    if let Ok(margin) = std::env::var("LEASE_MARGIN_MS") {
        config.lease_margin = Duration::from_millis(margin.parse().unwrap());
    }
    let (_node, mut events) = ClusterNode::start(config).await.unwrap();
    while let Some(event) = events.next().await {
        println!("child: {event:?}");
    }
}

/// A node in a child process (this test binary's `child_node`) killed with SIGKILL mid-stream
/// and taken over by another: its shards resumed, the stream whole and with no repeat (the
/// append skips the resume's replay). `midway` runs before the kill, while events flow.
pub async fn killed_node_taken_over(
    redis: &str,
    app: &str,
    tune: impl Fn(&mut NodeConfig),
    midway: impl AsyncFnOnce(),
) {
    let gw = gateway().await;
    let token = gw.config().token.clone();
    let probe = tuned(node(redis, gw.url(), &token, app, "probe"), &tune);
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_node", "--ignored", "--nocapture"])
        .env("REDIS_URL", redis)
        .env("GATEWAY_URL", gw.url())
        .env("TOKEN", &token)
        .env("APP", app)
        .env("LEASE_TTL_MS", probe.lease_ttl.as_millis().to_string())
        .env(
            "LEASE_MARGIN_MS",
            probe.lease_margin.as_millis().to_string(),
        )
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    gw.wait_for_readies(u64::from(SHARDS)).await;
    let mut reader = consumer(redis, app, "r1", Duration::from_secs(30)).await;
    let mut seen = Seen::default();
    traffic(&gw, 30, "before").await;
    seen.read_until(&mut reader, 30, READ_LIMIT).await;
    midway().await;
    // Each shard's session is stored (every 100 ms)…
    let store = SessionStore::new(
        connection(redis).await,
        Keys::new(app),
        Duration::from_secs(1),
    );
    // (A load may fail while a test's `midway` fails Redis over: it is tried again, within
    // the read limit.)
    let deadline = tokio::time::Instant::now() + READ_LIMIT;
    for shard in 0..SHARDS {
        loop {
            match store.load(shard).await {
                Ok(Some(stored)) if stored.sequence >= 20 => break,
                Ok(_) => {}
                Err(e) => eprintln!("loading shard {shard}'s session: {e}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "shard {shard}'s session not stored in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // …then more is on the wire, some of it published and not yet stored as the position.
    traffic(&gw, 30, "during").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let (b, mut b_events) = ClusterNode::start(probe_named(probe, "b")).await.unwrap();
    tokio::spawn(async move {
        while let Some(e) = b_events.next().await {
            eprintln!("b: {e:?}");
        }
    });
    // The resume replayed what the killed node had published past its stored position: the
    // stream skipped it.
    resumed_whole(&gw, &mut seen, &mut reader, 80).await;
    b.shutdown().await.unwrap();
}

fn tuned(mut config: NodeConfig, tune: impl Fn(&mut NodeConfig)) -> NodeConfig {
    tune(&mut config);
    config
}

fn probe_named(mut config: NodeConfig, name: &str) -> NodeConfig {
    config.node = name.to_owned();
    config
}
