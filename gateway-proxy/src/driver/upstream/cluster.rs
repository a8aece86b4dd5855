//! The shards on Redis: their streams read by one task from each shard's session start, and
//! commands appended to their command streams by another, in the order the core gave them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use gateway_cluster::{
    Board, BoardReader, ClusterError, ClusterNode, CommandSender, NodeEvent, NodeEvents, Note, Tail,
};
use gateway_model::Command;
use gateway_shard::{RedisConnection, RedisOptions, RedisTarget};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::UpstreamEvent;
use crate::record::SessionRecord;

/// The board the proxies post the sessions they let go on.
const SESSIONS: &str = "sessions";

/// Notes the sessions board keeps (about): its last ones, a few minutes' worth of a large bot's
/// reconnects.
const SESSIONS_KEPT: usize = 100_000;

/// Notes that may wait for the sessions board (a shutdown's records of every client fit).
const POSTS_QUEUED: usize = 65_536;

/// Notes posted in one round trip at most.
const POSTS_PER_ROUND: usize = 1_024;

/// A note of the sessions board.
pub(in crate::driver) enum Shared {
    /// A session let go, for another process to take.
    Saved(SessionRecord),
    /// A session ended or taken: forget it.
    Ended(String),
    /// An all-members request for `guild` went upstream under `nonce`, `age` ago.
    Members {
        guild: u64,
        nonce: String,
        age: Duration,
    },
}

/// What the sessions' writer does next.
enum Post {
    Note(Shared),
    /// Everything before it is posted: say so.
    Flush(oneshot::Sender<()>),
}

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
    board: Board,
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
            board: Board::new(connection.clone(), app.clone(), SESSIONS, SESSIONS_KEPT),
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
    entries: mpsc::Receiver<UpstreamEvent>,
    commands: mpsc::UnboundedSender<(u32, Command)>,
    posts: mpsc::Sender<Post>,
    node: Option<ClusterNode>,
    tail: JoinHandle<()>,
    sessions: JoinHandle<()>,
}

impl Running {
    /// Follows shards `range` and starts sending commands.
    pub(in crate::driver) fn start(upstream: ClusterUpstream, range: Range<u32>) -> Self {
        let (tx, entries) = mpsc::channel(READ_AHEAD);
        let sessions = tokio::spawn(read_sessions(
            upstream.redis.clone(),
            upstream.app.clone(),
            tx.clone(),
        ));
        let tail = tokio::spawn(follow(upstream.redis, upstream.app, range, tx));
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_commands(upstream.commands, rx));
        let (posts, rx) = mpsc::channel(POSTS_QUEUED);
        tokio::spawn(post_sessions(upstream.board, rx));
        let node = upstream.node.map(|(node, events)| {
            tokio::spawn(log_node_events(events));
            node
        });
        Self {
            entries,
            commands,
            posts,
            node,
            tail,
            sessions,
        }
    }

    pub(super) async fn next(&mut self) -> Option<UpstreamEvent> {
        self.entries.recv().await
    }

    /// Queues `note` for the board; with [`POSTS_QUEUED`] already waiting (Redis slow or
    /// away), it is dropped with a warning: that session is then resumable here alone.
    pub(super) fn share(&self, note: Shared) {
        match self.posts.try_send(Post::Note(note)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("{POSTS_QUEUED} notes wait for the sessions board: one dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("the sessions' writer is gone: a session not shared");
            }
        }
    }

    /// Waits until everything shared so far is posted (or the writer is gone).
    pub(super) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.posts.send(Post::Flush(tx)).await.is_ok() && rx.await.is_err() {
            tracing::warn!("the sessions' writer ended before its flush");
        }
    }

    pub(super) fn send(&self, shard: u32, command: Command) -> bool {
        self.commands.send((shard, command)).is_ok()
    }

    pub(super) async fn shutdown(self) {
        self.tail.abort();
        self.sessions.abort();
        if let Some(node) = self.node
            && let Err(e) = node.shutdown().await
        {
            tracing::error!(error = %e, "the cluster node's shutdown");
        }
    }
}

