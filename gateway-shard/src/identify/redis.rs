//! An identify queue in Redis: one key per bucket, set only if absent, expiring after the window;
//! the daily budget as a counter spent in the same atomic step.

use std::time::Duration;

use gateway_model::SessionStartLimit;

use crate::redis_connection::{RedisConnection, RedisOptions};

use super::{BoxFuture, IDENTIFY_WINDOW, IdentifyError, IdentifyQueue};

/// One attempt at an identify turn, atomic in Redis. Returns `{1, 0}` when granted (the bucket
/// key was set and, if a budget is known, one start spent), `{0, wait_ms}` when the bucket is
/// taken, `{2, reset_ms}` when the budget is down to the reserve.
///
/// A budget whose window ended (its key expired) starts again at the total, for a day.
///
/// KEYS: bucket, remaining, total. ARGV: shard id, window in ms, reserve.
const ACQUIRE: &str = r"
local left = redis.call('GET', KEYS[2])
if not left then
  local total = redis.call('GET', KEYS[3])
  if total then
    redis.call('SET', KEYS[2], total, 'PX', 86400000)
    left = total
  end
end
if left and tonumber(left) <= tonumber(ARGV[3]) then
  return {2, redis.call('PTTL', KEYS[2])}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if left then redis.call('DECR', KEYS[2]) end
  return {1, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
";

/// Records the budget `GET /gateway/bot` gave. A script, not `MULTI`: a transaction cut by a
/// Redis Cluster slot move fails as a whole (`EXECABORT`), where a script is redirected.
/// KEYS: remaining, total, max_concurrency. ARGV: the three values, the reset in ms.
const SET_LIMIT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return 1
";

/// The identify queue of every process that points at the same Redis and prefix.
///
/// Keys are `{prefix}:…`, the prefix as a hash tag, so that with Redis Cluster every key of one
/// application is on one node and the atomic step can touch them together.
/// `{prefix}:bucket:{id % max_concurrency}` is set with `NX PX window` by whoever identifies;
/// everyone else waits for the key's remaining time and tries again. The budget is
/// `{prefix}:remaining`, spent by one per identify in the same step, expiring when it resets; an
/// identify that would take it to the reserve ([`with_reserve`](Self::with_reserve)) is refused
/// with [`IdentifyError::BudgetExhausted`] and the time to the reset.
#[derive(Clone)]
pub struct RedisIdentifyQueue {
    connection: RedisConnection,
    prefix: String,
    window: Duration,
    reserve: u32,
    acquire: redis::Script,
    set_limit: redis::Script,
}

impl std::fmt::Debug for RedisIdentifyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdentifyQueue")
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> IdentifyError {
    IdentifyError::Unavailable(e.to_string())
}

impl RedisIdentifyQueue {
    /// Connects to `url` (`redis://127.0.0.1/`, or a Redis Cluster's nodes: see
    /// [`RedisTarget`](crate::RedisTarget)); keys start with `{prefix}`.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, IdentifyError> {
        Self::connect_with_window(url, prefix, IDENTIFY_WINDOW).await
    }

    /// The same with another window per bucket (tests and fake gateways).
    pub async fn connect_with_window(
        url: &str,
        prefix: impl Into<String>,
        window: Duration,
    ) -> Result<Self, IdentifyError> {
        let connection = RedisConnection::open(url, RedisOptions::default())
            .await
            .map_err(unavailable)?;
        Ok(Self::with_connection(connection, prefix, window))
    }

    /// On a connection already open (shared with the rest of a process's Redis use).
    pub fn with_connection(
        connection: RedisConnection,
        prefix: impl Into<String>,
        window: Duration,
    ) -> Self {
        Self {
            connection,
            prefix: prefix.into(),
            window,
            reserve: 0,
            acquire: redis::Script::new(ACQUIRE),
            set_limit: redis::Script::new(SET_LIMIT),
        }
    }

    /// Keeps `reserve` session starts back for every process of the application: once only
    /// that many are left, identifies are refused until the budget resets, so that a storm never
    /// spends the last starts (Discord resets the token of a bot that runs out).
    #[must_use]
    pub fn with_reserve(mut self, reserve: u32) -> Self {
        self.reserve = reserve;
        self
    }

    fn key(&self, suffix: &str) -> String {
        format!("{{{}}}:{suffix}", self.prefix)
    }
}

impl IdentifyQueue for RedisIdentifyQueue {
    fn acquire(
        &self,
        shard_id: u32,
        max_concurrency: u32,
    ) -> BoxFuture<'_, Result<(), IdentifyError>> {
        Box::pin(async move {
            let mut con = self.connection.clone();
            let bucket = self.key(&format!("bucket:{}", shard_id % max_concurrency.max(1)));
            let remaining = self.key("remaining");
            let total = self.key("total");
            let window_ms = u64::try_from(super::spacing(self.window).as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            loop {
                let (outcome, ms): (i64, i64) = self
                    .acquire
                    .key(&bucket)
                    .key(&remaining)
                    .key(&total)
                    .arg(shard_id)
                    .arg(window_ms)
                    .arg(self.reserve)
                    .invoke_async(&mut con)
                    .await
                    .map_err(unavailable)?;
                match outcome {
                    1 => return Ok(()),
                    2 => {
                        let reset = u64::try_from(ms).unwrap_or(0);
                        return Err(IdentifyError::BudgetExhausted(Duration::from_millis(reset)));
                    }
                    _ => {
                        let ms = u64::try_from(ms).unwrap_or(5).clamp(5, window_ms);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                }
            }
        })
    }

    fn session_start_limit(
        &self,
    ) -> BoxFuture<'_, Result<Option<SessionStartLimit>, IdentifyError>> {
        Box::pin(async move {
            let mut con = self.connection.clone();
            let (remaining, total, concurrency, ttl): (Option<i64>, Option<u32>, Option<u32>, i64) =
                redis::pipe()
                    .get(self.key("remaining"))
                    .get(self.key("total"))
                    .get(self.key("max_concurrency"))
                    .pttl(self.key("remaining"))
                    .query_async(&mut con)
                    .await
                    .map_err(unavailable)?;
            let (Some(remaining), Some(total)) = (remaining, total) else {
                return Ok(None);
            };
            Ok(Some(SessionStartLimit {
                total,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                reset_after: u64::try_from(ttl).unwrap_or(0),
                max_concurrency: concurrency.unwrap_or(1),
            }))
        })
    }

    fn set_session_start_limit(
        &self,
        limit: SessionStartLimit,
    ) -> BoxFuture<'_, Result<(), IdentifyError>> {
        Box::pin(async move {
            let mut con = self.connection.clone();
            let ttl = limit.reset_after.max(1);
            self.set_limit
                .key(self.key("remaining"))
                .key(self.key("total"))
                .key(self.key("max_concurrency"))
                .arg(limit.remaining)
                .arg(limit.total)
                .arg(limit.max_concurrency)
                .arg(ttl)
                .invoke_async::<i64>(&mut con)
                .await
                .map(drop)
                .map_err(unavailable)
        })
    }
}
