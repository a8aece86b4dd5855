//! The tokio server's hold on the sans-IO core: one mutex around the [`GatewayCore`] and the
//! channels to each connection's task, a `watch` channel bumped on every change (for
//! [`FakeGateway::wait_for`](crate::FakeGateway::wait_for)), and the handles tests hold on
//! connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, watch};

use crate::core::{GatewayCore, Output};
use crate::{Fault, GatewayConfig, Trigger};

/// Where one connection's outputs go: its task's channel, and the bytes waiting in it.
pub(crate) struct Route {
    pub(crate) tx: mpsc::UnboundedSender<Output>,
    pub(crate) pending: Arc<AtomicUsize>,
}

/// The bytes an output holds.
pub(crate) fn output_bytes(output: &Output) -> usize {
    match output {
        Output::Frames { frames, .. } => frames
            .iter()
            .map(|f| match f {
                crate::core::Frame::Text(t) => t.len(),
                crate::core::Frame::Binary(b) => b.len(),
            })
            .sum(),
        Output::Close { .. } | Output::Drop { .. } => 0,
    }
}

/// `Instant::now()` as tokio sees it, so that tests can pause the clock: the one clock of the
/// testkit's server (which sits below the shard, so it keeps its own copy of
/// `gateway_shard::drive::now`).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The core and where its outputs go.
pub(crate) struct Driven {
    pub(crate) core: GatewayCore,
    /// Each open websocket's task.
    pub(crate) routes: HashMap<u64, Route>,
}

impl Driven {
    /// Hands every output to its connection's task (the drain rule). A connection whose task is
    /// gone is disconnected in the core; one whose client left more than `max_unread` bytes
    /// unread is dropped, and the core records why.
    fn drain(&mut self, max_unread: usize) {
        loop {
            let mut stuck = Vec::new();
            while let Some(output) = self.core.poll_output(now()) {
                let conn = match &output {
                    Output::Frames { conn, .. }
                    | Output::Close { conn, .. }
                    | Output::Drop { conn } => *conn,
                };
                let Some(route) = self.routes.get(&conn) else {
                    continue;
                };
                let bytes = output_bytes(&output);
                let pending = route.pending.fetch_add(bytes, Ordering::Relaxed) + bytes;
                if pending > max_unread {
                    self.routes.remove(&conn);
                    stuck.push((conn, Some(pending)));
                } else if route.tx.send(output).is_err() {
                    self.routes.remove(&conn);
                    stuck.push((conn, None));
                }
            }
            if stuck.is_empty() {
                return;
            }
            // The task sees its channel close and lets the socket go without flushing.
            for (conn, pending) in stuck {
                match pending {
                    Some(pending) => self.core.handle_not_reading(now(), conn, pending),
                    None => self.core.handle_disconnected(now(), conn),
                }
            }
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) url: String,
    driven: Mutex<Driven>,
    pub(crate) changed: watch::Sender<u64>,
    /// One permit per open socket, websocket or HTTP.
    pub(crate) open_sockets: Arc<Semaphore>,
}

impl Shared {
    /// The server at `url`.
    pub(crate) fn new(config: GatewayConfig, url: String) -> Self {
        let (changed, _) = watch::channel(0);
        let sockets = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            driven: Mutex::new(Driven {
                core: GatewayCore::new(config.clone(), url.clone(), now()),
                routes: HashMap::new(),
            }),
            config,
            url,
            changed,
            open_sockets: Arc::new(Semaphore::new(sockets)),
        }
    }

    /// Sockets open now.
    pub(crate) fn open_sockets(&self) -> usize {
        self.config.max_connections.clamp(1, Semaphore::MAX_PERMITS)
            - self.open_sockets.available_permits()
    }

    /// Locks the core for reading.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Driven> {
        self.driven
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Feeds the core an input, hands its outputs to the connections, and wakes whoever waits
    /// on the state.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Driven) -> R) -> R {
        let r = {
            let mut driven = self.lock();
            let r = f(&mut driven);
            driven.drain(self.config.max_unread_bytes);
            r
        };
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        r
    }

    /// The open connection that carries `shard`'s session, if any.
    pub(crate) fn shard_connection(self: &Arc<Self>, shard: u32) -> Option<ConnectionHandle> {
        let id = self.lock().core.shard_connection(shard)?;
        Some(ConnectionHandle {
            id,
            shared: Arc::clone(self),
        })
    }

    /// Handles on every open connection that carries a session.
    pub(crate) fn live_sessions(self: &Arc<Self>) -> Vec<ConnectionHandle> {
        let ids = self.lock().core.live_sessions();
        ids.into_iter()
            .map(|id| ConnectionHandle {
                id,
                shared: Arc::clone(self),
            })
            .collect()
    }

    /// A handle on connection `id`, while it is open.
    pub(crate) fn connection(self: &Arc<Self>, id: u64) -> Option<ConnectionHandle> {
        self.lock().core.is_open(id).then(|| ConnectionHandle {
            id,
            shared: Arc::clone(self),
        })
    }
}

/// A handle on one open connection.
#[derive(Clone)]
pub struct ConnectionHandle {
    id: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
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
        self.shared
            .update(|d| d.core.handle_fault(now(), self.id, trigger, fault))
    }

    /// Sends a dispatch with this name and JSON `d` (in the session's sequence, buffered for
    /// resume). Returns false if the connection is gone.
    pub fn dispatch(&self, name: impl Into<String>, data: impl Into<String>) -> bool {
        let (name, data) = (name.into(), data.into());
        self.shared
            .update(|d| d.core.handle_dispatch(now(), self.id, &name, &data))
    }

    /// Sends every dispatch of `events` (name, JSON `d`) in order, in one step: all are
    /// compressed before the connection's task writes the first, so that the server is not what
    /// a client's throughput measures. Returns how many were sent (0 if the connection is gone
    /// or has no session).
    pub fn dispatch_all<N, D>(&self, events: impl IntoIterator<Item = (N, D)>) -> usize
    where
        N: AsRef<str>,
        D: AsRef<str>,
    {
        self.shared.update(|d| {
            let mut sent = 0;
            for (name, data) in events {
                if !d
                    .core
                    .handle_dispatch(now(), self.id, name.as_ref(), data.as_ref())
                {
                    break;
                }
                sent += 1;
            }
            sent
        })
    }

    /// Sends every dispatch of `events` in order, `step` at a time: between steps the gateway's
    /// lock is free, so its connections read their clients (heartbeats) and write while a large
    /// backlog is queued, as Discord goes on reading while it sends. Blocks the calling thread
    /// (run it off the runtime). Returns how many were sent.
    pub fn dispatch_in_steps<N, D>(
        &self,
        events: impl IntoIterator<Item = (N, D)>,
        step: usize,
    ) -> usize
    where
        N: AsRef<str>,
        D: AsRef<str>,
    {
        let mut events = events.into_iter().peekable();
        let mut sent = 0;
        while events.peek().is_some() {
            if sent > 0 {
                // Lets the connections take the lock (std's mutex is not fair).
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let chunk: Vec<(N, D)> = events.by_ref().take(step.max(1)).collect();
            let taken = chunk.len();
            let queued = self.dispatch_all(chunk);
            sent += queued;
            if queued < taken {
                break;
            }
        }
        sent
    }
}
