//! Shard groups and identify queues against the testkit, over loopback.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_codec::Compression;
use gateway_model::{Command, Intents, Token};
use gateway_shard::identify::{IdentifyQueue, LocalIdentifyQueue};
use gateway_shard::{
    Reconnect, SessionState, ShardConfig, ShardEvent, ShardGroup, ShardGroupConfig,
};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, Received, WorldConfig};

async fn gateway(max_concurrency: u32, guilds: usize) -> FakeGateway {
    let config = GatewayConfig {
        max_concurrency,
        heartbeat_interval: Duration::from_secs(30),
        world: WorldConfig::uniform(5, guilds, 5),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await.unwrap()
}

fn shard_config(gw: &FakeGateway) -> ShardConfig {
    ShardConfig::new(Token::new(gw.config().token.clone()), Intents::GUILDS)
        .with_gateway_url(gw.url())
        .with_compression(Compression::ZlibStream)
        .with_seed(11)
}

/// `(shard id, time)` of every IDENTIFY the gateway received, in order.
fn identifies(gw: &FakeGateway) -> Vec<(u32, Duration)> {
    gw.recorded()
        .into_iter()
        .filter_map(|r| match r.command() {
            Some(Command::Identify(i)) => Some((i.shard.map_or(0, |s| s.number()), r.at)),
            _ => None,
        })
        .collect()
}

/// No two identifies of one bucket less than `window` apart.
fn assert_buckets_respected(ids: &[(u32, Duration)], max_concurrency: u32, window: Duration) {
    for (i, (a, at)) in ids.iter().enumerate() {
        for (b, bt) in &ids[i + 1..] {
            if a % max_concurrency == b % max_concurrency {
                assert!(
                    bt.saturating_sub(*at) >= window,
                    "shards {a} and {b} identified {:?} apart",
                    *bt - *at
                );
            }
        }
    }
}

fn no_invalid_sessions(gw: &FakeGateway) {
    assert!(
        gw.recorded()
            .iter()
            .all(|r| !matches!(r.received, Received::Invalid { .. }))
    );
    assert_eq!(
        gw.stats().identifies,
        gw.stats().readies,
        "every identify got READY (no INVALID_SESSION)"
    );
}

#[tokio::test(start_paused = true)]
async fn sixteen_shards_identify_in_rounds_of_four_5_s_apart() {
    let gw = gateway(4, 40).await;
    let config = ShardGroupConfig::new(shard_config(&gw), 16, 4);
    let mut reports = Vec::new();
    let (group, _events) = ShardGroup::start(config, |p| reports.push(p.ready))
        .await
        .unwrap();
    let ids = identifies(&gw);
    assert_eq!(ids.len(), 16);
    for (i, (shard, at)) in ids.iter().enumerate() {
        let round = i as u64 / 4;
        assert_eq!(u64::from(*shard) / 4, round, "bucket order: {ids:?}");
        assert!(
            at.as_secs() >= round * 5 && at.as_secs() < round * 5 + 2,
            "round {round} at {at:?}"
        );
    }
    assert_buckets_respected(&ids, 4, Duration::from_secs(5));
    no_invalid_sessions(&gw);
    assert_eq!(reports.last(), Some(&16));
    assert!(reports.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        group
            .status()
            .iter()
            .all(|s| s.state == SessionState::Connected)
    );
}

#[tokio::test(start_paused = true)]
async fn a_4009_reidentifies_through_the_queue_in_its_own_bucket() {
    let gw = gateway(4, 20).await;
    let (group, mut events) =
        ShardGroup::start(ShardGroupConfig::new(shard_config(&gw), 8, 4), |_| {})
            .await
            .unwrap();
    // Shard 5 (bucket 1) times out and must start a new session: 4009.
    gw.shard_connection(5).unwrap().inject(Fault::Close(4009));
    let mut disconnected = false;
    let mut seen: BTreeMap<u32, common::Continuity> = BTreeMap::new();
    loop {
        let (id, event) = events.next().await.unwrap();
        seen.entry(id).or_default().see(&event, "4009 in a group");
        match (id, event) {
            (5, ShardEvent::Disconnected { next, .. }) => {
                assert_eq!(next, Reconnect::Reidentify);
                disconnected = true;
            }
            (5, ShardEvent::Ready(_)) if disconnected => break,
            _ => {}
        }
    }
    let ids = identifies(&gw);
    assert_eq!(ids.len(), 9);
    assert_eq!(ids[8].0, 5);
    assert_buckets_respected(&ids, 4, Duration::from_secs(5));
    no_invalid_sessions(&gw);
    // Routing: a guild goes to its own shard.
    let guild = gw.world().guilds()[0].id;
    assert_eq!(
        group.shard_for_guild(guild).unwrap().id(),
        guild.shard_index(8)
    );
}

#[tokio::test(start_paused = true)]
async fn two_groups_splitting_one_bot_share_one_queue() {
    let gw = gateway(2, 20).await;
    let queue: Arc<dyn IdentifyQueue> = Arc::new(LocalIdentifyQueue::new());
    let low = ShardGroupConfig::new(shard_config(&gw), 8, 2)
        .with_range(0..4)
        .with_identify_queue(Arc::clone(&queue));
    let high = ShardGroupConfig::new(shard_config(&gw), 8, 2)
        .with_range(4..8)
        .with_identify_queue(queue);
    let (a, b) = tokio::join!(
        ShardGroup::start(low, |_| {}),
        ShardGroup::start(high, |_| {})
    );
    let ((a, _), (b, _)) = (a.unwrap(), b.unwrap());
    assert_eq!(a.shards().count() + b.shards().count(), 8);
    let ids = identifies(&gw);
    assert_eq!(ids.len(), 8);
    assert_buckets_respected(&ids, 2, Duration::from_secs(5));
    no_invalid_sessions(&gw);
    assert!(
        a.shard_for_guild(gw.world().guilds_of_shard(5, 8).next().unwrap().id)
            .is_err(),
        "not local"
    );
}

#[tokio::test(start_paused = true)]
async fn closing_a_group_exports_sessions_that_a_new_group_resumes() {
    let gw = gateway(2, 10).await;
    let (group, _events) =
        ShardGroup::start(ShardGroupConfig::new(shard_config(&gw), 4, 2), |_| {})
            .await
            .unwrap();
    let sessions: BTreeMap<_, _> = group.close(true).await;
    assert_eq!(sessions.len(), 4);
    let last: BTreeMap<u32, u64> = sessions.iter().map(|(id, s)| (*id, s.sequence)).collect();
    let config = ShardGroupConfig::new(shard_config(&gw), 4, 2).with_resume(sessions);
    let (group, mut events) = ShardGroup::start(config, |_| {}).await.unwrap();
    // The new group's stream picks up where the old one stopped: RESUMED right after it.
    for (id, gw_conn) in (0..4).filter_map(|id| gw.shard_connection(id).map(|c| (id, c))) {
        gw_conn.dispatch("TESTKIT_EVENT", "{}");
        loop {
            let (shard, event) = events.next().await.unwrap();
            if shard != id {
                continue;
            }
            match event {
                ShardEvent::Resumed { seq, .. } => assert_eq!(seq, last[&id] + 1),
                ShardEvent::Dispatch(d) => {
                    assert_eq!(d.seq, last[&id] + 2, "no gap, no repeat");
                    break;
                }
                _ => {}
            }
        }
    }
    drop(group);
    assert_eq!(gw.stats().identifies, 4, "no new identify");
    assert_eq!(gw.stats().resumed, 4);
}

/// Issue 20: a group whose gateway is down at start. `start` hands the events back only once
/// every shard is READY, so each failed attempt waited in the stream and came in one batch then;
/// with `launch`, each `ConnectFailed` comes when its attempt fails, while `wait_ready` still
/// waits and no gateway exists. Real time: a batch would show as events with no time between.
#[tokio::test]
async fn connect_failures_reach_the_events_one_by_one_while_the_group_starts() {
    // A port nothing listens on yet: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway_config = GatewayConfig {
        heartbeat_interval: Duration::from_secs(30),
        world: WorldConfig::uniform(5, 3, 5),
        ..GatewayConfig::default()
    };
    let shard = ShardConfig::new(Token::new(gateway_config.token.clone()), Intents::GUILDS)
        .with_gateway_url(format!("ws://127.0.0.1:{port}"))
        .with_seed(11);
    let (group, mut events) = ShardGroup::launch(ShardGroupConfig::new(shard, 1, 1))
        .await
        .unwrap();
    let group = Arc::new(group);
    let waiting = tokio::spawn({
        let group = Arc::clone(&group);
        async move { group.wait_ready(|_| {}).await }
    });
    let next = async |events: &mut gateway_shard::GroupEvents| {
        tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream is open")
    };
    // (when it came, the delay it announced)
    let mut failed: Vec<(tokio::time::Instant, Duration)> = Vec::new();
    while failed.len() < 3 {
        match next(&mut events).await {
            (0, ShardEvent::ConnectFailed { reason, retry_in }) => {
                assert!(reason.contains("TCP connect"), "{reason}");
                failed.push((tokio::time::Instant::now(), retry_in));
            }
            other => panic!("no gateway listens yet, but {other:?}"),
        }
        assert!(!waiting.is_finished(), "the group is still starting");
    }
    // The first retry is at once; the second waits the backoff's base at least (1 s).
    assert!(failed[1].1 >= Duration::from_secs(1), "{failed:?}");
    for pair in failed.windows(2) {
        let ((at, retry_in), (next_at, _)) = (pair[0], pair[1]);
        assert!(
            next_at - at >= retry_in / 2,
            "the next failure came {:?} after one that announced a retry in {retry_in:?}: \
             held and delivered together",
            next_at - at
        );
    }
    // A gateway on that port now: a later attempt gets through, and the group is ready.
    let gw = FakeGateway::start_with(gateway_config, port).await.unwrap();
    let ready = loop {
        match next(&mut events).await {
            (0, ShardEvent::Ready(r)) => break r,
            (0, ShardEvent::ConnectFailed { .. } | ShardEvent::Connected { .. }) => {}
            other => panic!("before READY: {other:?}"),
        }
    };
    assert_eq!(ready.guilds.len(), 3);
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // READY's own sequence number (the testkit's is 1), kept while the session's moves on.
    let shard = group.shard(0).unwrap();
    assert_eq!(shard.ready_sequence(), Some(1));
    let mut seq = 1;
    while seq < 4 {
        match next(&mut events).await {
            (0, ShardEvent::Dispatch(d)) => {
                seq += 1;
                assert_eq!(d.seq, seq);
            }
            (0, ShardEvent::HeartbeatAck { .. }) => {}
            other => panic!("a GUILD_CREATE, not {other:?}"),
        }
    }
    assert_eq!(shard.resume_info().map(|r| r.sequence), Some(4));
    assert_eq!(shard.ready_sequence(), Some(1));
    group.close(false).await;
    drop(gw);
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use gateway_shard::identify::RedisIdentifyQueue;

    /// A redis-server of this test's own (REDIS_URL overrides).
    async fn redis() -> gateway_testkit::RedisServer {
        gateway_testkit::RedisServer::start()
            .await
            .expect("redis-server")
    }

    const WINDOW: Duration = Duration::from_millis(1500);

    /// Run by the parent test as a second process: one group over `GROUP_RANGE` of 8 shards.
    #[tokio::test]
    #[ignore = "run as a child process by two_processes_never_identify_one_bucket_twice_within_the_window"]
    async fn child_group() {
        let (Ok(url), Ok(redis_url), Ok(prefix)) = (
            std::env::var("GATEWAY_URL"),
            std::env::var("REDIS_URL"),
            std::env::var("REDIS_PREFIX"),
        ) else {
            return;
        };
        let queue = RedisIdentifyQueue::connect_with_window(&redis_url, prefix, WINDOW)
            .await
            .unwrap();
        let config =
            ShardConfig::new(Token::new("testkit-token"), Intents::GUILDS).with_gateway_url(url);
        let group = ShardGroupConfig::new(config, 8, 2)
            .with_range(0..4)
            .with_identify_queue(Arc::new(queue));
        let (group, _events) = ShardGroup::start(group, |_| {}).await.unwrap();
        group.close(false).await;
    }

    #[tokio::test]
    async fn two_processes_never_identify_one_bucket_twice_within_the_window() {
        let redis = redis().await;
        let gw = FakeGateway::start_with(
            GatewayConfig {
                max_concurrency: 2,
                identify_window: WINDOW,
                world: WorldConfig::uniform(5, 16, 5),
                ..GatewayConfig::default()
            },
            0,
        )
        .await
        .unwrap();
        let prefix = format!("gateway-test-{}", std::process::id());
        let child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "redis::child_group", "--ignored", "--nocapture"])
            .env("GATEWAY_URL", gw.url())
            .env("REDIS_URL", redis.url())
            .env("REDIS_PREFIX", &prefix)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let queue = RedisIdentifyQueue::connect_with_window(redis.url(), &prefix, WINDOW)
            .await
            .unwrap();
        let config = ShardGroupConfig::new(shard_config(&gw), 8, 2)
            .with_range(4..8)
            .with_identify_queue(Arc::new(queue));
        let (group, _events) = ShardGroup::start(config, |_| {}).await.unwrap();
        let status = child.wait_with_output().await.unwrap().status;
        assert!(status.success(), "the child group failed");
        group.close(false).await;
        let ids = identifies(&gw);
        assert_eq!(ids.len(), 8, "{ids:?}");
        assert_buckets_respected(&ids, 2, WINDOW);
        no_invalid_sessions(&gw);
    }

    #[tokio::test]
    async fn the_budget_is_a_shared_counter() {
        let redis = redis().await;
        let prefix = format!("gateway-budget-{}", std::process::id());
        let queue =
            RedisIdentifyQueue::connect_with_window(redis.url(), &prefix, Duration::from_millis(1))
                .await
                .unwrap();
        let limit = gateway_model::SessionStartLimit {
            total: 1000,
            remaining: 2,
            reset_after: 60_000,
            max_concurrency: 1,
        };
        queue.set_session_start_limit(limit).await.unwrap();
        queue.acquire(0, 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        queue.acquire(0, 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(matches!(
            queue.acquire(0, 1).await,
            Err(gateway_shard::identify::IdentifyError::BudgetExhausted(_))
        ));
        let known = queue.session_start_limit().await.unwrap().unwrap();
        assert_eq!((known.total, known.remaining), (1000, 0));
    }

    /// Two processes' queues on one Redis keep the reserve together: with 5 starts left and 3
    /// kept back, the two together get exactly 2 identifies, then both are told when the budget
    /// resets.
    #[tokio::test]
    async fn the_reserve_is_kept_across_processes() {
        let redis = redis().await;
        let prefix = format!("gateway-reserve-{}", std::process::id());
        let connect = || async {
            RedisIdentifyQueue::connect_with_window(redis.url(), &prefix, Duration::from_millis(1))
                .await
                .unwrap()
                .with_reserve(3)
        };
        let (a, b) = (connect().await, connect().await);
        let limit = gateway_model::SessionStartLimit {
            total: 1000,
            remaining: 5,
            reset_after: 60_000,
            max_concurrency: 16,
        };
        a.set_session_start_limit(limit).await.unwrap();
        let mut granted = 0;
        for shard in 0..8 {
            let queue = if shard % 2 == 0 { &a } else { &b };
            match queue.acquire(shard, 16).await {
                Ok(()) => granted += 1,
                Err(gateway_shard::identify::IdentifyError::BudgetExhausted(reset)) => {
                    assert!(reset > Duration::from_secs(50), "{reset:?}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(granted, 2);
        let known = b.session_start_limit().await.unwrap().unwrap();
        assert_eq!(known.remaining, 3);
    }
}

/// On 0234392 `ShardConfig::proxy` reached the websocket but not `GET /gateway/bot`, which went
/// straight out.
#[tokio::test]
async fn the_proxy_carries_get_gateway_bot_as_well_as_the_websocket() {
    let gw = gateway(1, 1).await;
    let (proxy, seen) = common::http_proxy().await;
    let api = format!("http://{}/api/v10", gw.local_addr());
    let config =
        ShardGroupConfig::recommended(shard_config(&gw).with_proxy(proxy)).with_api_base(api);
    let (group, _events) = ShardGroup::start(config, |_| {}).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("GET http://") && l.contains("/api/v10/gateway/bot")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.starts_with("CONNECT ")), "{seen:?}");
    group.close(false).await;
}

/// On 0234392 `update_presence` stopped at the first shard that refused, with the shards before
/// it already updated and nothing saying so. Shard 10 of 11 has a one byte larger IDENTIFY than
/// shard 9, so a presence at shard 9's limit is refused by shard 10 alone.
#[tokio::test]
async fn a_presence_update_reaches_every_shard_and_says_which_refused_it() {
    use gateway_model::Activity;
    use gateway_shard::{GroupError, PresenceUpdate};
    let gw = gateway(1, 1).await;
    let config = ShardGroupConfig::new(shard_config(&gw), 11, 1).with_range(9..11);
    let (group, _events) = ShardGroup::spawn(config).unwrap();
    let presence = |n: usize| PresenceUpdate {
        activity: Some(Some(Activity::playing("x".repeat(n)))),
        ..PresenceUpdate::default()
    };
    let mut last = None;
    for n in (3_000..4_096).rev() {
        match group.update_presence(presence(n)).await {
            Ok(()) => break,
            Err(e) => last = Some(e),
        }
    }
    let Some(GroupError::Presence { failed, updated }) = last else {
        panic!("{last:?}")
    };
    assert_eq!(updated, [9]);
    assert_eq!(failed.iter().map(|f| f.0).collect::<Vec<_>>(), [10]);
    group.close(false).await;
}
