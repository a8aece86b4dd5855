//! What the cluster tests share: a redis-server of their own, a fake gateway, nodes, consumers,
//! and the continuity check a consumer's stream must pass.

// Examples and tests read the clock; the core does not (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod runs;

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_cluster::{Consumer, ConsumerConfig, Delivery, NodeConfig};
use gateway_model::{Intents, Token};
use gateway_shard::{RedisConnection, RedisOptions, ShardConfig};
use gateway_testkit::{FakeGateway, GatewayConfig, RedisServer, WorldConfig};

/// A redis-server of this test's own (REDIS_URL overrides).
pub async fn redis() -> RedisServer {
    RedisServer::start().await.expect("redis-server")
}

/// A connection to `redis` (a URL, or a cluster's URLs).
pub async fn connection(redis: &str) -> RedisConnection {
    RedisConnection::open(redis, RedisOptions::default())
        .await
        .unwrap()
}

/// Sets shard `shard`'s fencing counter, as taking its lease `token` times would: what a
/// publisher outside a node needs before its entries under `token` are taken.
pub async fn fence(redis: &str, app: &str, shard: u32, token: u64) {
    let mut connection = connection(redis).await;
    let () = redis::cmd("SET")
        .arg(gateway_cluster::Keys::new(app).fence(shard))
        .arg(token)
        .query_async(&mut connection)
        .await
        .unwrap();
}

pub const SHARDS: u32 = 2;

pub async fn gateway() -> FakeGateway {
    FakeGateway::start_with(
        GatewayConfig {
            identify_window: Duration::ZERO,
            max_concurrency: 16,
            recommended_shards: SHARDS,
            world: WorldConfig::uniform(3, 4, 10),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap()
}

pub fn node(redis: &str, gateway_url: &str, token: &str, app: &str, name: &str) -> NodeConfig {
    let shard = ShardConfig::new(Token::new(token), Intents::GUILDS)
        .with_gateway_url(gateway_url)
        .with_seed(9);
    let mut config = NodeConfig::new(redis.parse().unwrap(), app, name, shard, SHARDS);
    config.max_concurrency = 16;
    config.lease_ttl = Duration::from_millis(1500);
    config.lease_margin = Duration::from_millis(400);
    config.save_every = Duration::from_millis(100);
    config.identify_window = Duration::from_millis(10);
    config
}

pub async fn consumer(redis: &str, app: &str, name: &str, claim_idle: Duration) -> Consumer {
    let mut config = ConsumerConfig::new(app, "readers", name, 0..SHARDS);
    config.claim_idle = claim_idle;
    config.block = Duration::from_millis(100);
    Consumer::connect(&redis.parse().unwrap(), config)
        .await
        .unwrap()
}

/// Sends `n` dispatches on each shard's live connection (waiting for one to be up).
pub async fn traffic(gw: &FakeGateway, n: u32, tag: &str) {
    for shard in 0..SHARDS {
        let connection = loop {
            if let Some(c) = gw.shard_connection(shard) {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        for i in 0..n {
            assert!(connection.dispatch("TEST_EVENT", format!(r#"{{"tag":"{tag}","i":{i}}}"#)));
        }
    }
}

/// Every shard's stream as one consumer group saw it.
#[derive(Debug, Default)]
pub struct Seen {
    pub by_shard: BTreeMap<u32, Vec<Delivery>>,
}

impl Seen {
    /// Reads (and acks) until each shard has `events` TEST_EVENTs, or panics after `limit`.
    pub async fn read_until(&mut self, consumer: &mut Consumer, events: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while (0..SHARDS).any(|s| self.test_events(s) < events) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {:?} events in time",
                (0..SHARDS).map(|s| self.test_events(s)).collect::<Vec<_>>()
            );
            let batch = consumer.next().await.unwrap();
            consumer.ack(&batch).await.unwrap();
            for d in batch {
                self.by_shard.entry(d.shard).or_default().push(d);
            }
        }
    }

    pub fn test_events(&self, shard: u32) -> usize {
        self.by_shard
            .get(&shard)
            .map_or(0, |v| v.iter().filter(|d| d.name == "TEST_EVENT").count())
    }

    /// Each shard's stream is whole: one session, numbered 1, 2, 3… with no gap and no repeat,
    /// at positions `0-1`, `0-2`, `0-3`…
    pub fn assert_continuous(&self) {
        for (shard, deliveries) in &self.by_shard {
            let first = &deliveries[0];
            assert_eq!(
                (first.name.as_str(), first.seq),
                ("READY", 1),
                "shard {shard} starts with READY"
            );
            for (i, d) in deliveries.iter().enumerate() {
                assert_eq!(
                    d.session, first.session,
                    "shard {shard}: one session throughout"
                );
                assert_eq!(
                    d.seq,
                    i as u64 + 1,
                    "shard {shard}: a gap or a repeat at {d:?}"
                );
                assert_eq!(
                    d.id,
                    format!("0-{}", i + 1),
                    "shard {shard}: stream positions are contiguous"
                );
            }
        }
    }
}

/// From the fake gateway's connection times: for every shard, each connection closed before the
/// next one opened, and the shard had at least `changes` connections.
pub fn assert_never_two_at_once(gw: &FakeGateway, changes: usize) {
    for shard in 0..SHARDS {
        let spans = gw.shard_connections(shard);
        assert!(
            spans.len() >= changes,
            "shard {shard} changed hands: {spans:?}"
        );
        let overlap = gw.overlapping_connections(shard);
        assert!(
            overlap.is_none(),
            "shard {shard}: two connections at once: {overlap:?}"
        );
    }
}
