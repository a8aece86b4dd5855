//! Commands from other processes to the shards this node holds. Each shard has a command stream
//! ([`Keys::commands`], written by [`CommandSender`](crate::CommandSender)), read through one
//! consumer group, `holders`, by whichever node holds the shard: a command sent while the shard
//! changes hands waits in the stream for the next holder, and none is read twice.
//!
//! Delivery is at most once: a command read by a node that dies before it sends it is lost, as
//! one sent on a connection that drops is. One read by a node that let the shard go while its
//! read waited goes back to the stream, for the next holder. The reader runs beside the driver,
//! which tells it the shards it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gateway_model::Command;
use gateway_shard::{CommandError, Commander, RedisConnection, RedisOptions, RedisTarget};
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::watch;

use crate::command::GROUP;
use crate::consume::field;
use crate::error::ClusterError;
use crate::keys::Keys;

/// How long one read waits: a shard taken meanwhile has its commands read after at most this.
const BLOCK: Duration = Duration::from_millis(250);

/// Reads the commands of the shards in `held` (by their commanders), from `redis`, until
/// `held`'s sender is dropped; reconnects with a growing pause.
pub(super) fn spawn(
    redis: RedisTarget,
    keys: Keys,
    node: String,
    mut held: watch::Receiver<BTreeMap<u32, Commander>>,
) {
    tokio::spawn(async move {
        let mut reader = Reader {
            redis,
            keys,
            node,
            connection: None,
            grouped: BTreeSet::new(),
        };
        let mut pause = Duration::from_millis(100);
        loop {
            let shards = held.borrow_and_update().clone();
            if shards.is_empty() {
                if held.changed().await.is_err() {
                    return;
                }
                continue;
            }
            // A read is never cut short (what Redis handed over would be lost): a change of
            // shards waits for its end, at most the block time.
            match reader.read(&shards).await {
                Ok(()) => pause = Duration::from_millis(100),
                Err(e) => {
                    tracing::debug!(error = %e, "commands: reading again");
                    reader.connection = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
            if held.has_changed().is_err() {
                return;
            }
        }
    });
}

struct Reader {
    redis: RedisTarget,
    keys: Keys,
    node: String,
    connection: Option<RedisConnection>,
    /// Streams whose group is known to exist.
    grouped: BTreeSet<u32>,
}

impl Reader {
    /// One read of every held shard's commands, each sent on its shard in order.
    async fn read(&mut self, shards: &BTreeMap<u32, Commander>) -> Result<(), ClusterError> {
        let connection = match &mut self.connection {
            Some(c) => c,
            None => {
                let options =
                    RedisOptions::default().with_response_timeout(BLOCK + Duration::from_secs(5));
                let c = RedisConnection::connect(&self.redis, options).await?;
                self.grouped.clear();
                self.connection.insert(c)
            }
        };
        for shard in shards.keys() {
            if self.grouped.contains(shard) {
                continue;
            }
            // A sender makes the group with the stream; this covers a stream made otherwise.
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys.commands(*shard))
                .arg(GROUP)
                .arg("$")
                .arg("MKSTREAM")
                .query_async(connection)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
            self.grouped.insert(*shard);
        }
        let keys: Vec<String> = shards.keys().map(|s| self.keys.commands(*s)).collect();
        let ids: Vec<&str> = keys.iter().map(|_| ">").collect();
        let block = usize::try_from(BLOCK.as_millis()).unwrap_or(usize::MAX);
        let options = StreamReadOptions::default()
            .group(GROUP, &self.node)
            .noack()
            .count(64)
            .block(block);
        let read = redis::AsyncCommands::xread_options(connection, &keys, &ids, &options).await;
        let reply: Option<StreamReadReply> = match read {
            Err(e) if e.code() == Some("UNBLOCKED") => None,
            read => read?,
        };
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some((shard, commander)) = keys
                .iter()
                .position(|k| *k == key.key)
                .and_then(|i| shards.iter().nth(i))
            else {
                continue;
            };
            for entry in key.ids {
                let json: String = field(&entry, "c")?;
                let put_back = deliver(*shard, commander, &entry.id, &json).await;
                if put_back {
                    put_back_command(connection, &key.key, &json).await?;
                }
            }
        }
        Ok(())
    }
}

/// Sends one command on its shard; true when the shard is gone (the node let it go while the
/// read was waiting), so that the command goes back for the next holder.
async fn deliver(shard: u32, commander: &Commander, id: &str, json: &str) -> bool {
    let command = match Command::from_json(json) {
        Ok(command) => command,
        Err(e) => {
            tracing::warn!(shard, id, error = %e, "command stream entry is not a command");
            return false;
        }
    };
    match commander.send(command).await {
        Ok(()) => false,
        Err(CommandError::NotRunning) => true,
        Err(e) => {
            tracing::warn!(shard, id, error = %e, "command from the stream not sent");
            false
        }
    }
}

/// Appends a command read for a shard no longer here to its stream again: the next holder reads
/// it, after what was sent meanwhile (a read waits at most [`BLOCK`], so little can be).
async fn put_back_command(
    connection: &mut RedisConnection,
    stream: &str,
    json: &str,
) -> Result<(), ClusterError> {
    let _id: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("c")
        .arg(json)
        .query_async(connection)
        .await?;
    Ok(())
}
