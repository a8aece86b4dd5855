//! The answer of `GET /gateway/bot`: where to connect and how many sessions may start.

use serde::{Deserialize, Serialize};

/// `GET /gateway/bot`'s response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayBot {
    /// The gateway URL to cache and connect to.
    pub url: String,
    /// The recommended shard count.
    pub shards: u32,
    /// The session start budget.
    pub session_start_limit: SessionStartLimit,
}

/// How many sessions (IDENTIFYs) may still start, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStartLimit {
    /// Session starts allowed per day.
    pub total: u32,
    /// Session starts left.
    pub remaining: u32,
    /// Milliseconds until `remaining` resets to `total`.
    pub reset_after: u64,
    /// IDENTIFYs allowed per 5 s: the number of rate-limit buckets (`shard_id % max_concurrency`).
    pub max_concurrency: u32,
}
