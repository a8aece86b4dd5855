//! The server: accepting connections, shared state, and the handle tests hold.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gateway_model::{Intents, ShardId, Snowflake};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::connection;
use crate::{ConnectionInfo, Fault, GatewayConfig, Recorded, Stats, Trigger, World};

/// A message from a test to one connection's task.
#[derive(Debug)]
pub(crate) enum Control {
    Fault(Trigger, Fault),
    Dispatch { name: String, data: String },
    GuildAvailable(Snowflake),
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
}

impl State {
    pub(crate) fn connection_mut(&mut self, id: u64) -> Option<&mut ConnectionInfo> {
        self.connections.iter_mut().find(|c| c.id == id)
    }
}

pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) world: World,
    pub(crate) url: String,
    pub(crate) started: Instant,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
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
        let shared = Arc::new(Shared {
            config,
            world,
            url: format!("ws://{addr}"),
            started: Instant::now(),
            state: Mutex::new(State::default()),
            changed,
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
        let state = self.shared.lock();
        let id = state
            .connections
            .iter()
            .rev()
            .find(|c| {
                c.open && c.shard.is_some_and(|s| s.number() == shard) && c.session_id.is_some()
            })?
            .id;
        state
            .controls
            .get(&id)
            .map(|tx| ConnectionHandle { id, tx: tx.clone() })
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
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    next_id += 1;
                    tracing::debug!(connection = next_id, %peer, "accepted");
                    tasks.spawn(connection::run(Arc::clone(&shared), tcp, next_id));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}
