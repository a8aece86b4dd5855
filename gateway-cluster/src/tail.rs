//! Readers that follow shards' streams from a position of their own, with no consumer group:
//! every reader gets every entry, as each process of a proxy must. A reader begins at each
//! shard's session start (the READY the stream holds, [`Keys::ready`]) or anywhere it likes, and
//! says where it stands as `(shard, position)` (the `n` of the entry id `ms-n`, contiguous per
//! stream, kept across handoffs and resumes).

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_shard::{RedisConnection, RedisOptions, RedisTarget};
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};

use crate::consume::field;
use crate::error::ClusterError;
use crate::keys::Keys;

/// One entry of a shard's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tailed {
    /// The shard.
    pub shard: u32,
    /// Its position in the shard's stream: the `n` of its id `ms-n`.
    pub pos: u64,
    /// The event name.
    pub name: String,
    /// The upstream session it came in.
    pub session: String,
    /// Its sequence number in that session.
    pub seq: u64,
    /// The raw `d` (READY's whole; empty for RESUMED).
    pub data: String,
}

/// Where a reader stands in one stream: the id it read last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    ms: u64,
    n: u64,
}

impl Cursor {
    fn parse(id: &str) -> Option<Self> {
        let (ms, n) = id.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            n: n.parse().ok()?,
        })
    }

    fn id(&self) -> String {
        format!("{}-{}", self.ms, self.n)
    }
}

/// A reader of some shards' streams.
pub struct Tail {
    connection: RedisConnection,
    keys: Keys,
    cursors: BTreeMap<u32, Cursor>,
    /// Shards followed from a position given, not yet checked against their streams.
    unchecked: Vec<u32>,
    count: usize,
    block: Duration,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("app", &self.keys.app())
            .field("cursors", &self.cursors)
            .finish_non_exhaustive()
    }
}

impl Tail {
    /// A reader of `app`'s streams on `redis`, on a connection of its own (its reads block for
    /// up to `block`), following no shard yet.
    pub async fn connect(
        redis: &RedisTarget,
        app: impl Into<String>,
        block: Duration,
    ) -> Result<Self, ClusterError> {
        let options = RedisOptions::default().with_response_timeout(block + Duration::from_secs(5));
        Ok(Self {
            connection: RedisConnection::connect(redis, options).await?,
            keys: Keys::new(app),
            cursors: BTreeMap::new(),
            unchecked: Vec::new(),
            count: 512,
            block,
        })
    }

    /// Follows `shard` from after position `after` (0: from the start of the stream).
    ///
    /// The first [`Tail::next`] checks the stream against it: a stream that now ends before
    /// `after` was lost and written anew (a Redis restarted empty, or a failover that lost
    /// writes), and is followed from its session start again, positions starting over.
    pub fn follow_after(&mut self, shard: u32, after: u64) {
        self.cursors.insert(shard, Cursor { ms: 0, n: after });
        if after > 0 {
            self.unchecked.push(shard);
        }
    }

    /// Follows `shard` from its session start: its READY first (from the session start's own
    /// copy when the stream has trimmed it), then what follows. `None` when the shard has had
    /// no session yet: then it is followed from the stream's start.
    pub async fn follow_session(&mut self, shard: u32) -> Result<Option<Tailed>, ClusterError> {
        let start: BTreeMap<String, String> =
            redis::AsyncCommands::hgetall(&mut self.connection, self.keys.ready(shard)).await?;
        let corrupt = |detail: String| ClusterError::Corrupt {
            what: "session start",
            detail,
        };
        let (Some(id), Some(session), Some(data)) =
            (start.get("id"), start.get("session"), start.get("d"))
        else {
            self.follow_after(shard, 0);
            return Ok(None);
        };
        let cursor = Cursor::parse(id).ok_or_else(|| corrupt(format!("id {id}")))?;
        let ready = Tailed {
            shard,
            pos: cursor.n,
            name: "READY".to_owned(),
            session: session.clone(),
            seq: 1,
            data: data.clone(),
        };
        self.cursors.insert(shard, cursor);
        Ok(Some(ready))
    }

