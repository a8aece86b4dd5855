//! The fake gateway's protocol as a sans-IO state machine: no sockets, no clock, no tokio.
//!
//! [`GatewayCore`] holds everything the server knows (sessions, identify buckets, the session
//! start budget, the world, the recordings) and every connection's protocol state. Its driver
//! feeds it what happens (`handle_*(now, ..)`: a connection opened, a frame came, a connection
//! closed, a test injected a fault, time passed) and drains [`GatewayCore::poll_output`]: frames
//! to send, closes, drops, each addressed to a connection. [`GatewayCore::poll_timeout`] says when
//! to call [`GatewayCore::handle_timeout`]. The drain rule is the stack's one:
//! the shard session's `Output`, but this crate does not depend on the shard, so it is restated:
//! after every input, poll until `None`, then wait for the next input or the timeout.
//!
//! The tokio server ([`FakeGateway`](crate::FakeGateway)) drives it over real websockets; a
//! simulator can drive it over an in-memory network on virtual time.

mod conn;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use gateway_model::Snowflake;
use gateway_server::Connection;
pub use gateway_server::Frame;

use self::conn::Conn;
#[cfg(feature = "server")]
use crate::session_start::Budget;
use crate::state::{State, StateCounts, View};
use crate::{ConnectionInfo, DropReason, Fault, GatewayConfig, Trigger, World};

/// What the core asks of its driver, for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the driver must act on every output"]
pub enum Output {
    /// Send these frames on connection `conn`, in order: one payload, compressed as the
    /// connection asked, perhaps split or corrupted by a fault.
    Frames {
        /// The connection.
        conn: u64,
        /// The frames.
        frames: Vec<Frame>,
    },
    /// Close connection `conn` with this code and Discord's words for it. The core is done with
    /// the connection.
    Close {
        /// The connection.
        conn: u64,
        /// The close code.
        code: u16,
        /// The close frame's reason.
        reason: &'static str,
    },
    /// Drop connection `conn` without a close frame. The core is done with the connection.
    Drop {
        /// The connection.
        conn: u64,
    },
}

/// What the core reads and changes while it handles one input.
pub(crate) struct Cx<'a> {
    pub(crate) config: &'a GatewayConfig,
    pub(crate) world: &'a World,
    pub(crate) url: &'a str,
    pub(crate) started: Instant,
    pub(crate) state: &'a mut State,
    pub(crate) out: &'a mut VecDeque<Output>,
    pub(crate) now: Instant,
}

/// The fake gateway, sans-IO: every connection's protocol and the state they share.
pub struct GatewayCore {
    config: GatewayConfig,
    world: World,
    url: String,
    started: Instant,
    state: State,
    /// Ordered, so that a run is the same every time (timers fire in connection order).
    conns: BTreeMap<u64, Conn>,
    out: VecDeque<Output>,
}

