//! The identify queue: one IDENTIFY per rate-limit bucket per 5 s, within the daily budget.
//!
//! Discord lets a bot identify one shard per bucket (`shard_id % max_concurrency`) every 5 s, and
//! starts a limited number of sessions per day. Every identify of every shard goes through an
//! [`IdentifyQueue`]: at startup, after INVALID_SESSION false, after 4007 or 4009, after a failed
//! resume. [`LocalIdentifyQueue`] (the default) serves the shards of one process; the `redis`
//! feature adds [`RedisIdentifyQueue`], shared by processes and machines.

mod schedule;

#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use gateway_model::SessionStartLimit;

#[cfg(feature = "tokio")]
mod local;

#[cfg(feature = "tokio")]
pub use local::{LocalIdentifyQueue, local_queue};

#[cfg(feature = "redis")]
pub use self::redis::RedisIdentifyQueue;
pub use schedule::{Grant, IdentifySchedule, Ticket};

/// Discord's identify window per bucket.
pub const IDENTIFY_WINDOW: Duration = Duration::from_secs(5);

/// The spacing the queues keep: the window plus 5%. A grant is given before the IDENTIFY is
/// sent and Discord measures the window between identifies arriving, so two identifies granted
/// exactly one window apart can arrive a little less than a window apart (seen in the Redis
/// test: 1.496 s for a 1.5 s window, answered with INVALID_SESSION).
pub fn spacing(window: Duration) -> Duration {
    window + window / 20
}

/// A boxed future, as the queue's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a shard may not identify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifyError {
    /// The daily session start budget is spent until it resets.
    #[error("session start budget exhausted; it resets in {0:?}")]
    BudgetExhausted(Duration),
    /// The shared queue could not be reached.
    #[error("identify queue unavailable: {0}")]
    Unavailable(String),
}

/// Serializes identifies: [`acquire`](Self::acquire) returns when `shard_id` may identify.
pub trait IdentifyQueue: Send + Sync + std::fmt::Debug + 'static {
    /// Waits for `shard_id`'s turn in its bucket `shard_id % max_concurrency`. Dropping the future
    /// gives the place up.
    fn acquire(
        &self,
        shard_id: u32,
        max_concurrency: u32,
    ) -> BoxFuture<'_, Result<(), IdentifyError>>;

    /// The session start budget as the queue knows it (`None` when none was set).
    fn session_start_limit(
        &self,
    ) -> BoxFuture<'_, Result<Option<SessionStartLimit>, IdentifyError>>;

    /// Replaces the budget (from `GET /gateway/bot`). From then on every identify is counted
    /// against it, and none is granted once it is spent (or down to the queue's reserve).
    fn set_session_start_limit(
        &self,
        limit: SessionStartLimit,
    ) -> BoxFuture<'_, Result<(), IdentifyError>>;
}
