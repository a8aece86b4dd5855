//! What a node tells its operator.

use gateway_shard::{ResumeInfo, ShardEvent};

/// What a node did, for operators.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// It took shard `shard`'s lease (fencing token `token`), and starts it, resuming if a
    /// session was stored.
    Took {
        /// The shard.
        shard: u32,
        /// The fencing token.
        token: u64,
        /// The stored session it resumes.
        resuming: Option<ResumeInfo>,
    },
    /// It lost shard `shard`'s lease (taken over, or not renewed in time), or could not start
    /// the shard, and stopped it.
    Lost {
        /// The shard.
        shard: u32,
        /// Why.
        reason: String,
    },
    /// It handed shard `shard` over on shutdown: session stored, lease released.
    Released {
        /// The shard.
        shard: u32,
        /// The stored session.
        session: Option<ResumeInfo>,
    },
    /// One of its shards said something (dispatches are published, not repeated here).
    Shard(u32, ShardEvent),
}
