//! Shards change hands between nodes on a real redis-server, against the fake gateway: a graceful
//! handoff spends no IDENTIFY and repeats nothing; a node killed with SIGKILL is taken over and
//! its shards resumed, the consumer dropping the few repeats; two nodes are never connected for
//! one shard at once; and a consumer that dies is replaced with nothing lost.

// Examples and tests read the clock; the core does not (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{SHARDS, consumer, gateway, node, redis, runs};
use gateway_cluster::{ClusterNode, Entry, Keys, NodeEvent, PublishConfig, Publisher};

const READ_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_handoff_spends_no_identify_and_repeats_nothing() {
    let redis = redis().await;
    runs::graceful_handoff(redis.url(), "handoff", |_| {}, async || {}).await;
}

/// Run by `a_killed_node_is_taken_over_with_nothing_lost` as a separate process, then killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_killed_node_is_taken_over_with_nothing_lost"]
async fn child_node() {
    runs::child_node().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_taken_over_with_nothing_lost() {
    let redis = redis().await;
    runs::killed_node_taken_over(redis.url(), "takeover", |_| {}, async || {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_are_never_connected_for_one_shard_at_once() {
    let redis = redis().await;
    let gw = gateway().await;
    let token = gw.config().token.clone();
    let app = "fencing";
    let relay = gateway_testkit::Relay::start(redis.url()).await.unwrap();
    let through_relay = relay.redis_url();
    let (a, mut a_events) = ClusterNode::start(node(&through_relay, gw.url(), &token, app, "a"))
        .await
        .unwrap();
    gw.wait_for_readies(u64::from(SHARDS)).await;
    let (b, mut b_events) = ClusterNode::start(node(redis.url(), gw.url(), &token, app, "b"))
        .await
        .unwrap();
    // A loses Redis: it cannot renew, and must stop its shards before B may take them.
    relay.cut();
    let mut lost = 0;
    while lost < SHARDS {
        if let Some(NodeEvent::Lost { .. }) = a_events.next().await {
            lost += 1;
        }
    }
    let mut taken = 0;
    while taken < SHARDS {
        if let Some(NodeEvent::Took { .. }) = b_events.next().await {
            taken += 1;
        }
    }
    // B is up on every shard (resumed, or identified: A stored no session before the cut).
    let up = 2 * u64::from(SHARDS);
    gw.wait_for(|v| v.stats().readies + v.stats().resumed >= up)
        .await;
    common::assert_never_two_at_once(&gw, 2);
    b.shutdown().await.unwrap();
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_entries_are_reclaimed_and_nothing_is_lost() {
    let redis = redis().await;
    let app = "reclaim";
    let connection = common::connection(redis.url()).await;
    let mut first = consumer(redis.url(), app, "dies", Duration::from_millis(200)).await;
    common::fence(redis.url(), app, 0, 1).await;
    let publisher = Publisher::spawn(connection, Keys::new(app), PublishConfig::default());
    for seq in 1..=100u64 {
        let entry = Entry {
            name: "TEST_EVENT".into(),
            shard: 0,
            session: "s".into(),
            seq,
            fence: 1,
            data: format!(r#"{{"seq":{seq}}}"#).into(),
            queued: std::time::Instant::now(),
        };
        assert!(publisher.try_publish(entry).is_ok());
    }
    publisher.flush().await;
    // The first consumer reads some and dies before acking them.
    let read = first.next().await.unwrap();
    assert!(!read.is_empty());
    drop(first);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut second = consumer(redis.url(), app, "lives", Duration::from_millis(200)).await;
    let mut got = std::collections::BTreeSet::new();
    let mut reclaimed = 0;
    let deadline = tokio::time::Instant::now() + READ_LIMIT;
    while got.len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 100",
            got.len()
        );
        let batch = second.next().await.unwrap();
        second.ack(&batch).await.unwrap();
        reclaimed += batch.iter().filter(|d| d.reclaimed).count();
        got.extend(batch.iter().map(|d| d.seq));
    }
    assert_eq!(got, (1..=100).collect());
    assert_eq!(
        reclaimed,
        read.len(),
        "what the dead consumer read came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_refuses_a_node_under_an_older_lease_and_skips_what_it_has() {
    let redis = redis().await;
    let app = "fenced";
    let entry = |seq: u64, fence: u64| Entry {
        name: "TEST_EVENT".into(),
        shard: 0,
        session: "s".into(),
        seq,
        fence,
        data: format!(r#"{{"seq":{seq},"fence":{fence}}}"#).into(),
        queued: std::time::Instant::now(),
    };
    let publish = async |entries: Vec<Entry>| {
        let connection = common::connection(redis.url()).await;
        let publisher = Publisher::spawn(connection, Keys::new(app), PublishConfig::default());
        for e in entries {
            assert!(publisher.try_publish(e).is_ok());
        }
        publisher.flush().await
    };
    // The first holder (token 1) publishes 1..=10; the next (token 2) resumed from 5, and the
    // gateway replayed 6..=10 before 11 and 12.
    common::fence(redis.url(), app, 0, 2).await;
    publish((1..=10).map(|s| entry(s, 1)).collect()).await;
    let written = publish((6..=12).map(|s| entry(s, 2)).collect()).await;
    assert_eq!(written.get(&0).map(|(_, seq)| *seq), Some(12));
    // The first, paused past its lease and back, publishes what it still had: refused.
    let written = publish((11..=14).map(|s| entry(s, 1)).collect()).await;
    assert!(written.is_empty(), "nothing written under the older lease");
    // A batch whose reply was lost is sent again: nothing is written twice.
    let written = publish((11..=12).map(|s| entry(s, 2)).collect()).await;
    assert_eq!(written.get(&0).map(|(_, seq)| *seq), Some(12));
    // Redis lost its data (the counter is back at 1): a token from before is refused too.
    common::fence(redis.url(), app, 0, 1).await;
    let written = publish(vec![entry(13, 2)]).await;
    assert!(
        written.is_empty(),
        "nothing written under a token the counter never gave"
    );

    let mut reader = consumer(redis.url(), app, "r", Duration::from_secs(30)).await;
    let read = reader.next().await.unwrap();
    let seen: Vec<(String, u64, bool)> = read
        .iter()
        .map(|d| (d.id.clone(), d.seq, d.data.contains(r#""fence":2"#)))
        .collect();
    let expected: Vec<(String, u64, bool)> =
        (1..=12u64).map(|s| (format!("0-{s}"), s, s > 10)).collect();
    assert_eq!(seen, expected, "each event once, at contiguous positions");
}