impl std::fmt::Debug for GatewayCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayCore")
            .field("url", &self.url)
            .field("connections", &self.conns.len())
            .field("sessions", &self.state.sessions.len())
            .field("outputs", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl GatewayCore {
    /// A gateway serving `config`'s world, known to clients as `url` (READY's
    /// `resume_gateway_url`), started at `now`.
    pub fn new(config: GatewayConfig, url: impl Into<String>, now: Instant) -> Self {
        let world = World::new(config.world.clone());
        Self {
            config,
            world,
            url: url.into(),
            started: now,
            state: State::default(),
            conns: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The world served.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The URL clients know it by.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the gateway knows, read-only: counters, recordings (the newest, up to the history
    /// limit) and connections.
    pub fn view(&self) -> View<'_> {
        View::new(&self.state)
    }

    /// Whether connection `conn` is open in the protocol's eyes.
    pub fn is_open(&self, conn: u64) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The open connections that carry a session, in accept order.
    pub fn live_sessions(&self) -> Vec<u64> {
        self.state
            .connections
            .iter()
            .filter(|c| c.open && c.session_id.is_some() && self.conns.contains_key(&c.id))
            .map(|c| c.id)
            .collect()
    }

    /// The open connection that carries `shard`'s session, if any.
    pub fn shard_connection(&self, shard: u32) -> Option<u64> {
        self.state
            .connections
            .iter()
            .rev()
            .find(|c| {
                c.open
                    && c.shard.is_some_and(|s| s.number() == shard)
                    && c.session_id.is_some()
                    && self.conns.contains_key(&c.id)
            })
            .map(|c| c.id)
    }

    /// The last sequence number sent in session `session_id`, while the server knows it.
    pub fn session_seq(&self, session_id: &str) -> Option<u64> {
        self.state.sessions.get(session_id).map(|s| s.seq)
    }

    /// How much the core holds (the driver adds its own sockets and channels).
    pub fn state_counts(&self) -> StateCounts {
        StateCounts {
            open_connections: self.conns.len(),
            controls: 0,
            sessions: self.state.sessions.len(),
            connection_history: self.state.connections.len(),
            recorded: self.state.recorded.len(),
            queued_faults: self.state.next_connection_faults.len(),
            task_failures: self.state.task_failures,
        }
    }

    /// The session start budget at `now`, as `GET /gateway/bot` reports it.
    #[cfg(feature = "server")]
    pub(crate) fn budget(&mut self, now: Instant) -> Budget {
        self.state.session_starts.budget_at(now, &self.config)
    }

    #[cfg(feature = "server")]
    pub(crate) fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// Runs `f` on connection `conn` with the shared state; a connection that ends is finished
    /// and forgotten. False if the connection is unknown.
    fn on_conn(
        &mut self,
        now: Instant,
        conn: u64,
        f: impl FnOnce(&mut Conn, &mut Cx<'_>) -> conn::Flow,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let mut cx = Cx {
            config: &self.config,
            world: &self.world,
            url: &self.url,
            started: self.started,
            state: &mut self.state,
            out: &mut self.out,
            now,
        };
        if f(c, &mut cx).is_err() {
            c.finish(&mut cx);
            self.conns.remove(&conn);
        }
        true
    }

    // ---- inputs ----

    /// A websocket connection `conn` opened with this request query and `User-Agent`: HELLO (or
    /// a close, if the query is refused, or the queued fault for the next connection).
    pub fn handle_open(
        &mut self,
        now: Instant,
        conn: u64,
        query: &str,
        user_agent: Option<String>,
    ) {
        let (server, refused) = Connection::new(self.config.connection_config(), query);
        self.state.stats.connections += 1;
        self.state.stats.open_connections += 1;
        let info = ConnectionInfo {
            id: conn,
            compression: server.compression(),
            shard: None,
            session_id: None,
            open: true,
            closed_with: None,
            accepted_at: now.saturating_duration_since(self.started),
            closed_at: None,
            user_agent,
            client_closed_with: None,
            dropped: None,
        };
        self.state.add_connection(info, self.config.history_limit);
        let pre = self.state.next_connection_faults.pop_front();
        self.conns.insert(conn, Conn::new(conn, server));
        if let Some(rejection) = &refused {
            tracing::warn!(connection = conn, code = rejection.code.as_u16(), query = %query, "connection refused");
        }
        self.on_conn(now, conn, |c, cx| {
            if c.is_closed() {
                // Refused, or its compressor could not start: the close or drop is queued.
                c.emit(cx)
            } else {
                c.open(cx, pre)
            }
        });
    }

    /// A frame from the client on `conn`.
    ///
    /// A RESUME of a session that another open connection holds moves the session here and
    /// closes the other connection with 4000. Discord documents resuming only after the old
    /// connection is gone and says nothing of two at once; a session's dispatches going to one
    /// connection only is what a resuming client may rely on, and the close tells the other
    /// client (a resumable code: the session lives on).
    pub fn handle_frame(&mut self, now: Instant, conn: u64, frame: Frame) {
        self.on_conn(now, conn, |c, cx| c.frame(cx, frame));
        for old in std::mem::take(&mut self.state.superseded) {
            self.on_conn(now, old, |c, cx| c.superseded(cx));
        }
    }

    /// The websocket refused a frame from the client (over `max_client_frame`) before it was
    /// read: closed with 4002, as Discord does.
    pub fn handle_frame_refused(&mut self, now: Instant, conn: u64, rule: String) {
        self.on_conn(now, conn, |c, cx| c.reject(cx, rule));
    }

    /// The client sent a close frame (with this code, if any): 1000 and 1001 end its session.
    pub fn handle_close_frame(&mut self, now: Instant, conn: u64, code: Option<u16>) {
        self.on_conn(now, conn, |c, cx| {
            c.client_closed(cx, code);
            Err(conn::Closed)
        });
    }

    /// The connection is gone (closed, reset, or its driver gave up on it).
    pub fn handle_disconnected(&mut self, now: Instant, conn: u64) {
        self.on_conn(now, conn, |_, _| Err(conn::Closed));
    }

    /// The client of `conn` left more than
    /// [`max_unread_bytes`](GatewayConfig::max_unread_bytes) unread (`pending_bytes`): it is
    /// dropped, and the reason recorded. Its session stays resumable, as after any drop.
    pub fn handle_not_reading(&mut self, now: Instant, conn: u64, pending_bytes: usize) {
        self.on_conn(now, conn, |c, cx| {
            tracing::warn!(
                connection = conn,
                pending_bytes,
                "client not reading: dropped past max_unread_bytes"
            );
            c.drop_with(cx, DropReason::NotReading { pending_bytes })
        });
    }

    /// A test's fault for connection `conn`, now or when `trigger` fires. False if the
    /// connection is gone.
    pub fn handle_fault(
        &mut self,
        now: Instant,
        conn: u64,
        trigger: Trigger,
        fault: Fault,
    ) -> bool {
        self.on_conn(now, conn, |c, cx| c.inject(cx, trigger, fault))
    }

    /// A dispatch a test sends on `conn`, in its session's sequence (nothing without a session).
    /// False if the connection is gone.
    pub fn handle_dispatch(&mut self, now: Instant, conn: u64, name: &str, data: &str) -> bool {
        self.on_conn(now, conn, |c, cx| c.dispatch(cx, name, data))
    }

    /// A fault for the next connection opened.
    pub fn handle_next_connection_fault(&mut self, _now: Instant, fault: Fault) {
        self.state.next_connection_faults.push_back(fault);
    }

    /// A guild that started unavailable becomes available: GUILD_CREATE to its shard.
    pub fn handle_guild_available(&mut self, now: Instant, guild: Snowflake) {
        self.state.made_available.insert(guild);
        for conn in self.conn_ids() {
            self.on_conn(now, conn, |c, cx| c.guild_available(cx, guild));
        }
    }

    /// A guild goes into an outage: GUILD_DELETE (unavailable) to its shard.
    pub fn handle_guild_unavailable(&mut self, now: Instant, guild: Snowflake) {
        self.state.made_available.remove(&guild);
        for conn in self.conn_ids() {
            self.on_conn(now, conn, |c, cx| c.guild_unavailable(cx, guild));
        }
    }

    /// The server restarts: every connection is dropped and every session forgotten, as after a
    /// gateway node fails. Recordings and counters stay.
    pub fn handle_restart(&mut self, now: Instant) {
        for conn in self.conn_ids() {
            self.on_conn(now, conn, |c, cx| c.drop_with(cx, DropReason::Restart));
        }
        self.state.sessions.clear();
    }

    /// Time passed: heartbeat deadlines, timed faults and chunks, and sessions detached past
    /// their TTL.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for conn in due {
            self.on_conn(now, conn, |c, cx| c.timeout(cx));
        }
        let expired = self.state.expire_sessions(now, self.config.session_ttl);
        if expired > 0 {
            tracing::debug!(expired, "sessions expired");
        }
    }

    // ---- outputs ----

    /// The next thing to do on a connection.
    #[must_use = "the driver must act on every output"]
    pub fn poll_output(&mut self, _now: Instant) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(Conn::deadline).min();
        let ttl = self.config.session_ttl;
        let sessions = self
            .state
            .sessions
            .values()
            .filter_map(|s| s.detached_at)
            .min()
            .map(|at| at + ttl + Duration::from_millis(1));
        [conns, sessions].into_iter().flatten().min()
    }

    fn conn_ids(&self) -> Vec<u64> {
        self.conns.keys().copied().collect()
    }
}
