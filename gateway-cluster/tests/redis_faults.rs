//! Redis faults the whole cluster sees, on a real redis-server: Redis unreachable for longer
//! than the lease TTL (every shard stops before its lease could be taken over, no two
//! connections ever overlap, and once Redis is back every shard resumes its stored session),
//! and Redis restarted empty (every node loses its leases and stored sessions: each shard
//! identifies once more, in a new session, and its stream starts again with READY).

// Examples and tests read the clock; the core does not (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{SHARDS, Seen, consumer, gateway, node, redis, traffic};
use gateway_cluster::{ClusterNode, NodeEvent, NodeEvents};

const READ_LIMIT: Duration = Duration::from_secs(30);

/// Counts `NodeEvent::Lost` and `NodeEvent::Took` as a node's events come, in the background.
fn tally(mut events: NodeEvents) -> tokio::sync::watch::Receiver<(u32, u32)> {
    let (tx, rx) = tokio::sync::watch::channel((0, 0));
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                NodeEvent::Lost { .. } => tx.send_modify(|(lost, _)| *lost += 1),
                NodeEvent::Took { .. } => tx.send_modify(|(_, took)| *took += 1),
                _ => {}
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_past_the_lease_ttl_stops_every_shard_and_they_resume_when_it_is_back() {
    let redis = redis().await;
    let relay = gateway_testkit::Relay::start(redis.url()).await.unwrap();
    let gw = gateway().await;
    let token = gw.config().token.clone();
    let app = "outage";
    let (a, a_events) = ClusterNode::start(node(&relay.redis_url(), gw.url(), &token, app, "a"))
        .await
        .unwrap();
    gw.wait_for_readies(u64::from(SHARDS)).await;
    let (b, b_events) = ClusterNode::start(node(&relay.redis_url(), gw.url(), &token, app, "b"))
        .await
        .unwrap();
    let (mut a_tally, b_tally) = (tally(a_events), tally(b_events));
    let mut reader = consumer(redis.url(), app, "r", Duration::from_secs(30)).await;
    let mut seen = Seen::default();
    traffic(&gw, 20, "before").await;
    seen.read_until(&mut reader, 20, READ_LIMIT).await;
    // Stored sessions catch up with what was published (every 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Redis is away for everyone, for twice the lease TTL (1.5 s).
    relay.cut();
    a_tally.wait_for(|(lost, _)| *lost >= SHARDS).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.join();

    // Every shard comes back, on either node, resuming its stored session.
    let up = 2 * u64::from(SHARDS);
    gw.wait_for(|v| v.stats().readies + v.stats().resumed >= up)
        .await;
    traffic(&gw, 20, "after").await;
    seen.read_until(&mut reader, 40, READ_LIMIT).await;
    seen.assert_continuous();
    common::assert_never_two_at_once(&gw, 2);
    assert_eq!(
        gw.stats().identifies,
        u64::from(SHARDS),
        "the shards resumed"
    );
    let took = a_tally.borrow().1 + b_tally.borrow().1;
    assert_eq!(took, 2 * SHARDS, "each shard taken once more");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_identifies_each_shard_once_more_in_a_new_stream() {
    let mut redis = redis().await;
    let gw = gateway().await;
    let token = gw.config().token.clone();
    let app = "emptied";
    let (a, mut a_events) = ClusterNode::start(node(redis.url(), gw.url(), &token, app, "a"))
        .await
        .unwrap();
    gw.wait_for_readies(u64::from(SHARDS)).await;
    traffic(&gw, 10, "before").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.restart_empty().await.unwrap();
    // The node finds its leases gone, stops its shards, takes them again with nothing stored,
    // and says so: `Took` with no session to resume.
    let mut fresh = 0;
    while fresh < SHARDS {
        match a_events.next().await.unwrap() {
            NodeEvent::Took { resuming, .. } => {
                assert!(resuming.is_none(), "nothing was stored");
                fresh += 1;
            }
            event => eprintln!("a: {event:?}"),
        }
    }
    gw.wait_for_readies(2 * u64::from(SHARDS)).await;
    assert_eq!(
        gw.stats().identifies,
        2 * u64::from(SHARDS),
        "each shard identified once more, no more"
    );
    // The streams are new: each starts with the new session's READY.
    let mut reader = consumer(redis.url(), app, "r", Duration::from_secs(30)).await;
    let mut seen = Seen::default();
    traffic(&gw, 10, "after").await;
    seen.read_until(&mut reader, 10, READ_LIMIT).await;
    seen.assert_continuous();
    common::assert_never_two_at_once(&gw, 2);
    a.shutdown().await.unwrap();
}
