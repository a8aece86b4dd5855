//! The shards on Redis: their streams read by one task from each shard's session start, and
//! commands appended to their command streams by another, in the order the core gave them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use gateway_cluster::{
    ClusterError, ClusterNode, CommandSender, NodeEvent, NodeEvents, Tail, Tailed,
};
use gateway_model::Command;
use gateway_shard::{RedisConnection, RedisOptions, RedisTarget};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long one read of the streams waits for entries.
const BLOCK: Duration = Duration::from_secs(1);

/// Entries read ahead of the loop: beyond, the reading task waits.
const READ_AHEAD: usize = 4096;

/// The proxy's shards on Redis, held by [`ClusterNode`]s in this process or others: the proxy
/// follows their streams (an application's, as its nodes publish them) and sends commands
/// through Redis to whichever node holds each shard.
pub struct ClusterUpstream {
    redis: RedisTarget,
    app: String,
    commands: CommandSender,
    node: Option<(ClusterNode, NodeEvents)>,
}

impl std::fmt::Debug for ClusterUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUpstream")
            .field("app", &self.app)
            .field("node", &self.node.is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterUpstream {
    /// Application `app`'s shards on `redis`, held by nodes elsewhere.
    pub async fn connect(redis: RedisTarget, app: impl Into<String>) -> Result<Self, ClusterError> {
        let app = app.into();
        let connection = RedisConnection::connect(&redis, RedisOptions::default()).await?;
        Ok(Self {
            commands: CommandSender::new(connection, app.clone()),
            redis,
            app,
            node: None,
        })
    }

    /// With a node of this process among the holders: the proxy's shutdown shuts it down,
    /// handing its shards to the other nodes with no IDENTIFY.
    #[must_use]
    pub fn with_node(mut self, node: ClusterNode, events: NodeEvents) -> Self {
        self.node = Some((node, events));
        self
    }
}

/// A cluster upstream at work.
pub(in crate::driver) struct Running {
    entries: mpsc::Receiver<Tailed>,
    commands: mpsc::UnboundedSender<(u32, Command)>,
    node: Option<ClusterNode>,
    tail: JoinHandle<()>,
}

impl Running {
    /// Follows shards `range` and starts sending commands.
    pub(in crate::driver) fn start(upstream: ClusterUpstream, range: Range<u32>) -> Self {
        let (tx, entries) = mpsc::channel(READ_AHEAD);
        let tail = tokio::spawn(follow(upstream.redis, upstream.app, range, tx));
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_commands(upstream.commands, rx));
        let node = upstream.node.map(|(node, events)| {
            tokio::spawn(log_node_events(events));
            node
        });
        Self {
            entries,
            commands,
            node,
            tail,
        }
    }

    pub(super) async fn next(&mut self) -> Option<Tailed> {
        self.entries.recv().await
    }

    pub(super) fn send(&self, shard: u32, command: Command) -> bool {
        self.commands.send((shard, command)).is_ok()
    }

    pub(super) async fn shutdown(self) {
        self.tail.abort();
        if let Some(node) = self.node
            && let Err(e) = node.shutdown().await
        {
            tracing::error!(error = %e, "the cluster node's shutdown");
        }
    }
}

/// Reads shards `range`'s streams into `tx`, from each one's session start, until `tx` closes;
/// after an error, connects again and goes on from where each stream was read to.
async fn follow(redis: RedisTarget, app: String, range: Range<u32>, tx: mpsc::Sender<Tailed>) {
    let mut positions: BTreeMap<u32, u64> = BTreeMap::new();
    let mut pause = Duration::from_millis(100);
    loop {
        match follow_once(&redis, &app, range.clone(), &tx, &mut positions).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, ?pause, "reading the shards' streams: reading again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One connection's reads: `Ok` once `tx` closed.
async fn follow_once(
    redis: &RedisTarget,
    app: &str,
    range: Range<u32>,
    tx: &mpsc::Sender<Tailed>,
    positions: &mut BTreeMap<u32, u64>,
) -> Result<(), ClusterError> {
    let mut tail = Tail::connect(redis, app, BLOCK).await?;
    for shard in range {
        if let Some(pos) = positions.get(&shard) {
            tail.follow_after(shard, *pos);
            continue;
        }
        match tail.follow_session(shard).await? {
            Some(ready) => {
                positions.insert(shard, ready.pos);
                if tx.send(ready).await.is_err() {
                    return Ok(());
                }
            }
            None => {
                positions.insert(shard, 0);
            }
        }
    }
    loop {
        for entry in tail.next().await? {
            positions.insert(entry.shard, entry.pos);
            if tx.send(entry).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Sends the core's commands to their shards' command streams, in order; a command Redis
/// refuses is lost, as one on a dropped connection is (at most once).
async fn send_commands(sender: CommandSender, mut rx: mpsc::UnboundedReceiver<(u32, Command)>) {
    while let Some((shard, command)) = rx.recv().await {
        if let Err(e) = sender.send(shard, &command).await {
            tracing::warn!(shard, error = %e, "command not sent upstream");
        }
    }
}

/// What the node in this process does with its shards, in the log.
async fn log_node_events(mut events: NodeEvents) {
    while let Some(event) = events.next().await {
        match event {
            NodeEvent::Took {
                shard, resuming, ..
            } => tracing::info!(shard, resuming = resuming.is_some(), "took the shard"),
            NodeEvent::Lost { shard, reason } => tracing::warn!(shard, %reason, "lost the shard"),
            NodeEvent::Released { shard, .. } => tracing::info!(shard, "handed the shard over"),
            _ => {}
        }
    }
}