/// Reads shards `range`'s streams into `tx`, from each one's session start, until `tx` closes;
/// after an error, connects again and goes on from where each stream was read to.
async fn follow(
    redis: RedisTarget,
    app: String,
    range: Range<u32>,
    tx: mpsc::Sender<UpstreamEvent>,
) {
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
    tx: &mpsc::Sender<UpstreamEvent>,
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
                if tx.send(UpstreamEvent::Tailed(ready)).await.is_err() {
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
            if tx.send(UpstreamEvent::Tailed(entry)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Reads the sessions board into `tx` from its oldest note, until `tx` closes; after an error,
/// connects again and goes on after the last note read.
async fn read_sessions(redis: RedisTarget, app: String, tx: mpsc::Sender<UpstreamEvent>) {
    let mut last: Option<String> = None;
    let mut pause = Duration::from_millis(100);
    loop {
        let read = async {
            let mut reader = BoardReader::connect(&redis, app.as_str(), SESSIONS, BLOCK).await?;
            if let Some(last) = &last {
                reader.resume_after(last.clone());
            }
            loop {
                let notes = reader.next().await;
                last = Some(reader.last().to_owned());
                for note in notes? {
                    let Some(shared) = shared(&note) else {
                        continue;
                    };
                    if tx.send(UpstreamEvent::Shared(shared)).await.is_err() {
                        return Ok::<(), ClusterError>(());
                    }
                }
                pause = Duration::from_millis(100);
            }
        };
        match read.await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, ?pause, "reading the sessions board: reading again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A note read: a record with what is left of its TTL by the wall clock (Redis's, in the
/// note's id, against this machine's), or an ended session. `None` for an expired record or a
/// note that is neither.
fn shared(note: &Note) -> Option<Shared> {
    if let Some(id) = note.body.strip_prefix("ended ") {
        return Some(Shared::Ended(id.to_owned()));
    }
    if let Some(request) = note.body.strip_prefix("members ") {
        let (guild, nonce) = request.split_once(' ')?;
        let age = Duration::from_millis(unix_ms().saturating_sub(note.at_ms));
        let (guild, nonce) = (guild.parse().ok()?, nonce.to_owned());
        return Some(Shared::Members { guild, nonce, age });
    }
    let json = note.body.strip_prefix("saved ")?;
    let mut record = match SessionRecord::from_json(json) {
        Ok(record) => record,
        Err(e) => {
            tracing::warn!(error = %e, "a sessions board note is not a record");
            return None;
        }
    };
    let age = unix_ms().saturating_sub(note.at_ms);
    record.ttl_ms = record.ttl_ms.checked_sub(age).filter(|left| *left > 0)?;
    Some(Shared::Saved(record))
}

/// The wall clock, in Unix milliseconds (the driver reads clocks; the core does not).
#[allow(clippy::disallowed_methods)]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Posts the sessions shared, in order, what is queued in one round trip (a shutdown's
/// thousands of records among them); a post Redis refuses is lost (those sessions are then
/// resumable on this process alone).
async fn post_sessions(board: Board, mut rx: mpsc::Receiver<Post>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, POSTS_PER_ROUND).await > 0 {
        let mut bodies = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for post in batch.drain(..) {
            match post {
                Post::Flush(done) => flushes.push(done),
                Post::Note(note) => bodies.extend(note_body(note)),
            }
        }
        if !bodies.is_empty()
            && let Err(e) = board.post_all(&bodies).await
        {
            tracing::warn!(error = %e, notes = bodies.len(), "sessions not shared");
        }
        for done in flushes {
            // The flusher may have stopped waiting.
            let _waited = done.send(());
        }
    }
}

/// A note as the board holds it; `None` for a record that cannot be written.
fn note_body(note: Shared) -> Option<String> {
    match note {
        Shared::Ended(id) => Some(format!("ended {id}")),
        Shared::Members { guild, nonce, .. } => Some(format!("members {guild} {nonce}")),
        Shared::Saved(record) => match record.to_json() {
            Ok(json) => Some(format!("saved {json}")),
            Err(e) => {
                tracing::warn!(error = %e, "session not shared");
                None
            }
        },
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
