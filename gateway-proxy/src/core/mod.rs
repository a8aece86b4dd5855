//! The proxy as a sans-IO state machine: the upstream shards' dispatches in, the client
//! connections' frames in; frames for clients and commands for the shards out.
//!
//! [`ProxyCore`] keeps, per shard, the replay log, the guild cache and the upstream session's
//! READY; per client connection, its server side (`gateway_server::Connection`); and the client
//! sessions, each a cursor into its shard's log. Its driver feeds it what happens
//! (`handle_*(now, ..)`) and drains [`ProxyCore::poll_output`]; [`ProxyCore::poll_timeout`] says
//! when to call [`ProxyCore::handle_timeout`]. The drain rule is the stack's: after every
//! input, poll until `None`.

mod client;
mod requests;
mod session;
mod shared;
mod upstream;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use gateway_model::Command;
use gateway_server::{Connection, Frame, Transmit, ends_session};

use self::requests::Requests;
use self::session::ClientSession;
use self::shared::Shared;
use self::upstream::ShardState;
use crate::config::ProxyConfig;
use crate::record::SessionRecord;

pub use self::upstream::UpstreamReady;

/// A client connection's id, given by the driver.
pub type ClientId = u64;

/// What the core asks of its driver.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "the driver must act on every output"]
pub enum ProxyOutput {
    /// Do this on client connection `client`'s socket.
    Client {
        /// The connection.
        client: ClientId,
        /// Frames, a close, or a drop.
        transmit: Transmit,
    },
    /// Drop what waits unsent for `client` and close it with `code` (a code it resumes after):
    /// it fell too far behind. The core is done with the connection.
    Abort {
        /// The connection.
        client: ClientId,
        /// The close code.
        code: u16,
    },
    /// Send `command` on upstream shard `shard`.
    Upstream {
        /// The shard.
        shard: u32,
        /// The command, checked and rebuilt (never a client's bytes).
        command: Command,
    },
    /// A session written down (with [`ProxyConfig::share_sessions`]): as it left its
    /// connection, or while on one (so that its client resumes elsewhere if this process
    /// dies). Post it for the other proxy processes, which hand it to
    /// [`ProxyCore::handle_shared_session`].
    SessionSaved(SessionRecord),
    /// A session ended, or was taken by this process (with
    /// [`ProxyConfig::share_sessions`]): the other processes forget it
    /// ([`ProxyCore::handle_shared_session_ended`]).
    SessionEnded {
        /// The session id.
        id: String,
    },
    /// An all-members request for `guild` went upstream under `nonce` (with
    /// [`ProxyConfig::share_sessions`]): the other processes see its chunks in the shard's
    /// stream, and join their own askers to it for the next 30 s rather than ask again
    /// ([`ProxyCore::handle_shared_members_request`]), so the limit holds for the whole bot.
    MembersAsked {
        /// The guild.
        guild: u64,
        /// The proxy nonce it went under.
        nonce: String,
    },
}

/// How much the core holds, for metrics and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CoreCounts {
    /// Client connections open.
    pub clients: usize,
    /// Client sessions, attached or resumable.
    pub sessions: usize,
    /// Replay log entries, over every shard.
    pub log_entries: usize,
    /// Replay log bytes.
    pub log_bytes: usize,
    /// Cached guilds.
    pub guilds: usize,
    /// Bytes of cached JSON.
    pub cache_bytes: usize,
    /// Member requests waiting for their chunks.
    pub member_requests: usize,
    /// Other processes' sessions this one may take a RESUME of.
    pub shared_sessions: usize,
}

/// One client connection.
#[derive(Debug)]
struct Client {
    conn: Connection,
    /// Its session, once identified (or resumed).
    session: Option<Arc<str>>,
    /// Bytes handed to the driver that its socket has not taken yet.
    unsent: usize,
    /// Since when its session has been held back by the send window with no progress.
    stalled_since: Option<Instant>,
}

impl Client {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            session: None,
            unsent: 0,
            stalled_since: None,
        }
    }
}

/// The proxy, sans-IO.
#[derive(Debug)]
pub struct ProxyCore {
    config: ProxyConfig,
    shards: BTreeMap<u32, ShardState>,
    clients: BTreeMap<ClientId, Client>,
    sessions: BTreeMap<Arc<str>, ClientSession>,
    requests: Requests,
    /// Other processes' sessions.
    shared: Shared,
    sessions_started: u64,
    out: VecDeque<ProxyOutput>,
}

