//! Commands to a shard from any process: appended to the shard's command stream
//! ([`Keys::commands`]), which the node that holds the shard reads and sends on it, wherever it
//! runs. A command waits in the stream while the shard changes hands, or until a first node holds
//! it; delivery is at most once.

use gateway_model::Command;
use gateway_shard::RedisConnection;

use crate::error::ClusterError;
use crate::keys::Keys;

/// Commands kept per stream (about: `MAXLEN ~`): a shard with no holder for long keeps only
/// the newest.
const MAXLEN: usize = 1_000;

/// The consumer group of every command stream, read by the shard's holder.
pub(crate) const GROUP: &str = "holders";

/// Appends a command, making the stream and its group first if the stream is new: a command
/// sent before any node read the shard's commands waits for the first one (the group starts
/// before it), and a stream never exists without its group. KEYS: the stream; ARGV: the group,
/// the maxlen, the payload.
static SEND: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '$', 'MKSTREAM')
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'c', ARGV[3])
",
    )
});

/// Sends commands to an application's shards through Redis.
#[derive(Clone)]
pub struct CommandSender {
    connection: RedisConnection,
    keys: Keys,
}

impl std::fmt::Debug for CommandSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSender")
            .field("app", &self.keys.app())
            .finish_non_exhaustive()
    }
}

impl CommandSender {
    /// A sender for `app`'s shards over `connection`.
    pub fn new(connection: RedisConnection, app: impl Into<String>) -> Self {
        Self {
            connection,
            keys: Keys::new(app),
        }
    }

    /// Appends `command` to shard `shard`'s command stream, as its payload JSON (`c`).
    pub async fn send(&self, shard: u32, command: &Command) -> Result<(), ClusterError> {
        let json = sonic_rs::to_string(command).map_err(|e| ClusterError::Encode(e.to_string()))?;
        let mut connection = self.connection.clone();
        let _id: String = SEND
            .key(self.keys.commands(shard))
            .arg(GROUP)
            .arg(MAXLEN)
            .arg(json)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }
}
