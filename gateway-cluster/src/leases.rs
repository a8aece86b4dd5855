//! Shard leases in Redis: `SET NX PX` to take, compare-and-extend to renew, compare-and-delete
//! to release, each against the lease's `{node}/{token}` value (see [`Lease`]).

use std::time::Duration;

use gateway_shard::RedisConnection;

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

/// Takes up to ARGV[3] free leases of many shards in one call, as [`ACQUIRE`] does each.
/// KEYS: lease, fence of each candidate in turn (one hash tag: one slot, so Redis Cluster runs
/// it too). ARGV: node, ttl ms, at most. Returns the candidate's index (from 0) and its token
/// for each lease taken.
const ACQUIRE_MANY: &str = r"
local taken = {}
local most = tonumber(ARGV[3])
for i = 1, #KEYS, 2 do
  if #taken >= 2 * most then break end
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local token = redis.call('INCR', KEYS[i + 1])
    redis.call('SET', KEYS[i], ARGV[1] .. '/' .. token, 'PX', ARGV[2])
    taken[#taken + 1] = (i - 1) / 2
    taken[#taken + 1] = token
  end
end
return taken
";

/// Candidates per [`ACQUIRE_MANY`] call: a round over 1,000 shards is 8 calls, not 1,000.
const ACQUIRE_BATCH: usize = 128;

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
    connection: RedisConnection,
    keys: Keys,
    node: String,
    ttl: Duration,
    call_limit: Duration,
    acquire: redis::Script,
    acquire_many: redis::Script,
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
        connection: RedisConnection,
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
            acquire_many: redis::Script::new(ACQUIRE_MANY),
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

    /// Takes up to `most` of the free leases among `candidates`, in their order, a batch of
    /// them per call. A call that fails after others took leases ends the round with those.
    pub async fn acquire_many(
        &self,
        candidates: &[u32],
        most: usize,
    ) -> Result<Vec<Lease>, ClusterError> {
        let mut taken = Vec::new();
        for batch in candidates.chunks(ACQUIRE_BATCH) {
            let room = most.saturating_sub(taken.len());
            if room == 0 {
                break;
            }
            let mut con = self.connection.clone();
            let sent = gateway_shard::drive::now();
            let mut call = self.acquire_many.prepare_invoke();
            for shard in batch {
                call.key(self.keys.lease(*shard))
                    .key(self.keys.fence(*shard));
            }
            call.arg(&self.node).arg(self.ttl_ms()).arg(room);
            let answer: Vec<u64> = match timed(self.call_limit, call.invoke_async(&mut con)).await {
                Ok(answer) => answer,
                // What earlier batches took is held: it must run, not wait out its TTL.
                Err(e) if !taken.is_empty() => {
                    tracing::warn!(error = %e, "a batch of leases not taken");
                    break;
                }
                Err(e) => return Err(e),
            };
            for pair in answer.chunks_exact(2) {
                let index = usize::try_from(pair[0]).unwrap_or(usize::MAX);
                match batch.get(index) {
                    Some(shard) => taken.push(Lease::new(&self.node, *shard, pair[1], sent)),
                    // The script writes indexes within the batch; the rest are still held.
                    None => tracing::error!(index, "a lease index out of its batch"),
                }
            }
        }
        Ok(taken)
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
        self.release_with(lease, false).await
    }

    /// Gives `lease` up, if it is still this node's, and says so on the release channel (see
    /// [`Keys::released`]) so that another node takes it at once: for a handoff. A release
    /// because the node could not run the shard is not announced, or the node itself would
    /// take it back at once, again and again.
    pub async fn release_announced(&self, lease: &Lease) -> Result<(), ClusterError> {
        self.release_with(lease, true).await
    }

    async fn release_with(&self, lease: &Lease, announce: bool) -> Result<(), ClusterError> {
        let mut con = self.connection.clone();
        let mut call = self.release.key(self.keys.lease(lease.shard));
        call.arg(lease.value());
        let deleted: i64 = timed(self.call_limit, call.invoke_async(&mut con)).await?;
        if deleted == 1 && announce {
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(self.keys.released()).arg(lease.shard);
            // Released either way: a lost notice costs the next node one round of upkeep.
            if let Err(e) = timed(self.call_limit, publish.query_async::<i64>(&mut con)).await {
                tracing::warn!(shard = lease.shard, error = %e, "release not announced");
            }
        }
        Ok(())
    }
}