impl ProxyCore {
    /// A core serving `config`'s shards, none READY yet.
    pub fn new(config: ProxyConfig) -> Self {
        let shards = config
            .range
            .clone()
            .map(|id| (id, ShardState::new(&config)))
            .collect();
        let requests = Requests::new(format!("{:08x}", splitmix(config.seed) >> 32));
        Self {
            config,
            shards,
            clients: BTreeMap::new(),
            sessions: BTreeMap::new(),
            requests,
            shared: Shared::default(),
            sessions_started: 0,
            out: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Whether upstream shard `shard` has a session (READY came).
    pub fn is_shard_ready(&self, shard: u32) -> bool {
        self.shards.get(&shard).is_some_and(ShardState::is_ready)
    }

    /// Guild `guild`'s GUILD_CREATE as the cache would send it now, if the guild is available.
    pub fn guild_json(&self, guild: u64) -> Option<String> {
        let shard = self.shard_of(guild)?;
        match self.shards.get(&shard)?.cache.guild(guild)? {
            crate::cache::Slot::Available(g) => Some(g.to_json()),
            crate::cache::Slot::Unavailable => None,
        }
    }

    /// How much the core holds.
    pub fn counts(&self) -> CoreCounts {
        let shards = self.shards.values();
        CoreCounts {
            clients: self.clients.len(),
            sessions: self.sessions.len(),
            log_entries: shards.clone().map(|s| s.log.len()).sum(),
            log_bytes: shards.clone().map(|s| s.log.bytes()).sum(),
            guilds: shards.clone().map(|s| s.cache.len()).sum(),
            cache_bytes: shards.map(|s| s.cache.bytes()).sum(),
            member_requests: self.requests.open_member_requests(),
            shared_sessions: self.shared.len(),
        }
    }

    // ---- client inputs ----

    /// Client connection `client` opened with this URL query string: HELLO (or the close that
    /// refuses the query).
    pub fn handle_open(&mut self, now: Instant, client: ClientId, query: &str) {
        let (mut conn, _refused) = Connection::new(self.config.connection.clone(), query);
        if !conn.is_closed() {
            conn.hello(now);
        }
        self.clients.insert(client, Client::new(conn));
        self.flush(now, client);
    }

    /// A frame from client `client`.
    pub fn handle_frame(&mut self, now: Instant, client: ClientId, frame: Frame) {
        self.client_frame(now, client, frame);
        self.flush(now, client);
    }

    /// The websocket refused a frame from `client` before it was read (over its size limit).
    pub fn handle_frame_refused(&mut self, now: Instant, client: ClientId, rule: String) {
        if let Some(c) = self.clients.get_mut(&client) {
            // Refused: the connection is closing; nothing else to do with the frame.
            let _refused = c.conn.handle_frame_refused(rule);
        }
        self.flush(now, client);
    }

    /// Client `client` sent a close frame (`code`): 1000 and 1001 end its session.
    pub fn handle_client_close(&mut self, now: Instant, client: ClientId, code: Option<u16>) {
        if matches!(code, Some(1000 | 1001))
            && let Some(session) = self.clients.get(&client).and_then(|c| c.session.clone())
        {
            self.end_session(&session);
        }
        self.handle_disconnected(now, client);
    }

    /// Client connection `client` is gone: its session stays resumable for the session TTL.
    pub fn handle_disconnected(&mut self, now: Instant, client: ClientId) {
        let Some(c) = self.clients.remove(&client) else {
            return;
        };
        if let Some(session) = c.session.as_ref() {
            self.detach(now, session, client);
        }
    }

    /// The socket of client `client` took `bytes` of what was sent to it: the rest of its
    /// stream follows, within the send window.
    pub fn handle_sent(&mut self, now: Instant, client: ClientId, bytes: usize) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.unsent = c.unsent.saturating_sub(bytes);
        c.stalled_since = None;
        if let Some(session) = c.session.clone() {
            self.catch_up(now, &session);
        }
    }

    /// Closes clients that are behind and whose sockets took nothing for the stall timeout.
    fn abort_stalled(&mut self, now: Instant) {
        let stall = self.config.stall_timeout;
        let stalled: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.stalled_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= stall)
            })
            .map(|(id, _)| *id)
            .collect();
        for client in stalled {
            tracing::warn!(client, "client too slow for its shard: closed to resume");
            self.out.push_back(ProxyOutput::Abort {
                client,
                code: gateway_model::CloseCode::UnknownError.as_u16(),
            });
            self.handle_disconnected(now, client);
        }
    }

    /// Asks every client on shard `shard` to reconnect (op 7), as Discord does before it moves a
    /// session: each resumes, with nothing lost. How many were asked.
    pub fn handle_reconnect_clients(&mut self, now: Instant, shard: u32) -> usize {
        let Some(state) = self.shards.get(&shard) else {
            return 0;
        };
        let clients: Vec<ClientId> = state
            .attached
            .iter()
            .filter_map(|id| self.sessions.get(id)?.client)
            .collect();
        for client in &clients {
            if let Some(c) = self.clients.get_mut(client) {
                c.conn.send(&gateway_server::envelope::reconnect());
            }
            self.flush(now, *client);
        }
        clients.len()
    }

    // ---- time ----

    /// Time passed: heartbeat deadlines, sessions past their TTL, the logs' age.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.conn.poll_timeout().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for client in due {
            if let Some(c) = self.clients.get_mut(&client) {
                c.conn.handle_timeout(now);
            }
            self.flush(now, client);
        }
        let ttl = self.config.session_ttl;
        let expired: Vec<Arc<str>> = self
            .sessions
            .values()
            .filter(|s| {
                s.detached_at
                    .is_some_and(|at| now.saturating_duration_since(at) > ttl)
            })
            .map(|s| Arc::clone(&s.id))
            .collect();
        for session in expired {
            tracing::debug!(session = %session, "client session expired");
            self.end_session(&session);
        }
        self.abort_stalled(now);
        self.expire_shared(now);
        self.share_live(now);
        for shard in self.shards.values_mut() {
            shard.log.trim(now);
        }
        self.requests.expire(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let clients = self
            .clients
            .values()
            .filter_map(|c| c.conn.poll_timeout())
            .min();
        let ttl = self.config.session_ttl + std::time::Duration::from_millis(1);
        let live = self.config.share_sessions;
        // One pass over the sessions: when a detached one expires, when a live one is due to
        // be written down for the other processes.
        let sessions = (self.sessions.values())
            .filter_map(|s| {
                let expiry = s.detached_at.map(|at| at + ttl);
                let record = (live)
                    .then(|| s.record_due(shared::RECORD_SETTLE, shared::RECORD_REFRESH))
                    .flatten();
                expiry.into_iter().chain(record).min()
            })
            .min();
        let logs = self.shards.values().filter_map(|s| s.log.expiry()).min();
        let stalls = self
            .clients
            .values()
            .filter_map(|c| c.stalled_since)
            .min()
            .map(|at| at + self.config.stall_timeout);
        [clients, sessions, logs, stalls, self.shared.next_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next thing to do.
    #[must_use = "the driver must act on every output"]
    pub fn poll_output(&mut self, _now: Instant) -> Option<ProxyOutput> {
        self.out.pop_front()
    }

    // ---- inside ----

    /// Moves what client `client`'s connection asked for into the outputs; a connection that
    /// ended leaves, its session detached.
    fn flush(&mut self, now: Instant, client: ClientId) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let mut ends = false;
        while let Some(transmit) = c.conn.poll_transmit() {
            match &transmit {
                Transmit::Close { code, .. } => ends |= ends_session(*code),
                Transmit::Frames(frames) => {
                    c.unsent += frames.iter().map(Frame::len).sum::<usize>()
                }
                Transmit::Drop => {}
            }
            self.out.push_back(ProxyOutput::Client { client, transmit });
        }
        if c.conn.is_closed() {
            let session = c.session.take();
            self.clients.remove(&client);
            // The close that ended it decides whether the session lives on.
            match session {
                Some(session) if ends => self.end_session(&session),
                Some(session) => self.detach(now, &session, client),
                None => {}
            }
        }
    }

    /// The shard guild `guild` is on, if this proxy serves it.
    fn shard_of(&self, guild: u64) -> Option<u32> {
        let total = u64::from(self.config.shards.max(1));
        let shard = u32::try_from((guild >> 22) % total).ok()?;
        self.shards.contains_key(&shard).then_some(shard)
    }

    /// The session leaves its connection, resumable.
    fn detach(&mut self, now: Instant, session: &Arc<str>, client: ClientId) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if s.client != Some(client) {
            return;
        }
        s.client = None;
        s.detached_at = Some(now);
        if let Some(shard) = self.shards.get_mut(&s.shard) {
            shard.attached.remove(session);
        }
        self.share_detached(now, session);
    }

    /// Session `session` ends: the other processes forget it too.
    fn end_session(&mut self, session: &Arc<str>) {
        self.drop_session(session);
        self.share_ended(session);
    }

    /// Forgets session `session` here alone.
    fn drop_session(&mut self, session: &Arc<str>) {
        if let Some(s) = self.sessions.remove(session)
            && let Some(shard) = self.shards.get_mut(&s.shard)
        {
            shard.attached.remove(session);
            shard.waiting.retain(|w| w != session);
        }
    }

    fn next_session_id(&mut self) -> Arc<str> {
        self.sessions_started += 1;
        let a = splitmix(self.config.seed ^ self.sessions_started);
        let b = splitmix(a ^ self.sessions_started.rotate_left(32));
        format!("{a:016x}{b:016x}").into()
    }
}

/// A 64-bit mix (splitmix64's finalizer): distinct inputs give distinct, scattered outputs.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
