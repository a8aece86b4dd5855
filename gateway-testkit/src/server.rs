//! The server: accepting connections, shared state, and the handle tests hold.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_model::Snowflake;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::shared::{ConnectionHandle, Shared, now};
use crate::state::{StateCounts, View};
use crate::{ConnectionInfo, Fault, GatewayConfig, Recorded, Stats, World};
use crate::{connection, rest};
use gateway_server::Replayed;

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
        let shared = Arc::new(Shared::new(config, format!("ws://{addr}")));
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
    pub fn world(&self) -> World {
        self.shared.lock().core.world().clone()
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.lock().core.view().stats()
    }

    /// Every payload clients sent so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.lock().core.view().recorded().to_vec()
    }

    /// Every connection so far, in accept order.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared.lock().core.view().connections().to_vec()
    }

    /// The connections that carried `shard` (identified or resumed on it), in accept order.
    pub fn shard_connections(&self, shard: u32) -> Vec<ConnectionInfo> {
        let mut of_shard: Vec<ConnectionInfo> = (self.connections().into_iter())
            .filter(|c| c.shard.is_some_and(|s| s.number() == shard))
            .collect();
        of_shard.sort_by_key(|c| c.accepted_at);
        of_shard
    }

    /// Two connections of `shard` open at once, if there were: the earlier not yet closed when
    /// the later was accepted. Clients that hand a shard over cleanly (a cluster's nodes, a
    /// proxy's) leave none.
    pub fn overlapping_connections(&self, shard: u32) -> Option<(ConnectionInfo, ConnectionInfo)> {
        let of_shard = self.shard_connections(shard);
        (of_shard.windows(2))
            .find(|pair| {
                pair[0]
                    .closed_at
                    .is_none_or(|closed| closed > pair[1].accepted_at)
            })
            .map(|pair| (pair[0].clone(), pair[1].clone()))
    }

    /// Applies `fault` to the next connection accepted: [`Fault::StallHello`] and
    /// [`Fault::ReconnectBeforeHello`] act before HELLO; any other fault right after it. Each call
    /// queues one fault for one connection.
    pub fn on_next_connection(&self, fault: Fault) {
        self.shared
            .update(|d| d.core.handle_next_connection_fault(now(), fault));
    }

    /// A handle on connection `id` (from 1, in accept order), while it is open.
    pub fn connection(&self, id: u64) -> Option<ConnectionHandle> {
        self.shared.connection(id)
    }

    /// The open connection that carries `shard`'s session, if any.
    pub fn shard_connection(&self, shard: u32) -> Option<ConnectionHandle> {
        self.shared.shard_connection(shard)
    }

    /// How much the server holds now. After clients come and go, every count but the bounded
    /// histories returns to where it started.
    pub fn state_counts(&self) -> StateCounts {
        let driven = self.shared.lock();
        StateCounts {
            open_connections: self.shared.open_sockets(),
            controls: driven.routes.len(),
            ..driven.core.state_counts()
        }
    }

    /// Sends GUILD_CREATE for a guild that started unavailable, to its shard's connection.
    pub fn make_available(&self, guild_id: Snowflake) {
        self.shared
            .update(|d| d.core.handle_guild_available(now(), guild_id));
    }

    /// Sends GUILD_DELETE `{"id", "unavailable": true}` for a guild, as during an outage, to its
    /// shard's connection. [`make_available`](Self::make_available) brings it back.
    pub fn make_unavailable(&self, guild_id: Snowflake) {
        self.shared
            .update(|d| d.core.handle_guild_unavailable(now(), guild_id));
    }

    /// Waits until `predicate` holds for the server's state; checked after every change.
    pub async fn wait_for(&self, mut predicate: impl FnMut(&View<'_>) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if predicate(&self.shared.lock().core.view()) {
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    // The core's timers (heartbeat deadlines, timed faults, session TTLs), checked again after
    // every change.
    let mut changed = shared.changed.subscribe();
    loop {
        changed.borrow_and_update();
        let deadline = shared.lock().core.poll_timeout();
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
            () = sleep_until(deadline) => shared.update(|d| d.core.handle_timeout(now())),
            _ = changed.changed() => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a connection task failed");
                    shared.update(|d| d.core.state_mut().task_failures += 1);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One accepted socket: reads its request head within the handshake timeout, then serves it as a
/// websocket or as plain HTTP.
async fn serve_socket(shared: Arc<Shared>, mut tcp: TcpStream, id: u64) {
    let deadline = Instant::from_std(now()) + shared.config.handshake_timeout;
    let (head, bytes) = match gateway_server::read_head_by(&mut tcp, deadline).await {
        Ok(head) => head,
        Err(e) => return tracing::debug!(connection = id, error = %e, "no request head"),
    };
    if head.is_websocket() {
        connection::run(shared, Replayed::new(bytes, tcp), id, deadline).await;
    } else {
        let body_read = bytes.len().saturating_sub(head_len(&bytes));
        rest::serve(&shared, tcp, head, body_read, id).await;
    }
}

/// The length of the head in `bytes` (through the blank line).
fn head_len(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 4)
}
