//! The state every connection shares: sessions, records, counters, identify buckets and the
//! session start budget, behind one mutex, with a `watch` channel bumped on every change; and the
//! handles tests hold on connections.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gateway_model::{Intents, ShardId, Snowflake};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::session_start::SessionStarts;
use crate::{ConnectionInfo, Fault, GatewayConfig, Recorded, Stats, Trigger, World};

/// A message from a test to one connection's task.
#[derive(Debug)]
pub(crate) enum Control {
    Fault(Trigger, Fault),
    Dispatch { name: String, data: String },
    GuildAvailable(Snowflake),
    GuildUnavailable(Snowflake),
}

/// A session the server knows.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) shard: ShardId,
    pub(crate) intents: Intents,
    pub(crate) large_threshold: usize,
    /// The last sequence number sent.
    pub(crate) seq: u64,
    /// The last dispatches sent, `(seq, payload)`, for RESUME.
    pub(crate) buffer: VecDeque<(u64, Arc<str>)>,
    /// The connection it is attached to.
    pub(crate) connection: Option<u64>,
    /// When its connection went away.
    pub(crate) detached_at: Option<Instant>,
}

/// Everything the connections share.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) stats: Stats,
    pub(crate) recorded: Vec<Recorded>,
    pub(crate) connections: Vec<ConnectionInfo>,
    pub(crate) controls: HashMap<u64, mpsc::UnboundedSender<Control>>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) next_connection_faults: VecDeque<Fault>,
    /// Last identify per concurrency bucket.
    pub(crate) identify_buckets: HashMap<u32, Instant>,
    /// Last full member request per guild (the limit is per bot).
    pub(crate) full_member_requests: HashMap<Snowflake, Instant>,
    pub(crate) sessions_started: u64,
    /// Guilds that started unavailable and were made available.
    pub(crate) made_available: HashSet<Snowflake>,
    /// The session start budget.
    pub(crate) session_starts: SessionStarts,
    /// Connection tasks that panicked.
    pub(crate) task_failures: u64,
}

impl State {
    pub(crate) fn connection_mut(&mut self, id: u64) -> Option<&mut ConnectionInfo> {
        self.connections.iter_mut().rev().find(|c| c.id == id)
    }

    /// Records a payload, forgetting the oldest ones past `limit` (an eighth at a time).
    pub(crate) fn record(&mut self, recorded: Recorded, limit: usize) {
        if self.recorded.len() >= limit.max(1) {
            let excess = self.recorded.len() + 1 - limit.max(1);
            let drop = excess.max(limit / 8).min(self.recorded.len());
            self.recorded.drain(..drop);
        }
        self.recorded.push(recorded);
    }

    /// Adds a connection, forgetting the oldest closed ones past `limit`.
    pub(crate) fn add_connection(&mut self, info: ConnectionInfo, limit: usize) {
        if self.connections.len() >= limit.max(1) {
            let mut excess = (self.connections.len() + 1 - limit.max(1)).max(limit / 8);
            self.connections.retain(|c| {
                if excess > 0 && !c.open {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.connections.push(info);
    }

    /// Forgets sessions detached for longer than `ttl`; returns how many.
    pub(crate) fn expire_sessions(&mut self, now: Instant, ttl: Duration) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| {
            s.connection.is_some() || s.detached_at.is_none_or(|t| now.duration_since(t) <= ttl)
        });
        before - self.sessions.len()
    }

    /// A handle on connection `id`, while it is open.
    pub(crate) fn connection(&self, id: u64) -> Option<ConnectionHandle> {
        self.controls
            .get(&id)
            .map(|tx| ConnectionHandle { id, tx: tx.clone() })
    }

    /// The open connection that carries `shard`'s session, if any.
    fn shard_connection(&self, shard: u32) -> Option<ConnectionHandle> {
        let id = self
            .connections
            .iter()
            .rev()
            .find(|c| {
                c.open && c.shard.is_some_and(|s| s.number() == shard) && c.session_id.is_some()
            })?
            .id;
        self.controls
            .get(&id)
            .map(|tx| ConnectionHandle { id, tx: tx.clone() })
    }
}

/// How much the server holds now: what a long run must bring back down (see
/// [`FakeGateway::state_counts`](crate::FakeGateway::state_counts)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StateCounts {
    /// Connections open now (websocket and HTTP).
    pub open_connections: usize,
    /// Control channels of live connections.
    pub controls: usize,
    /// Sessions known, resumable or live.
    pub sessions: usize,
    /// Connections remembered (bounded by [`GatewayConfig::history_limit`]).
    pub connection_history: usize,
    /// Payloads recorded (bounded by [`GatewayConfig::history_limit`]).
    pub recorded: usize,
    /// Faults queued for next connections.
    pub queued_faults: usize,
    /// Connection tasks that panicked (always 0, unless the testkit has a bug).
    pub task_failures: u64,
}

pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) world: World,
    pub(crate) url: String,
    pub(crate) started: Instant,
    state: Mutex<State>,
    pub(crate) changed: watch::Sender<u64>,
    /// One permit per open socket, websocket or HTTP.
    pub(crate) open_sockets: Arc<Semaphore>,
}

impl Shared {
    /// The shared state of a server at `url`.
    pub(crate) fn new(config: GatewayConfig, world: World, url: String) -> Self {
        let (changed, _) = watch::channel(0);
        let sockets = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            config,
            world,
            url,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            changed,
            open_sockets: Arc::new(Semaphore::new(sockets)),
        }
    }

    /// Sockets open now.
    pub(crate) fn open_sockets(&self) -> usize {
        self.config.max_connections.clamp(1, Semaphore::MAX_PERMITS)
            - self.open_sockets.available_permits()
    }

    /// Locks the state for reading.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the state and wakes whoever waits on it.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        r
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The open connection that carries `shard`'s session, if any.
    pub(crate) fn shard_connection(&self, shard: u32) -> Option<ConnectionHandle> {
        self.lock().shard_connection(shard)
    }
}

/// A read-only view of the server's state, handed to
/// [`FakeGateway::wait_for`](crate::FakeGateway::wait_for) predicates.
#[derive(Debug)]
pub struct View<'a> {
    state: &'a State,
}

impl<'a> View<'a> {
    pub(crate) fn new(state: &'a State) -> Self {
        Self { state }
    }
    /// The counters.
    pub fn stats(&self) -> Stats {
        self.state.stats
    }

    /// Every payload clients sent, in order.
    pub fn recorded(&self) -> &[Recorded] {
        &self.state.recorded
    }

    /// Every connection, in accept order.
    pub fn connections(&self) -> &[ConnectionInfo] {
        &self.state.connections
    }
}

/// A handle on one open connection.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    id: u64,
    tx: mpsc::UnboundedSender<Control>,
}

impl ConnectionHandle {
    /// The connection's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Injects a fault now. Returns false if the connection is gone.
    pub fn inject(&self, fault: Fault) -> bool {
        self.inject_on(Trigger::Now, fault)
    }

    /// Injects a fault when `trigger` fires. Returns false if the connection is gone.
    pub fn inject_on(&self, trigger: Trigger, fault: Fault) -> bool {
        self.tx.send(Control::Fault(trigger, fault)).is_ok()
    }

    /// Sends a dispatch with this name and JSON `d` (in the session's sequence, buffered for
    /// resume). Returns false if the connection is gone.
    pub fn dispatch(&self, name: impl Into<String>, data: impl Into<String>) -> bool {
        self.tx
            .send(Control::Dispatch {
                name: name.into(),
                data: data.into(),
            })
            .is_ok()
    }
}
