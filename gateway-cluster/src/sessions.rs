//! Sessions that survive processes: each shard's `session_id`, last published `seq` and
//! `resume_url` in a hash, written only by the holder of the shard's lease (checked in the same
//! script, against the lease's fencing value).

use std::time::Duration;

use gateway_shard::RedisConnection;
use gateway_shard::ResumeInfo;

use crate::error::{ClusterError, timed};
use crate::keys::Keys;
use crate::lease::Lease;

/// Writes the session if the lease still holds this value. KEYS: lease, session. ARGV: value,
/// session_id, seq, resume_url, keep ms.
const SAVE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[2], 'session_id', ARGV[2], 'seq', ARGV[3], 'resume_url', ARGV[4], 'holder', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
";

/// How long a stored session is kept: Discord forgets sessions long before this.
const KEEP: Duration = Duration::from_secs(3600);

/// The stored sessions of one application.
#[derive(Clone)]
pub struct SessionStore {
    connection: RedisConnection,
    keys: Keys,
    save: redis::Script,
    call_limit: Duration,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("app", &self.keys.app())
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// The store of `keys`' application.
    pub fn new(connection: RedisConnection, keys: Keys, call_limit: Duration) -> Self {
        Self {
            connection,
            keys,
            save: redis::Script::new(SAVE),
            call_limit,
        }
    }

    /// Stores `session` for `lease`'s shard; false if the lease is no longer this node's.
    pub async fn save(&self, lease: &Lease, session: &ResumeInfo) -> Result<bool, ClusterError> {
        let mut con = self.connection.clone();
        let mut call = self.save.key(self.keys.lease(lease.shard));
        call.key(self.keys.session(lease.shard))
            .arg(lease.value())
            .arg(&session.session_id)
            .arg(session.sequence)
            .arg(&session.resume_url)
            .arg(u64::try_from(KEEP.as_millis()).unwrap_or(u64::MAX));
        let saved: i64 = timed(self.call_limit, call.invoke_async(&mut con)).await?;
        Ok(saved == 1)
    }

    /// The stored session of `shard`, if any.
    pub async fn load(&self, shard: u32) -> Result<Option<ResumeInfo>, ClusterError> {
        let mut con = self.connection.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.session(shard))
            .arg("session_id")
            .arg("seq")
            .arg("resume_url");
        let (id, seq, url): (Option<String>, Option<String>, Option<String>) =
            timed(self.call_limit, cmd.query_async(&mut con)).await?;
        let (Some(session_id), Some(seq), Some(resume_url)) = (id, seq, url) else {
            return Ok(None);
        };
        let sequence = seq.parse().map_err(|_| ClusterError::Corrupt {
            what: "session seq",
            detail: seq.clone(),
        })?;
        Ok(Some(ResumeInfo {
            session_id,
            sequence,
            resume_url,
        }))
    }

    /// Forgets `shard`'s stored session (it ended and cannot be resumed).
    pub async fn forget(&self, shard: u32) -> Result<(), ClusterError> {
        let mut con = self.connection.clone();
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.keys.session(shard));
        let _deleted: i64 = timed(self.call_limit, cmd.query_async(&mut con)).await?;
        Ok(())
    }
}
