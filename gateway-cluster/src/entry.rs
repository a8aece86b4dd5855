//! One event as it goes to a shard's stream: the fields `t`, `shard`, `session`, `seq`, `fence`
//! and `d`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The event name (`t`).
    pub name: Cow<'static, str>,
    /// The shard.
    pub shard: u32,
    /// The session it belongs to.
    pub session: Arc<str>,
    /// Its sequence number in the session.
    pub seq: u64,
    /// The fencing token of the lease under which the shard received it (see
    /// [`Leases`](crate::Leases)): the stream refuses entries under a lower token than its last
    /// one (a node that lost the shard and does not know it yet), and under a higher one than the
    /// shard's fencing counter (a lease from before Redis lost its data).
    pub fence: u64,
    /// The raw `d` (READY's whole; empty for RESUMED).
    pub data: Box<str>,
    /// When it was handed to the publisher.
    pub queued: Instant,
}
