//! Shard leases in Redis: `SET NX PX` to take, compare-and-extend to renew, compare-and-delete
//! to release, each against the lease's `{node}/{token}` value (see [`Lease`]).

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::error::{ClusterError, timed};
use crate::keys::Keys;
use crate::lease::Lease;

/// Takes a free lease: sets it, then writes the next fencing token into it. Returns the token,
/// or nil if the lease is held. KEYS: lease, fence. ARGV: node, ttl ms.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. '/' .. token, 'PX', ARGV[2])
  return token
end
return false
";

/// Extends a lease that still holds this value. KEYS: lease. ARGV: value, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes a lease that still holds this value. KEYS: lease. ARGV: value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The lease operations of one node.
#[derive(Clone)]
pub struct Leases {
    connection: ConnectionManager,
    keys: Keys,
    node: String,
    ttl: Duration,
    call_limit: Duration,
    acquire: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("app", &self.keys.app())
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// Leases of `keys`' application for node `node`, each `ttl` long.
    pub fn new(
        connection: ConnectionManager,
        keys: Keys,
        node: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            connection,
            keys,
            node: node.into(),
            ttl,
            call_limit: (ttl / 4).max(Duration::from_millis(50)),
            acquire: redis::Script::new(ACQUIRE),
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Takes shard `shard`'s lease if it is free.
    pub async fn acquire(&self, shard: u32) -> Result<Option<Lease>, ClusterError> {
        let mut con = self.connection.clone();
        let sent = gateway_shard::drive::now();
        let mut call = self.acquire.key(self.keys.lease(shard));
        call.key(self.keys.fence(shard))
            .arg(&self.node)
            .arg(self.ttl_ms());
        let token: Option<u64> = timed(self.call_limit, call.invoke_async(&mut con)).await?;
        Ok(token.map(|token| Lease::new(&self.node, shard, token, sent)))
    }

    /// Extends `lease`; false if it is no longer this node's (taken over, or expired).
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool, ClusterError> {
        let mut con = self.connection.clone();
        let sent = gateway_shard::drive::now();
        let mut call = self.renew.key(self.keys.lease(lease.shard));
        call.arg(lease.value()).arg(self.ttl_ms());
        let renewed: i64 = timed(self.call_limit, call.invoke_async(&mut con)).await?;
        if renewed == 1 {
            lease.confirm(sent);
        }
        Ok(renewed == 1)
    }

    /// Gives `lease` up, if it is still this node's.
    pub async fn release(&self, lease: &Lease) -> Result<(), ClusterError> {
        let mut con = self.connection.clone();
        let mut call = self.release.key(self.keys.lease(lease.shard));
        call.arg(lease.value());
        let _deleted: i64 = timed(self.call_limit, call.invoke_async(&mut con)).await?;
        Ok(())
    }
}
