//! A shard lease as a node holds it: who runs which shard. In Redis a lease is a key set with
//! `NX PX ttl` holding `{node}/{token}`, where the token comes from the shard's fencing counter;
//! it is renewed by compare-and-extend and released by compare-and-delete (`Leases`, with the
//! `redis` feature), so a node only ever touches a lease it still holds.
//!
//! A node that cannot renew in time must stop the shard before anyone else may start it. Redis
//! expires the key `ttl` after the last renewal *arrived*; the node measures from when it *sent*
//! that renewal, which is earlier, and stops `margin` before `ttl` has passed: by then the key has
//! not expired, so no other node has taken it.

use std::time::{Duration, Instant};

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard.
    pub shard: u32,
    /// The fencing token: higher than any earlier holder's.
    pub token: u64,
    value: String,
    /// When the last successful take or renewal was sent.
    confirmed_from: Instant,
}

impl Lease {
    /// Node `node`'s lease of `shard` with fencing token `token`, taken by a request sent at
    /// `sent`.
    pub fn new(node: &str, shard: u32, token: u64, sent: Instant) -> Self {
        Self {
            shard,
            token,
            value: format!("{node}/{token}"),
            confirmed_from: sent,
        }
    }

    /// The value stored in the lease key: `{node}/{token}`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// A renewal sent at `sent` succeeded.
    pub fn confirm(&mut self, sent: Instant) {
        self.confirmed_from = self.confirmed_from.max(sent);
    }

    /// When this node must have stopped the shard unless a renewal succeeds first.
    pub fn stop_by(&self, ttl: Duration, margin: Duration) -> Instant {
        self.confirmed_from + ttl.saturating_sub(margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_kept_from_its_latest_confirmed_renewal_less_the_margin() {
        let t0 = Instant::now();
        let (ttl, margin) = (Duration::from_secs(10), Duration::from_secs(2));
        let mut lease = Lease::new("a", 3, 7, t0);
        assert_eq!(lease.value(), "a/7");
        assert_eq!(lease.stop_by(ttl, margin), t0 + Duration::from_secs(8));
        lease.confirm(t0 + Duration::from_secs(3));
        // A late answer to an older renewal never moves the deadline back.
        lease.confirm(t0 + Duration::from_secs(1));
        assert_eq!(lease.stop_by(ttl, margin), t0 + Duration::from_secs(11));
    }
}