    /// Stops following `shard`.
    pub fn unfollow(&mut self, shard: u32) {
        self.cursors.remove(&shard);
    }

    /// The shards followed, with the position each last read.
    pub fn positions(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.cursors.iter().map(|(shard, c)| (*shard, c.n))
    }

    /// The next entries of the followed streams, waiting up to the block time for some: in
    /// order per shard, at most 512 per stream per read.
    pub async fn next(&mut self) -> Result<Vec<Tailed>, ClusterError> {
        if !self.unchecked.is_empty() {
            let restarted = self.check().await?;
            if !restarted.is_empty() {
                return Ok(restarted);
            }
        }
        if self.cursors.is_empty() {
            tokio::time::sleep(self.block).await;
            return Ok(Vec::new());
        }
        let (shards, keys): (Vec<u32>, Vec<String>) = self
            .cursors
            .keys()
            .map(|s| (*s, self.keys.stream(*s)))
            .unzip();
        let ids: Vec<String> = self.cursors.values().map(Cursor::id).collect();
        let block = usize::try_from(self.block.as_millis()).unwrap_or(usize::MAX);
        let options = StreamReadOptions::default().count(self.count).block(block);
        let read =
            redis::AsyncCommands::xread_options(&mut self.connection, &keys, &ids, &options).await;
        let reply: Option<StreamReadReply> = match read {
            // A Redis Cluster primary demoted by a failover unblocks its blocked readers.
            Err(e) if e.code() == Some("UNBLOCKED") => None,
            read => read?,
        };
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(shard) = keys.iter().position(|k| *k == key.key).map(|i| shards[i]) else {
                continue;
            };
            for entry in key.ids {
                let tailed = tailed(shard, &entry)?;
                if let Some(cursor) = Cursor::parse(&entry.id) {
                    self.cursors.insert(shard, cursor);
                }
                out.push(tailed);
            }
        }
        Ok(out)
    }
}

impl Tail {
    /// Checks the shards followed from a given position against their streams' last ids; a
    /// stream that ends before its cursor is followed from its session start again, and its
    /// READY (if the session start is there yet) returned.
    async fn check(&mut self) -> Result<Vec<Tailed>, ClusterError> {
        let shards = self.unchecked.clone();
        let mut pipe = redis::pipe();
        for shard in &shards {
            pipe.cmd("XREVRANGE")
                .arg(self.keys.stream(*shard))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let lasts: Vec<redis::streams::StreamRangeReply> =
            pipe.query_async(&mut self.connection).await?;
        self.unchecked.clear();
        let mut out = Vec::new();
        for (shard, last) in shards.into_iter().zip(lasts) {
            let last = last.ids.first().and_then(|e| Cursor::parse(&e.id));
            let Some(cursor) = self.cursors.get(&shard) else {
                continue;
            };
            if last.is_some_and(|last| last >= *cursor) {
                continue;
            }
            tracing::warn!(
                shard,
                after = cursor.n,
                "the shard's stream ends before this reader's place: it was lost and written anew; following it from its session start"
            );
            if let Some(ready) = self.follow_session(shard).await? {
                out.push(ready);
            }
        }
        Ok(out)
    }
}

fn tailed(shard: u32, entry: &StreamId) -> Result<Tailed, ClusterError> {
    let pos = Cursor::parse(&entry.id)
        .ok_or(ClusterError::Corrupt {
            what: "stream entry",
            detail: format!("id {}", entry.id),
        })?
        .n;
    Ok(Tailed {
        shard,
        pos,
        name: field(entry, "t")?,
        session: field(entry, "session")?,
        seq: field(entry, "seq")?,
        data: field(entry, "d")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_and_writes_stream_ids() {
        assert_eq!(Cursor::parse("0-17"), Some(Cursor { ms: 0, n: 17 }));
        assert_eq!(
            Cursor::parse("1700000000000-3").map(|c| c.id()).as_deref(),
            Some("1700000000000-3")
        );
        for bad in ["", "0", "x-1", "0-x", "-1", "0--1"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
