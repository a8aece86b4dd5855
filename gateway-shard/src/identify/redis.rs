//! An identify queue in Redis: one key per bucket, set only if absent, expiring after the window;
//! the daily budget as a counter.

use std::time::Duration;

use gateway_model::SessionStartLimit;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{BoxFuture, IDENTIFY_WINDOW, IdentifyError, IdentifyQueue};

/// The identify queue of every process that points at the same Redis and prefix.
///
/// `acquire` sets `{prefix}:bucket:{id % max_concurrency}` with `NX PX window`; whoever sets it
/// identifies, everyone else waits for the key's remaining time and tries again. The budget is
/// `{prefix}:remaining`, decremented per identify and expiring when it resets.
#[derive(Clone)]
pub struct RedisIdentifyQueue {
    connection: ConnectionManager,
    prefix: String,
    window: Duration,
}

impl std::fmt::Debug for RedisIdentifyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdentifyQueue")
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .finish()
    }
}

fn unavailable(e: redis::RedisError) -> IdentifyError {
    IdentifyError::Unavailable(e.to_string())
}

impl RedisIdentifyQueue {
    /// Connects to `url` (`redis://127.0.0.1/`); keys start with `prefix`.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, IdentifyError> {
        Self::connect_with_window(url, prefix, IDENTIFY_WINDOW).await
    }

    /// The same with another window per bucket (tests and fake gateways).
    pub async fn connect_with_window(
        url: &str,
        prefix: impl Into<String>,
        window: Duration,
    ) -> Result<Self, IdentifyError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let connection = ConnectionManager::new(client).await.map_err(unavailable)?;
        Ok(Self {
            connection,
            prefix: prefix.into(),
            window,
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
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
            let window_ms = super::spacing(self.window).as_millis().max(1) as u64;
            loop {
                let set: Option<String> = redis::cmd("SET")
                    .arg(&bucket)
                    .arg(shard_id)
                    .arg("NX")
                    .arg("PX")
                    .arg(window_ms)
                    .query_async(&mut con)
                    .await
                    .map_err(unavailable)?;
                if set.is_some() {
                    break;
                }
                let ttl: i64 = con.pttl(&bucket).await.map_err(unavailable)?;
                let wait = Duration::from_millis(ttl.clamp(5, window_ms as i64) as u64);
                tokio::time::sleep(wait).await;
            }
            // The budget, if one was set: spend one start.
            let remaining = self.key("remaining");
            let exists: bool = con.exists(&remaining).await.map_err(unavailable)?;
            if exists {
                let left: i64 = con.decr(&remaining, 1).await.map_err(unavailable)?;
                if left < 0 {
                    let ttl: i64 = con.pttl(&remaining).await.map_err(unavailable)?;
                    return Err(IdentifyError::BudgetExhausted(Duration::from_millis(
                        ttl.max(0) as u64,
                    )));
                }
            }
            Ok(())
        })
    }

    fn session_start_limit(&self) -> BoxFuture<'_, Option<SessionStartLimit>> {
        Box::pin(async move {
            let mut con = self.connection.clone();
            let remaining: Option<i64> = con.get(self.key("remaining")).await.ok()?;
            let total: Option<u32> = con.get(self.key("total")).await.ok()?;
            let concurrency: Option<u32> = con.get(self.key("max_concurrency")).await.ok()?;
            let ttl: i64 = con.pttl(self.key("remaining")).await.ok()?;
            Some(SessionStartLimit {
                total: total?,
                remaining: remaining?.max(0) as u32,
                reset_after: ttl.max(0) as u64,
                max_concurrency: concurrency.unwrap_or(1),
            })
        })
    }

    fn set_session_start_limit(&self, limit: SessionStartLimit) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut con = self.connection.clone();
            let ttl = limit.reset_after.max(1);
            let _: Result<(), _> = redis::pipe()
                .cmd("SET")
                .arg(self.key("remaining"))
                .arg(limit.remaining)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .cmd("SET")
                .arg(self.key("total"))
                .arg(limit.total)
                .ignore()
                .cmd("SET")
                .arg(self.key("max_concurrency"))
                .arg(limit.max_concurrency)
                .ignore()
                .query_async(&mut con)
                .await;
        })
    }
}
