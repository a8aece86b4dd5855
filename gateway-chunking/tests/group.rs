//! The chunk tracker beside a real shard group, against the testkit over loopback.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gateway_chunking::{
    ChunkEvent, ChunkTracker, Outcome, TrackedEvent, TrackedEvents, TrackerConfig,
};
use gateway_model::{Intents, RequestGuildMembers, Snowflake, Token};
use gateway_shard::{ShardConfig, ShardGroup, ShardGroupConfig};
use gateway_testkit::{ChunkFault, FakeGateway, Fault, GatewayConfig, WorldConfig};

const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_MEMBERS);

async fn setup(
    world: WorldConfig,
    shards: u32,
    max_concurrency: u32,
    auto: bool,
) -> (FakeGateway, Arc<ShardGroup>, ChunkTracker, TrackedEvents) {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            max_concurrency,
            heartbeat_interval: Duration::from_secs(30),
            world,
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let shard = ShardConfig::new(Token::new(gw.config().token.clone()), INTENTS)
        .with_gateway_url(gw.url())
        .with_seed(5);
    let (group, events) =
        ShardGroup::spawn(ShardGroupConfig::new(shard, shards, max_concurrency)).unwrap();
    let group = Arc::new(group);
    let mut config = TrackerConfig::new(shards, 0..shards, INTENTS);
    config.auto_chunk = auto;
    let (tracker, events) = ChunkTracker::spawn(Arc::clone(&group), events, config);
    (gw, group, tracker, events)
}

async fn next_chunk_event(events: &mut TrackedEvents) -> ChunkEvent {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(3600), events.next())
            .await
            .unwrap()
            .unwrap();
        if let TrackedEvent::Chunk(c) = e {
            return c;
        }
    }
}

async fn until_ready(events: &mut TrackedEvents, shards: usize) {
    let mut ready = BTreeSet::new();
    while ready.len() < shards {
        if let Some(TrackedEvent::Shard(id, gateway_shard::ShardEvent::Ready(_))) =
            events.next().await
        {
            ready.insert(id);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_startup_of_many_large_guilds_over_several_windows_finishes_once() {
    // 12 guilds, every one large (> 250 members), 4 shards in 2 identify windows.
    let world = WorldConfig::uniform(3, 12, 1500);
    let (gw, _group, _tracker, mut events) = setup(world, 4, 2, true).await;
    let mut shard_finished = Vec::new();
    let mut finished = 0;
    let mut requests = 0;
    // Until FinishedChunking, then a minute more to see that nothing fires twice.
    let mut stop_at = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        if finished == 1 && stop_at > tokio::time::Instant::now() + Duration::from_secs(60) {
            stop_at = tokio::time::Instant::now() + Duration::from_secs(60);
        }
        match tokio::time::timeout_at(stop_at, events.next()).await {
            Ok(Some(TrackedEvent::Chunk(ChunkEvent::ShardFinishedChunking {
                shard,
                incomplete_guild_ids,
                missed_guild_ids,
                complete_guild_ids,
                ..
            }))) => {
                assert!(incomplete_guild_ids.is_empty() && missed_guild_ids.is_empty());
                shard_finished.push((shard, complete_guild_ids.len()));
            }
            Ok(Some(TrackedEvent::Chunk(ChunkEvent::FinishedChunking { .. }))) => finished += 1,
            Ok(Some(TrackedEvent::Chunk(ChunkEvent::RequestFinished(f)))) => {
                assert_eq!(f.outcome, Outcome::Complete);
                assert_eq!(f.chunk_count, Some(2));
                requests += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(finished, 1, "exactly one FinishedChunking");
    assert_eq!(shard_finished.len(), 4);
    assert_eq!(shard_finished.iter().map(|(_, n)| n).sum::<usize>(), 12);
    assert_eq!(requests, 12);
    assert_eq!(gw.stats().member_requests, 12);
}

#[tokio::test(start_paused = true)]
async fn dropped_chunks_not_found_and_rate_limits() {
    let world = WorldConfig::uniform(4, 4, 2500);
    let (gw, group, tracker, mut events) = setup(world, 2, 2, false).await;
    until_ready(&mut events, 2).await;
    let guild = gw.world().guilds()[0].id;
    let shard = guild.shard_index(2);
    let conn = gw.shard_connection(shard).unwrap();

    // All chunks: complete.
    let handle = tracker
        .request_guild_members(RequestGuildMembers::builder(guild).query("", 0), guild)
        .unwrap();
    let done = handle.finished().await.unwrap();
    assert_eq!(
        (done.outcome, done.chunk_count, done.shard),
        (Outcome::Complete, Some(3), shard)
    );

    // Every chunk dropped: no reply.
    conn.inject(Fault::Chunks(ChunkFault::DropAll));
    let handle = tracker
        .request_guild_members(RequestGuildMembers::builder(guild).query("b", 10), guild)
        .unwrap();
    let done = handle.finished().await.unwrap();
    assert_eq!(done.outcome, Outcome::NoReply);

    // Unknown user ids.
    let known = gw.world().member(&gw.world().guilds()[0], 3).id;
    let handle = tracker
        .request_guild_members(
            RequestGuildMembers::builder(guild).user_ids([known, Snowflake::new(12345)]),
            guild,
        )
        .unwrap();
    let done = handle.finished().await.unwrap();
    assert_eq!(
        done.not_found_ids.into_iter().collect::<Vec<_>>(),
        vec![Snowflake::new(12345)]
    );

    // A second full list within 30 s: rate limited.
    let handle = tracker
        .request_guild_members(RequestGuildMembers::builder(guild).query("", 0), guild)
        .unwrap();
    let done = handle.finished().await.unwrap();
    assert!(matches!(done.outcome, Outcome::RateLimited { retry_after } if retry_after > 0.0));
    let _ = (group, next_chunk_event);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_middle_chunk_is_reported_missed() {
    let world = WorldConfig::uniform(4, 1, 2500);
    let (gw, _group, tracker, mut events) = setup(world, 1, 1, false).await;
    until_ready(&mut events, 1).await;
    let guild = gw.world().guilds()[0].id;
    gw.shard_connection(0)
        .unwrap()
        .inject(Fault::Chunks(ChunkFault::Drop(vec![1])));
    let handle = tracker
        .request_guild_members(RequestGuildMembers::builder(guild).query("", 0), guild)
        .unwrap();
    let done = handle.finished().await.unwrap();
    assert_eq!(done.outcome, Outcome::Incomplete);
    assert_eq!(done.missed_chunks.into_iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(tracker.open_requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn auto_chunking_counts_a_guild_whose_chunks_never_come_as_missed() {
    let world = WorldConfig::uniform(6, 2, 1200);
    let gw = FakeGateway::start_with(
        GatewayConfig {
            world,
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    // The first member request on the connection gets no answer at all.
    gw.on_next_connection(Fault::Chunks(ChunkFault::DropAll));
    let shard =
        ShardConfig::new(Token::new(gw.config().token.clone()), INTENTS).with_gateway_url(gw.url());
    let (group, events) = ShardGroup::spawn(ShardGroupConfig::new(shard, 1, 1)).unwrap();
    let mut config = TrackerConfig::new(1, [0], INTENTS);
    config.auto_chunk = true;
    let (_tracker, mut events) = ChunkTracker::spawn(Arc::new(group), events, config);
    loop {
        if let ChunkEvent::ShardFinishedChunking {
            missed_guild_ids,
            complete_guild_ids,
            ..
        } = next_chunk_event(&mut events).await
        {
            assert_eq!((missed_guild_ids.len(), complete_guild_ids.len()), (1, 1));
            break;
        }
    }
}
