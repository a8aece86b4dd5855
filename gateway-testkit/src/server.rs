//! The server: accepting connections, shared state, and the handle tests hold.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gateway_model::{Intents, ShardId, Snowflake};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::handshake::{self, Replayed};
use crate::session_start::SessionStarts;
use crate::{ConnectionInfo, Fault, GatewayConfig, Recorded, Stats, Trigger, World};
use crate::{connection, rest};

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
/// [`FakeGateway::state_counts`]).
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
    changed: watch::Sender<u64>,
    /// One permit per open socket, websocket or HTTP.
    open_sockets: Arc<Semaphore>,
}

impl Shared {
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

/// A read-only view of the server's state, handed to [`FakeGateway::wait_for`] predicates.
#[derive(Debug)]
pub struct View<'a> {
    state: &'a State,
}

impl View<'_> {
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

/// A fake Discord gateway on `127.0.0.1`.
///
/// It runs on the current tokio runtime until dropped or [`shutdown`](Self::shutdown). Every
/// connection is a task speaking Gateway v10; tests script faults through
/// [`ConnectionHandle`]s and wait for states with [`FakeGateway::wait_for`] and friends instead of
/// sleeping.
pub struct FakeGateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for FakeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGateway")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl FakeGateway {
    /// Starts a server with the default configuration on a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(GatewayConfig::default(), 0).await
    }

    /// Starts a server with `config` on `port` of 127.0.0.1 (0 picks a free one).
    pub async fn start_with(config: GatewayConfig, port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let world = World::new(config.world.clone());
        let (changed, _) = watch::channel(0);
        let config_max_connections = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            config,
            world,
            url: format!("ws://{addr}"),
            started: Instant::now(),
            state: Mutex::new(State::default()),
            changed,
            open_sockets: Arc::new(Semaphore::new(config_max_connections)),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::info!(url = %shared.url, "fake gateway listening");
        Ok(Self {
            shared,
            addr,
            accept,
        })
    }

    /// The `ws://127.0.0.1:PORT` URL to connect to (any query string variant is accepted).
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }

    /// The world it serves.
    pub fn world(&self) -> &World {
        &self.shared.world
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats
    }

    /// Every payload clients sent so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.lock().recorded.clone()
    }

    /// Every connection so far, in accept order.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared.lock().connections.clone()
    }

    /// Applies `fault` to the next connection accepted: [`Fault::StallHello`] and
    /// [`Fault::ReconnectBeforeHello`] act before HELLO; any other fault right after it. Each call
    /// queues one fault for one connection.
    pub fn on_next_connection(&self, fault: Fault) {
        self.shared
            .update(|s| s.next_connection_faults.push_back(fault));
    }

    /// A handle on connection `id` (from 1, in accept order), while it is open.
    pub fn connection(&self, id: u64) -> Option<ConnectionHandle> {
        let state = self.shared.lock();
        state
            .controls
            .get(&id)
            .map(|tx| ConnectionHandle { id, tx: tx.clone() })
    }

    /// The open connection that carries `shard`'s session, if any.
    pub fn shard_connection(&self, shard: u32) -> Option<ConnectionHandle> {
        self.shared.shard_connection(shard)
    }

    /// How much the server holds now. After clients come and go, every count but the bounded
    /// histories returns to where it started.
    pub fn state_counts(&self) -> StateCounts {
        let state = self.shared.lock();
        StateCounts {
            open_connections: self
                .shared
                .config
                .max_connections
                .clamp(1, Semaphore::MAX_PERMITS)
                - self.shared.open_sockets.available_permits(),
            controls: state.controls.len(),
            sessions: state.sessions.len(),
            connection_history: state.connections.len(),
            recorded: state.recorded.len(),
            queued_faults: state.next_connection_faults.len(),
            task_failures: state.task_failures,
        }
    }

    /// Sends GUILD_CREATE for a guild that started unavailable, to its shard's connection.
    pub fn make_available(&self, guild_id: Snowflake) {
        let controls: Vec<_> = self.shared.update(|s| {
            s.made_available.insert(guild_id);
            s.controls.values().cloned().collect()
        });
        for tx in controls {
            let _ = tx.send(Control::GuildAvailable(guild_id));
        }
    }

    /// Sends GUILD_DELETE `{"id", "unavailable": true}` for a guild, as during an outage, to its
    /// shard's connection. [`make_available`](Self::make_available) brings it back.
    pub fn make_unavailable(&self, guild_id: Snowflake) {
        let controls: Vec<_> = self.shared.update(|s| {
            s.made_available.remove(&guild_id);
            s.controls.values().cloned().collect()
        });
        for tx in controls {
            // A connection that is gone has nothing to tell.
            drop(tx.send(Control::GuildUnavailable(guild_id)));
        }
    }

    /// Waits until `predicate` holds for the server's state; checked after every change.
    pub async fn wait_for(&self, mut predicate: impl FnMut(&View<'_>) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if predicate(&View {
                state: &self.shared.lock(),
            }) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until `n` connections were accepted.
    pub async fn wait_for_connections(&self, n: u64) {
        self.wait_for(|v| v.stats().connections >= n).await;
    }

    /// Waits until `n` READYs were sent.
    pub async fn wait_for_readies(&self, n: u64) {
        self.wait_for(|v| v.stats().readies >= n).await;
    }

    /// Waits until `n` RESUMEDs were sent.
    pub async fn wait_for_resumed(&self, n: u64) {
        self.wait_for(|v| v.stats().resumed >= n).await;
    }

    /// Waits until `n` heartbeats were received.
    pub async fn wait_for_heartbeats(&self, n: u64) {
        self.wait_for(|v| v.stats().heartbeats >= n).await;
    }

    /// Waits until a client sent a payload matching `predicate`, and returns it.
    pub async fn wait_for_recorded(
        &self,
        mut predicate: impl FnMut(&Recorded) -> bool,
    ) -> Recorded {
        let mut found = None;
        self.wait_for(|v| {
            found = v.recorded().iter().find(|r| predicate(r)).cloned();
            found.is_some()
        })
        .await;
        // wait_for returns only once the predicate held (or the server is gone).
        found.unwrap_or_else(|| Recorded {
            connection: 0,
            at: Duration::ZERO,
            received: crate::Received::Invalid {
                raw: String::new(),
                reason: "server gone".into(),
            },
        })
    }

    /// Waits until connection `id` is closed.
    pub async fn wait_for_closed(&self, id: u64) {
        self.wait_for(|v| v.connections().iter().any(|c| c.id == id && !c.open))
            .await;
    }

    /// Stops the server and every connection (without close frames).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.accept.abort();
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    // Sessions whose connection left are forgotten once their TTL is over.
    let sweep_every =
        (shared.config.session_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = Arc::clone(&shared.open_sockets).try_acquire_owned() else {
                        tracing::warn!(%peer, limit = shared.config.max_connections, "connection refused: too many open");
                        continue;
                    };
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "set_nodelay");
                    }
                    next_id += 1;
                    tracing::debug!(connection = next_id, %peer, "accepted");
                    let shared = Arc::clone(&shared);
                    let id = next_id;
                    tasks.spawn(async move {
                        serve_socket(shared, tcp, id).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = sweep.tick() => {
                let ttl = shared.config.session_ttl;
                let expired = shared.update(|s| s.expire_sessions(Instant::now(), ttl));
                if expired > 0 {
                    tracing::debug!(expired, "sessions expired");
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a connection task failed");
                    shared.update(|s| s.task_failures += 1);
                }
            }
        }
    }
}

/// One accepted socket: reads its request head within the handshake timeout, then serves it as a
/// websocket or as plain HTTP.
async fn serve_socket(shared: Arc<Shared>, mut tcp: TcpStream, id: u64) {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let head = match tokio::time::timeout_at(deadline, handshake::read_head(&mut tcp)).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => {
            tracing::debug!(connection = id, error = %e, "no request head");
            return;
        }
        Err(_) => {
            tracing::debug!(connection = id, "request head timed out");
            return;
        }
    };
    let (head, bytes) = head;
    if head.is_websocket() {
        connection::run(shared, Replayed::new(bytes, tcp), id, deadline).await;
    } else {
        let body_read = bytes.len().saturating_sub(head_len(&bytes));
        rest::serve(&shared, tcp, &head, body_read).await;
    }
}

/// The length of the head in `bytes` (through the blank line).
fn head_len(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 4)
}
