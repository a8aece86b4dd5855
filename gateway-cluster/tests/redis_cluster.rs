//! The handoff runs of `handoff.rs` on a real Redis Cluster (3 primaries, one replica each, on
//! loopback), with a primary failing over in the middle of each: planned (`CLUSTER FAILOVER`,
//! as in a rolling upgrade of Redis) in the graceful handoff, unplanned (the primary killed
//! with SIGKILL) before a node is killed the same way. Every key of an application is under
//! its hash tag, so the failover is of the primary that holds them all.
//!
//! Also the shared identify queue on the cluster.

// Examples and tests read the clock; the core does not (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::runs;
use gateway_cluster::NodeConfig;
use gateway_shard::identify::{IdentifyQueue, RedisIdentifyQueue};
use gateway_testkit::RedisCluster;

async fn cluster() -> RedisCluster {
    RedisCluster::start(3, 1).await.expect("a Redis Cluster")
}

/// Leases long enough to outlive a failover: the replica is elected after the cluster's node
/// timeout (1 s here), and a node that cannot renew stops its shards before the TTL.
fn outlives_a_failover(config: &mut NodeConfig) {
    config.lease_ttl = Duration::from_secs(6);
    config.lease_margin = Duration::from_secs(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_handoff_on_redis_cluster_survives_a_planned_failover() {
    let cluster = cluster().await;
    let app = "cluster-handoff";
    runs::graceful_handoff(&cluster.url(), app, outlives_a_failover, async || {
        let before = cluster.primary_of(&format!("{{{app}}}")).unwrap();
        cluster.fail_over(&format!("{{{app}}}")).await.unwrap();
        let after = cluster.primary_of(&format!("{{{app}}}")).unwrap();
        assert_ne!(
            before, after,
            "another primary holds the application's slot"
        );
    })
    .await;
}

/// Run by `a_killed_node_on_redis_cluster_is_taken_over_after_a_primary_dies` as a separate
/// process, then killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_killed_node_on_redis_cluster_is_taken_over_after_a_primary_dies"]
async fn child_node() {
    runs::child_node().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_on_redis_cluster_is_taken_over_after_a_primary_dies() {
    let mut cluster = cluster().await;
    let app = "cluster-takeover";
    let url = cluster.url();
    let tag = format!("{{{app}}}");
    let cluster = &mut cluster;
    runs::killed_node_taken_over(&url, app, outlives_a_failover, async || {
        cluster.kill_primary_of(&tag).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identify_queue_on_redis_cluster_spaces_one_bucket_and_spends_the_budget() {
    let cluster = cluster().await;
    let window = Duration::from_millis(300);
    let queue = RedisIdentifyQueue::connect_with_window(&cluster.url(), "cluster-identify", window)
        .await
        .unwrap();
    let limit = gateway_model::SessionStartLimit {
        total: 1000,
        remaining: 10,
        reset_after: 60_000,
        max_concurrency: 1,
    };
    queue.set_session_start_limit(limit).await.unwrap();
    let started = tokio::time::Instant::now();
    queue.acquire(0, 1).await.unwrap();
    queue.acquire(1, 1).await.unwrap();
    assert!(
        started.elapsed() >= window,
        "the second identify of one bucket waits for the window"
    );
    let left = queue.session_start_limit().await.unwrap().unwrap();
    assert_eq!(left.remaining, 8, "each identify spent one start");
}
