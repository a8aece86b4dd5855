//! Consumers on Redis Streams consumer groups: `XREADGROUP` with acks; entries a dead consumer
//! left pending are reclaimed after an idle time (`XAUTOCLAIM`), so a consumer crash loses
//! nothing; repeats are dropped by `(session, seq)`.
//!
//! The stream holds each event once (the publisher's append script skips what it has). Delivery
//! to the application is at least once: an entry read but not acked before a crash is delivered
//! again to whoever reclaims it. Within one consumer, an entry whose `(session, seq)` is at or
//! below the last one delivered for its shard is a repeat: it is acked and not delivered (a
//! stream written before the append script may hold repeats too).

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_shard::{RedisConnection, RedisOptions, RedisTarget};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};

use crate::error::ClusterError;
use crate::keys::Keys;

/// Where a consumer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The application.
    pub app: String,
    /// The consumer group (consumers in one group share the work).
    pub group: String,
    /// This consumer's name in the group.
    pub name: String,
    /// The shards whose streams it reads.
    pub shards: Vec<u32>,
    /// Entries pending this long with another consumer are taken over. Default 30 s.
    pub claim_idle: Duration,
    /// Entries per read. Default 512.
    pub count: usize,
    /// How long a read waits for entries. Default 1 s.
    pub block: Duration,
}

impl ConsumerConfig {
    /// Consumer `name` of `group`, reading shards `shards` of `app`.
    pub fn new(
        app: impl Into<String>,
        group: impl Into<String>,
        name: impl Into<String>,
        shards: impl IntoIterator<Item = u32>,
    ) -> Self {
        Self {
            app: app.into(),
            group: group.into(),
            name: name.into(),
            shards: shards.into_iter().collect(),
            claim_idle: Duration::from_secs(30),
            count: 512,
            block: Duration::from_secs(1),
        }
    }
}

/// One event delivered to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id (to ack).
    pub id: String,
    /// The shard.
    pub shard: u32,
    /// The event name.
    pub name: String,
    /// The session.
    pub session: String,
    /// The sequence number in the session.
    pub seq: u64,
    /// The raw `d` (READY's whole; empty for RESUMED).
    pub data: String,
    /// Whether it was reclaimed from another consumer.
    pub reclaimed: bool,
}

/// A consumer in a group.
pub struct Consumer {
    connection: RedisConnection,
    keys: Keys,
    config: ConsumerConfig,
    last: BTreeMap<u32, (String, u64)>,
    /// Repeats dropped so far.
    pub repeats: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("repeats", &self.repeats)
            .finish_non_exhaustive()
    }
}

/// Field `name` of a stream entry, read as a `T`.
pub(crate) fn field<T: redis::FromRedisValue>(
    entry: &StreamId,
    name: &'static str,
) -> Result<T, ClusterError> {
    entry.get(name).ok_or(ClusterError::Corrupt {
        what: "stream entry",
        detail: format!("{} lacks {name}", entry.id),
    })
}

impl Consumer {
    /// Joins the group (creating it and the streams if needed, from their first entry).
    pub async fn connect(
        redis: &RedisTarget,
        config: ConsumerConfig,
    ) -> Result<Self, ClusterError> {
        // A blocking read's reply comes up to `block` late.
        let options =
            RedisOptions::default().with_response_timeout(config.block + Duration::from_secs(5));
        let mut connection = RedisConnection::connect(redis, options).await?;
        let keys = Keys::new(config.app.clone());
        for shard in &config.shards {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(keys.stream(*shard))
                .arg(&config.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut connection)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self {
            connection,
            keys,
            config,
            last: BTreeMap::new(),
            repeats: 0,
        })
    }

    /// The next events: first any left pending too long by another consumer, then new ones
    /// (waiting up to the block time). Repeats are acked and left out.
    pub async fn next(&mut self) -> Result<Vec<Delivery>, ClusterError> {
        let mut entries = Vec::new();
        let idle = u64::try_from(self.config.claim_idle.as_millis()).unwrap_or(u64::MAX);
        for shard in self.config.shards.clone() {
            let options = StreamAutoClaimOptions::default().count(self.config.count);
            let reply: StreamAutoClaimReply = redis::AsyncCommands::xautoclaim_options(
                &mut self.connection,
                self.keys.stream(shard),
                &self.config.group,
                &self.config.name,
                idle,
                "0-0",
                options,
            )
            .await?;
            entries.extend(reply.claimed.into_iter().map(|e| (shard, e, true)));
        }
        if entries.is_empty() {
            let keys: Vec<String> = self
                .config
                .shards
                .iter()
                .map(|s| self.keys.stream(*s))
                .collect();
            let ids: Vec<&str> = keys.iter().map(|_| ">").collect();
            let block = usize::try_from(self.config.block.as_millis()).unwrap_or(usize::MAX);
            let options = StreamReadOptions::default()
                .group(&self.config.group, &self.config.name)
                .count(self.config.count)
                .block(block);
            let read =
                redis::AsyncCommands::xread_options(&mut self.connection, &keys, &ids, &options)
                    .await;
            let reply: Option<StreamReadReply> = match read {
                // A Redis Cluster primary demoted by a failover unblocks its blocked readers:
                // nothing was read, and the next read goes to the new primary.
                Err(e) if e.code() == Some("UNBLOCKED") => None,
                read => read?,
            };
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                let Some(shard) = self
                    .config
                    .shards
                    .iter()
                    .copied()
                    .find(|s| self.keys.stream(*s) == key.key)
                else {
                    continue;
                };
                entries.extend(key.ids.into_iter().map(|e| (shard, e, false)));
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        let mut repeats = Vec::new();
        for (shard, entry, reclaimed) in entries {
            let delivery = Delivery {
                shard,
                name: field(&entry, "t")?,
                session: field(&entry, "session")?,
                seq: field(&entry, "seq")?,
                data: field(&entry, "d")?,
                id: entry.id,
                reclaimed,
            };
            let last = self.last.get(&shard);
            if last
                .is_some_and(|(session, seq)| *session == delivery.session && delivery.seq <= *seq)
            {
                repeats.push(delivery);
                continue;
            }
            self.last
                .insert(shard, (delivery.session.clone(), delivery.seq));
            out.push(delivery);
        }
        if !repeats.is_empty() {
            self.repeats += u64::try_from(repeats.len()).unwrap_or(u64::MAX);
            metrics::counter!("gateway_consumer_repeats_total")
                .increment(u64::try_from(repeats.len()).unwrap_or(u64::MAX));
            self.ack(&repeats).await?;
        }
        Ok(out)
    }

    /// Acknowledges deliveries: they will not be delivered again.
    pub async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), ClusterError> {
        let mut by_shard: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for d in deliveries {
            by_shard.entry(d.shard).or_default().push(&d.id);
        }
        for (shard, ids) in by_shard {
            let _acked: u64 = redis::AsyncCommands::xack(
                &mut self.connection,
                self.keys.stream(shard),
                &self.config.group,
                &ids,
            )
            .await?;
        }
        Ok(())
    }
}
