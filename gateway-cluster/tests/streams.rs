//! What other processes see of the shards on a real redis-server, against the fake gateway: a
//! command sent from any connection reaches the shard wherever it runs, across a handoff; and a
//! tail follows a shard's session from its READY, at contiguous positions, and from anywhere.

// Examples and tests read the clock; the core does not (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{SHARDS, gateway, node, redis, traffic};
use gateway_cluster::{ClusterNode, CommandSender, NodeEvent, Tail, Tailed};
use gateway_model::Command;
use gateway_testkit::FakeGateway;

const LIMIT: Duration = Duration::from_secs(30);

fn presence(status: &str) -> Command {
    Command::from_json(&format!(
        r#"{{"op":3,"d":{{"since":null,"activities":[],"status":"{status}","afk":false}}}}"#
    ))
    .unwrap()
}

/// The presence updates the fake gateway received.
async fn presences(gw: &FakeGateway) -> usize {
    let mut n = 0;
    gw.wait_for(|v| {
        n = v
            .recorded()
            .iter()
            .filter(|r| matches!(r.command(), Some(Command::UpdatePresence(_))))
            .count();
        true
    })
    .await;
    n
}

async fn wait_presences(gw: &FakeGateway, n: usize) {
    tokio::time::timeout(
        LIMIT,
        gw.wait_for(|v| {
            v.recorded()
                .iter()
                .filter(|r| matches!(r.command(), Some(Command::UpdatePresence(_))))
                .count()
                >= n
        }),
    )
    .await
    .expect("the commands reached the gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_from_anywhere_reaches_the_shard_wherever_it_runs() {
    let redis = redis().await;
    let gw = gateway().await;
    let token = gw.config().token.clone();
    let app = "commands";
    let sender = CommandSender::new(common::connection(redis.url()).await, app);
    // Sent before any node holds the shards: they wait for the first holder.
    for shard in 0..SHARDS {
        sender.send(shard, &presence("idle")).await.unwrap();
    }
    let (a, _a_events) = ClusterNode::start(node(redis.url(), gw.url(), &token, app, "a"))
        .await
        .unwrap();
    gw.wait_for_readies(u64::from(SHARDS)).await;
    wait_presences(&gw, SHARDS as usize).await;
    for shard in 0..SHARDS {
        sender.send(shard, &presence("dnd")).await.unwrap();
    }
    wait_presences(&gw, 2 * SHARDS as usize).await;

    // Handed over: the next holder reads what follows, and nothing is sent twice.
    a.shutdown().await.unwrap();
    let (b, mut b_events) = ClusterNode::start(node(redis.url(), gw.url(), &token, app, "b"))
        .await
        .unwrap();
    let mut took = 0;
    while took < SHARDS {
        if let Some(NodeEvent::Took { .. }) = b_events.next().await {
            took += 1;
        }
    }
    gw.wait_for_resumed(u64::from(SHARDS)).await;
    for shard in 0..SHARDS {
        sender.send(shard, &presence("online")).await.unwrap();
    }
    wait_presences(&gw, 3 * SHARDS as usize).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presences(&gw).await, 3 * SHARDS as usize, "each sent once");
    for shard in 0..SHARDS {
        let on_shard: Vec<_> = {
            let mut v = Vec::new();
            gw.wait_for(|view| {
                let conns = view.connections();
                v = view
                    .recorded()
                    .iter()
                    .filter(|r| {
                        conns.iter().any(|c| {
                            c.id == r.connection && c.shard.is_some_and(|s| s.number() == shard)
                        })
                    })
                    .filter_map(|r| match r.command() {
                        Some(Command::UpdatePresence(p)) => Some(format!("{:?}", p.status)),
                        _ => None,
                    })
                    .collect();
                true
            })
            .await;
            v
        };
        assert_eq!(on_shard.len(), 3, "shard {shard}: {on_shard:?}");
    }
    b.shutdown().await.unwrap();
}

/// Reads `tail` until `n` TEST_EVENTs came, or panics after the limit.
async fn read(tail: &mut Tail, n: usize) -> Vec<Tailed> {
    let mut out: Vec<Tailed> = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while out.iter().filter(|t| t.name == "TEST_EVENT").count() < n {
            out.extend(tail.next().await.unwrap());
        }
    })
    .await
    .expect("the entries in time");
    out
}

/// Each shard's entries follow one another: positions and sequence numbers without a gap.
fn assert_contiguous(entries: &[Tailed], shard: u32, from: &Tailed) {
    let mine: Vec<_> = entries.iter().filter(|t| t.shard == shard).collect();
    for (i, t) in mine.iter().enumerate() {
        assert_eq!(t.session, from.session);
        assert_eq!(t.seq, from.seq + i as u64 + 1, "{t:?}");
        assert_eq!(
            t.pos,
            from.pos + i as u64 + 1,
            "contiguous positions: {t:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_follows_a_session_from_its_ready_and_from_anywhere() {
    let redis = redis().await;
    let gw = gateway().await;
    let token = gw.config().token.clone();
    let app = "tail";
    let target = redis.url().parse().unwrap();
    let tail = async || {
        Tail::connect(&target, app, Duration::from_millis(100))
            .await
            .unwrap()
    };
    let mut early = tail().await;
    assert_eq!(
        early.follow_session(0).await.unwrap(),
        None,
        "no session yet"
    );
    let (a, _a_events) = ClusterNode::start(node(redis.url(), gw.url(), &token, app, "a"))
        .await
        .unwrap();
    gw.wait_for_readies(u64::from(SHARDS)).await;
    traffic(&gw, 5, "one").await;

    // Followed from the stream's start, before the session existed: READY first.
    let seen = read(&mut early, 5).await;
    assert_eq!((seen[0].name.as_str(), seen[0].seq), ("READY", 1));
    assert_contiguous(&seen[1..], 0, &seen[0]);

    // From the session start: READY (its whole d), then the same entries.
    let mut from_ready = tail().await;
    let ready = from_ready
        .follow_session(0)
        .await
        .unwrap()
        .expect("a session");
    assert_eq!(ready, seen[0]);
    assert!(ready.data.contains(&ready.session), "READY's whole d");
    let after = read(&mut from_ready, 5).await;
    assert_eq!(&seen[1..], &after[..]);
    let last = after.last().unwrap().pos;
    assert_eq!(from_ready.positions().collect::<Vec<_>>(), [(0, last)]);

    // From the middle: what follows that position, nothing before it.
    let mut middle = tail().await;
    middle.follow_after(0, last - 2);
    middle.follow_after(1, 0);
    traffic(&gw, 1, "two").await;
    let got = read(&mut middle, 2 + 6).await;
    let zero: Vec<_> = got.iter().filter(|t| t.shard == 0).map(|t| t.pos).collect();
    assert_eq!(zero, [last - 1, last, last + 1]);
    let one: Vec<Tailed> = got.iter().filter(|t| t.shard == 1).cloned().collect();
    assert_eq!((one[0].name.as_str(), one[0].seq), ("READY", 1));
    assert_contiguous(&one[1..], 1, &one[0]);
    middle.unfollow(1);
    assert_eq!(middle.positions().count(), 1);
    a.shutdown().await.unwrap();
}
