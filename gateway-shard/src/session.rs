//! The session: everything the protocol decides, with no IO and no clock of its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gateway_codec::{DecodeError, connect_url, encode};
use gateway_model::{
    CloseAction, CloseCode, Command, DispatchEvent, EventTypes, GatewayEvent, Heartbeat, Identify,
    Payload, Resume, ShardId, Snowflake,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::action::Action;
use crate::backoff::BackoffState;
use crate::presence::PresenceState;
use crate::ratelimit::{CommandQueue, Priority, RateLimiter};
pub use crate::resume::ResumeInfo;
use crate::resume::secure_resume_url;
use crate::{
    CommandError, PresenceUpdate, Reconnect, ShardConfig, ShardError, ShardEvent, Timeouts,
};

/// Where a session stands, for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Not connected; waiting to reconnect.
    Disconnected,
    /// Opening the websocket or waiting for HELLO.
    Connecting,
    /// Waiting for its turn in the identify queue.
    WaitingToIdentify,
    /// IDENTIFY sent, waiting for READY.
    Identifying,
    /// RESUME sent, waiting for RESUMED.
    Resuming,
    /// Connected with a live session.
    Connected,
    /// Stopped for good.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection; connect at the given time.
    Idle {
        connect_at: Instant,
    },
    Connecting {
        deadline: Instant,
        resume_url: bool,
    },
    AwaitingHello {
        deadline: Instant,
        resume_url: bool,
    },
    AwaitingIdentify,
    Handshaking {
        deadline: Instant,
        resuming: bool,
        replayed: u64,
    },
    Connected {
        since: Instant,
    },
    Stopped,
}

/// A shard's session as a state machine, driven like quinn-proto's connections.
///
/// * Inputs: [`handle_connected`](Self::handle_connected),
///   [`handle_connect_failed`](Self::handle_connect_failed), [`handle_payload`](Self::handle_payload),
///   [`handle_decode_error`](Self::handle_decode_error), [`handle_closed`](Self::handle_closed),
///   [`handle_timeout`](Self::handle_timeout), [`identify_permitted`](Self::identify_permitted), and
///   the user's [`queue_command`](Self::queue_command), [`update_presence`](Self::update_presence)
///   and [`close`](Self::close).
/// * Outputs, to poll after every input until they return `None`:
///   [`poll_action`](Self::poll_action) (what to do with the connection),
///   [`poll_transmit`](Self::poll_transmit) (text frames to send),
///   [`poll_event`](Self::poll_event) (events for the user), and
///   [`poll_timeout`](Self::poll_timeout) (when to call `handle_timeout` next).
///
/// Time only ever comes in as an argument, and must not go backwards.
///
/// `Debug` shows where the session stands, never a frame: a pending IDENTIFY or RESUME holds the
/// token.
pub struct Session {
    token: gateway_model::Token,
    intents: gateway_model::Intents,
    shard: ShardId,
    identify_template: Identify,
    gateway_url: String,
    compression: gateway_codec::Compression,
    timeouts: Timeouts,
    event_types: EventTypes,
    rng: ChaCha8Rng,
    phase: Phase,

    session_id: Option<String>,
    resume_url: Option<String>,
    seq: Option<u64>,
    user_id: Option<Snowflake>,
    resume_url_failed: bool,

    interval: Option<Duration>,
    next_heartbeat: Option<Instant>,
    heartbeat_due: bool,
    awaiting_ack: bool,
    last_heartbeat: Option<Instant>,
    latency: Option<Duration>,

    limiter: RateLimiter,
    handshake_frame: Option<String>,
    queue: CommandQueue,
    presence: PresenceState,
    backoff: BackoffState,

    connection_open: bool,
    reading_paused: bool,
    last_failure: Option<String>,
    announced: bool,
    events: VecDeque<ShardEvent>,
    actions: VecDeque<Action>,
    outcome: Option<Result<(), ShardError>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("shard", &self.shard)
            .field("state", &self.state())
            .field("session_id", &self.session_id)
            .field("seq", &self.seq)
            .field("resume_url", &self.resume_url)
            .field("latency", &self.latency)
            .field("queue_depth", &self.queue.len())
            .field("handshake_pending", &self.handshake_frame.is_some())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session that will connect at `now`.
    pub fn new(config: &ShardConfig, now: Instant) -> Self {
        let mut identify = Identify::new(config.token.clone(), config.intents)
            .with_large_threshold(config.large_threshold)
            .with_properties(config.properties.clone());
        if config.shard != ShardId::ONE {
            identify = identify.with_shard(config.shard);
        }
        let resume = config.resume.clone();
        Self {
            token: config.token.clone(),
            intents: config.intents,
            shard: config.shard,
            identify_template: identify,
            gateway_url: config.gateway_url.clone(),
            compression: config.compression,
            timeouts: config.timeouts,
            event_types: config.event_types,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ u64::from(config.shard.number())),
            phase: Phase::Idle { connect_at: now },
            session_id: resume.as_ref().map(|r| r.session_id.clone()),
            resume_url: resume
                .as_ref()
                .and_then(|r| secure_resume_url(&config.gateway_url, &r.resume_url)),
            seq: resume.as_ref().map(|r| r.sequence),
            user_id: None,
            resume_url_failed: false,
            interval: None,
            next_heartbeat: None,
            heartbeat_due: false,
            awaiting_ack: false,
            last_heartbeat: None,
            latency: None,
            limiter: RateLimiter::new(),
            handshake_frame: None,
            queue: CommandQueue::new(config.queue_capacity.max(1)),
            presence: PresenceState::initial(&config.initial_presence),
            backoff: BackoffState::new(config.backoff),
            connection_open: false,
            reading_paused: false,
            last_failure: None,
            announced: false,
            events: VecDeque::new(),
            actions: VecDeque::new(),
            outcome: None,
        }
    }

    // ---- getters ----

    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Where the session stands.
    pub fn state(&self) -> SessionState {
        match self.phase {
            Phase::Idle { .. } => SessionState::Disconnected,
            Phase::Connecting { .. } | Phase::AwaitingHello { .. } => SessionState::Connecting,
            Phase::AwaitingIdentify => SessionState::WaitingToIdentify,
            Phase::Handshaking {
                resuming: false, ..
            } => SessionState::Identifying,
            Phase::Handshaking { resuming: true, .. } => SessionState::Resuming,
            Phase::Connected { .. } => SessionState::Connected,
            Phase::Stopped => SessionState::Stopped,
        }
    }

    /// Whether the session has not stopped.
    pub fn is_alive(&self) -> bool {
        self.phase != Phase::Stopped
    }

    /// Whether a connection is up with READY or RESUMED received.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    /// The latest heartbeat latency; `None` before the first ACK.
    pub fn heartbeat_latency(&self) -> Option<Duration> {
        self.latency
    }

    /// The bot's user id, from READY.
    pub fn user_id(&self) -> Option<Snowflake> {
        self.user_id
    }

    /// The session id, from READY (or an exported session).
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The last sequence number received.
    pub fn sequence(&self) -> Option<u64> {
        self.seq
    }

    /// What a new shard needs to resume this session.
    pub fn resume_info(&self) -> Option<ResumeInfo> {
        Some(ResumeInfo {
            session_id: self.session_id.clone()?,
            sequence: self.seq.unwrap_or(0),
            resume_url: self
                .resume_url
                .clone()
                .unwrap_or_else(|| self.gateway_url.clone()),
        })
    }

    /// Whether the session waits for the websocket it asked for with [`Action::Connect`]: a
    /// connection that opens when this is false was given up on, and must be dropped.
    pub fn awaits_connection(&self) -> bool {
        matches!(self.phase, Phase::Connecting { .. })
    }

    /// The user is behind (`true`) or caught up. Reading pauses only on a connected session
    /// (see [`is_reading_paused`](Self::is_reading_paused)): a handshake (HELLO, READY, RESUMED
    /// and its replay) is always read through, so that none times out behind the user.
    pub fn set_reading_paused(&mut self, _now: Instant, behind: bool) {
        let was = self.is_reading_paused();
        self.reading_paused = behind;
        if was && !self.is_reading_paused() {
            // The ACK of the last heartbeat may still sit behind the backlog: it is given one
            // more interval, as the next heartbeat's.
            self.awaiting_ack = false;
        }
    }

    /// Whether the driver must leave the socket unread now. While it does, a missing ACK is not
    /// a zombie (it may sit unread in the socket); heartbeats go on.
    pub fn is_reading_paused(&self) -> bool {
        self.reading_paused && self.is_connected()
    }

    /// Why the last connection attempt or session failed, until a session is up again.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// Commands waiting to be sent.
    pub fn queue_depth(&self) -> usize {
        self.queue.len()
    }

    /// Rate-limit slots left for commands (heartbeats have their own reserve).
    pub fn permits(&mut self, now: Instant) -> usize {
        self.limiter.available_for_commands(now)
    }

    /// How the session ended, once it has.
    pub fn outcome(&self) -> Option<&Result<(), ShardError>> {
        self.outcome.as_ref()
    }

    // ---- outputs ----

    /// The next thing to do with the connection.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<ShardEvent> {
        self.events.pop_front()
    }

    /// The next text frame to send now, within the rate limit.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<String> {
        if !self.connection_open || self.interval.is_none() {
            return None;
        }
        if self.heartbeat_due && self.limiter.available(now) > 0 {
            self.heartbeat_due = false;
            self.awaiting_ack = true;
            self.last_heartbeat = Some(now);
            self.limiter.record(now);
            return encode(&Command::Heartbeat(Heartbeat(self.seq))).ok();
        }
        if self.handshake_frame.is_some() && self.limiter.available_for_commands(now) > 0 {
            self.limiter.record(now);
            return self.handshake_frame.take();
        }
        if self.is_connected()
            && !self.queue.is_empty()
            && self.limiter.available_for_commands(now) > 0
        {
            self.limiter.record(now);
            return self.queue.pop();
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Idle { connect_at } => Some(connect_at),
            Phase::Connecting { deadline, .. }
            | Phase::AwaitingHello { deadline, .. }
            | Phase::Handshaking { deadline, .. } => Some(deadline),
            Phase::AwaitingIdentify | Phase::Connected { .. } | Phase::Stopped => None,
        };
        let waiting = self.heartbeat_due
            || self.handshake_frame.is_some()
            || (self.is_connected() && !self.queue.is_empty());
        let limiter = if waiting && self.connection_open {
            self.limiter.next_free()
        } else {
            None
        };
        [phase, self.next_heartbeat, limiter]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- inputs ----

    /// Time passed: connect, give up on a slow step, heartbeat, or detect a zombie.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle { connect_at } if now >= connect_at => self.connect(now),
            Phase::Connecting { deadline, .. } if now >= deadline => {
                self.handle_connect_failed(now, "websocket handshake timed out");
            }
            Phase::AwaitingHello { deadline, .. } if now >= deadline => {
                self.lost(now, Some(4000), "no HELLO in time", Reconnect::Resume);
            }
            Phase::Handshaking { deadline, .. } if now >= deadline => {
                self.lost(
                    now,
                    Some(4000),
                    "no READY or RESUMED in time",
                    Reconnect::Resume,
                );
            }
            _ => {}
        }
        if let (Some(at), Some(interval)) = (self.next_heartbeat, self.interval)
            && now >= at
            && self.connection_open
        {
            {
                if self.awaiting_ack && !self.is_reading_paused() {
                    tracing::warn!(
                        shard = self.shard.number(),
                        "no heartbeat ACK since the last heartbeat: zombied connection"
                    );
                    self.lost(
                        now,
                        Some(4000),
                        "zombied connection (no heartbeat ACK)",
                        Reconnect::Resume,
                    );
                } else {
                    self.heartbeat_due = true;
                    // Keep the schedule without drift, but never send a burst to catch up.
                    let next = at + interval;
                    self.next_heartbeat = Some(if next <= now { now + interval } else { next });
                }
            }
        }
    }

    /// The attempt to open the websocket really began (after any wait for a handshake slot):
    /// the handshake timeout counts from now.
    pub fn handle_connect_started(&mut self, now: Instant) {
        if let Phase::Connecting { resume_url, .. } = self.phase {
            self.phase = Phase::Connecting {
                deadline: now + self.timeouts.handshake,
                resume_url,
            };
        }
    }

    /// The websocket is open.
    pub fn handle_connected(&mut self, now: Instant) {
        if let Phase::Connecting { resume_url, .. } = self.phase {
            self.connection_open = true;
            self.limiter.reset(None);
            self.phase = Phase::AwaitingHello {
                deadline: now + self.timeouts.hello,
                resume_url,
            };
        }
    }

    /// The websocket could not be opened.
    pub fn handle_connect_failed(&mut self, now: Instant, reason: &str) {
        if let Phase::Connecting { resume_url, .. } = self.phase {
            tracing::warn!(shard = self.shard.number(), reason, "connect failed");
            if resume_url {
                // Discord: do not keep trying a resume URL that failed; fall back to the gateway.
                self.resume_url_failed = true;
            }
            let delay = self.backoff.next_unreachable(&mut self.rng);
            tracing::debug!(shard = self.shard.number(), ?delay, "reconnecting after");
            self.last_failure = Some(format!("connect failed: {reason}"));
            self.events.push_back(ShardEvent::ConnectFailed {
                reason: reason.to_owned(),
                retry_in: delay,
            });
            self.phase = Phase::Idle {
                connect_at: now + delay,
            };
        }
    }

    /// The connection closed (the gateway closed it with `code`, or it dropped with none).
    pub fn handle_closed(&mut self, now: Instant, code: Option<u16>) {
        if !self.connection_open {
            return;
        }
        if let Phase::AwaitingHello {
            resume_url: true, ..
        } = self.phase
        {
            self.resume_url_failed = true;
        }
        self.connection_open = false;
        let Some(code) = code else {
            return self.lost(
                now,
                None,
                "connection dropped without a close frame",
                Reconnect::Resume,
            );
        };
        let close = CloseCode::from_u16(code);
        match close.action() {
            CloseAction::Resume => self.lost(now, Some(code), close.reason(), Reconnect::Resume),
            CloseAction::Reidentify => {
                self.forget_session();
                self.lost(now, Some(code), close.reason(), Reconnect::Reidentify);
            }
            CloseAction::Fatal => {
                tracing::error!(
                    shard = self.shard.number(),
                    code,
                    reason = close.reason(),
                    "fatal close"
                );
                self.outcome = Some(Err(ShardError::Fatal {
                    code: close,
                    reason: close.reason(),
                }));
                self.lost(now, Some(code), close.reason(), Reconnect::Stop);
            }
        }
    }

    /// A payload arrived.
    pub fn handle_payload(&mut self, now: Instant, payload: &Payload<'_>) {
        if !self.connection_open {
            return;
        }
        if payload.op == gateway_model::OpCode::Dispatch {
            if let Some(seq) = payload.seq {
                self.seq = Some(seq);
            }
            if let Phase::Handshaking {
                replayed,
                resuming: true,
                deadline,
            } = self.phase
                && payload.event_name.as_deref() != Some("RESUMED")
            {
                self.phase = Phase::Handshaking {
                    replayed: replayed + 1,
                    resuming: true,
                    deadline,
                };
            }
        }
        let wanted = self.event_types | EventTypes::READY | EventTypes::RESUMED;
        let event = match GatewayEvent::from_payload(payload, wanted) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(gateway_model::EventError::UnexpectedOpcode(op)) => {
                tracing::debug!(
                    shard = self.shard.number(),
                    op = op.value(),
                    "ignoring unknown opcode"
                );
                return;
            }
            Err(e) => {
                if matches!(payload.event_name.as_deref(), Some("READY")) {
                    tracing::warn!(shard = self.shard.number(), error = %e, "invalid READY");
                    self.lost(now, Some(4000), "invalid READY", Reconnect::Reidentify);
                } else if let Some(event) = crate::event::untyped(self.shard, payload, &e) {
                    self.events.push_back(event);
                }
                return;
            }
        };
        match event {
            GatewayEvent::Hello(hello) => {
                self.hello(now, Duration::from_millis(hello.heartbeat_interval))
            }
            GatewayEvent::HeartbeatAck => {
                self.awaiting_ack = false;
                if let Some(sent) = self.last_heartbeat {
                    let latency = now.saturating_duration_since(sent);
                    self.latency = Some(latency);
                    self.events.push_back(ShardEvent::HeartbeatAck { latency });
                }
            }
            GatewayEvent::HeartbeatRequest => self.heartbeat_due = true,
            GatewayEvent::Reconnect => self.lost(
                now,
                Some(4000),
                "the gateway asked to reconnect",
                Reconnect::Resume,
            ),
            GatewayEvent::InvalidSession { resumable } => {
                // Wait 1–5 s, as Discord used to document, so identifies do not stampede.
                let wait = Duration::from_millis(self.rng.random_range(1000..=5000));
                if resumable {
                    self.lost_after(
                        now,
                        Some(4000),
                        "invalid session (resumable)",
                        Reconnect::Resume,
                        wait,
                    );
                } else {
                    self.forget_session();
                    self.lost_after(
                        now,
                        Some(4000),
                        "invalid session",
                        Reconnect::Reidentify,
                        wait,
                    );
                }
            }
            GatewayEvent::Dispatch(dispatch) => self.dispatch(now, dispatch),
            _ => {}
        }
    }

    /// A message could not be decoded. A payload over the decoder's limits cannot be received at
    /// all, and a resume would replay it, so the session starts anew; any other loss of the stream
    /// (corrupt compression) reconnects and resumes; a bad payload on an intact stream is skipped.
    pub fn handle_decode_error(&mut self, now: Instant, error: &DecodeError) {
        match error {
            DecodeError::MessageTooLarge { .. } | DecodeError::CompressedTooLarge { .. } => {
                tracing::error!(shard = self.shard.number(), %error, "payload over the limit; starting a new session");
                self.forget_session();
                self.lost(
                    now,
                    Some(4000),
                    "payload over the size limit",
                    Reconnect::Reidentify,
                );
            }
            e if e.is_fatal() => {
                tracing::warn!(shard = self.shard.number(), error = %e, "inbound stream lost; reconnecting");
                self.lost(
                    now,
                    Some(4000),
                    "undecodable inbound stream",
                    Reconnect::Resume,
                );
            }
            e => {
                tracing::warn!(shard = self.shard.number(), error = %e, "undecodable payload ignored")
            }
        }
    }

    /// This shard's turn to identify came.
    pub fn identify_permitted(&mut self, now: Instant) {
        if self.phase != Phase::AwaitingIdentify || !self.connection_open {
            return;
        }
        let mut identify = self.identify_template.clone();
        identify.presence = self.presence.for_identify();
        let frame = match encode(&Command::from(identify.clone())) {
            Ok(frame) => frame,
            Err(e) => {
                // Only a presence set at start can get here (updates are checked when made):
                // identify without it rather than never.
                tracing::error!(shard = self.shard.number(), error = %e, "IDENTIFY with the presence cannot be sent; identifying without it");
                identify.presence = None;
                match encode(&Command::from(identify)) {
                    Ok(frame) => frame,
                    Err(e) => {
                        self.outcome = Some(Err(ShardError::Config(format!(
                            "IDENTIFY cannot be sent: {e}"
                        ))));
                        return self.lost(
                            now,
                            Some(1000),
                            "IDENTIFY cannot be sent",
                            Reconnect::Stop,
                        );
                    }
                }
            }
        };
        self.handshake_frame = Some(frame);
        self.phase = Phase::Handshaking {
            deadline: now + self.timeouts.ready,
            resuming: false,
            replayed: 0,
        };
    }

    /// The identify queue refused this shard's turn (the session start budget is down to its
    /// reserve): the user is told, the connection closes, and the shard tries again after
    /// `retry_in`, when the budget resets.
    pub fn identify_refused(&mut self, now: Instant, retry_in: Duration, reason: &str) {
        if self.phase != Phase::AwaitingIdentify {
            return;
        }
        tracing::warn!(
            shard = self.shard.number(),
            ?retry_in,
            reason,
            "identify paused"
        );
        self.events.push_back(ShardEvent::IdentifyPaused {
            reason: reason.to_owned(),
            retry_in,
        });
        self.lost_after(
            now,
            Some(4000),
            "identify paused",
            Reconnect::Reidentify,
            retry_in.max(Duration::from_millis(1)),
        );
    }

    /// Queues a command (presence and voice updates first, then requests).
    pub fn queue_command(&mut self, command: Command) -> Result<(), CommandError> {
        if self.phase == Phase::Stopped {
            return Err(CommandError::NotRunning);
        }
        if let Command::RequestGuildMembers(request) = &command {
            request.check_intents(self.intents)?;
            let expected = request.guild_id().shard_index(self.shard.total());
            if expected != self.shard.number() {
                return Err(CommandError::WrongShard {
                    guild: request.guild_id(),
                    expected,
                });
            }
        }
        let priority = match command {
            Command::UpdatePresence(_) | Command::UpdateVoiceState(_) => Priority::State,
            _ => Priority::Request,
        };
        let member_request = matches!(command, Command::RequestGuildMembers(_));
        let frame = encode(&command)?;
        self.queue
            .push(priority, frame, member_request)
            .map_err(|_| CommandError::QueueFull(self.queue.len()))
    }

    /// Merges a presence update into the remembered presence and queues it; while disconnected it
    /// is sent once connected (and at the next IDENTIFY).
    ///
    /// A presence that would not fit in an IDENTIFY (4096 bytes with the token and properties) is
    /// refused here, with [`CommandError::Encode`], and the remembered presence is unchanged.
    pub fn update_presence(&mut self, update: &PresenceUpdate) -> Result<(), CommandError> {
        let mut merged = self.presence.clone();
        let presence = merged.merge(update);
        let mut identify = self.identify_template.clone();
        identify.presence = Some(presence.clone());
        encode(&Command::from(identify))?;
        self.queue_command(Command::UpdatePresence(presence))?;
        self.presence = merged;
        Ok(())
    }

    /// Closes the session. With `keep_resumable`, the connection closes with 4000 and the session
    /// can be resumed (see [`resume_info`](Self::resume_info)); otherwise with 1000, which ends it.
    pub fn close(&mut self, now: Instant, keep_resumable: bool) {
        if self.phase == Phase::Stopped {
            return;
        }
        let code = if keep_resumable { 4000 } else { 1000 };
        if !keep_resumable {
            self.forget_session();
        }
        self.outcome.get_or_insert(Ok(()));
        self.lost(now, Some(code), "closed by the user", Reconnect::Stop);
    }

    // ---- internals ----

    fn connect(&mut self, now: Instant) {
        let resume_url =
            self.session_id.is_some() && self.resume_url.is_some() && !self.resume_url_failed;
        let base = if resume_url {
            self.resume_url.as_deref()
        } else {
            None
        }
        .unwrap_or(&self.gateway_url);
        let url = match connect_url(base, self.compression) {
            Ok(url) => url,
            Err(_) if resume_url => {
                self.resume_url_failed = true;
                return self.connect(now);
            }
            Err(e) => {
                self.outcome = Some(Err(ShardError::Config(e.to_string())));
                self.phase = Phase::Stopped;
                return;
            }
        };
        tracing::debug!(shard = self.shard.number(), %url, "connecting");
        self.actions.push_back(Action::Connect { url });
        self.phase = Phase::Connecting {
            deadline: now + self.timeouts.handshake,
            resume_url,
        };
    }

    fn hello(&mut self, now: Instant, interval: Duration) {
        if !matches!(self.phase, Phase::AwaitingHello { .. }) {
            return;
        }
        // Bounded both ways: a zero or absurd interval from the network cannot spin or overflow.
        let interval = interval.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        self.interval = Some(interval);
        // The gateway is up: failures to reach it during an outage no longer slow us down.
        self.backoff.answered();
        // The first heartbeat after interval × jitter, jitter in [0, 1).
        let jitter: f64 = self.rng.random_range(0.0..1.0);
        self.next_heartbeat = Some(now + interval.mul_f64(jitter));
        self.awaiting_ack = false;
        self.heartbeat_due = false;
        self.limiter.reset(Some(interval));
        let resuming = self.session_id.is_some();
        self.announced = true;
        self.events.push_back(ShardEvent::Connected { resuming });
        if let (true, Some(session_id)) = (resuming, self.session_id.clone()) {
            let resume = Resume {
                token: self.token.clone(),
                session_id,
                seq: self.seq.unwrap_or(0),
            };
            self.handshake_frame = encode(&Command::Resume(resume)).ok();
            self.phase = Phase::Handshaking {
                deadline: now + self.timeouts.ready,
                resuming: true,
                replayed: 0,
            };
        } else {
            self.phase = Phase::AwaitingIdentify;
            self.actions.push_back(Action::AwaitIdentify);
        }
    }

    fn dispatch(&mut self, now: Instant, dispatch: gateway_model::Dispatch) {
        match dispatch.event {
            DispatchEvent::Ready(ready) => {
                self.session_id = Some(ready.session_id.clone());
                self.resume_url = secure_resume_url(&self.gateway_url, &ready.resume_gateway_url);
                self.resume_url_failed = false;
                self.user_id = Some(ready.user.id);
                self.phase = Phase::Connected { since: now };
                self.last_failure = None;
                tracing::info!(
                    shard = self.shard.number(),
                    guilds = ready.guilds.len(),
                    "ready"
                );
                self.events.push_back(ShardEvent::Ready(ready));
            }
            DispatchEvent::Resumed => {
                let replayed = match self.phase {
                    Phase::Handshaking { replayed, .. } => replayed,
                    _ => 0,
                };
                self.phase = Phase::Connected { since: now };
                self.last_failure = None;
                tracing::info!(shard = self.shard.number(), replayed, "resumed");
                self.events.push_back(ShardEvent::Resumed { replayed });
            }
            // `handle_payload` typed only what the filter lets through (and READY, RESUMED).
            event => self
                .events
                .push_back(ShardEvent::Dispatch(gateway_model::Dispatch {
                    seq: dispatch.seq,
                    event,
                })),
        }
    }

    /// The session is over. Member requests still queued for it are dropped, and the user is
    /// told: sent in the next session they would ask for the same guild twice (with its own
    /// GUILD_CREATE's request), and the second is RATE_LIMITED or a second full download.
    fn forget_session(&mut self) {
        self.session_id = None;
        self.seq = None;
        self.resume_url = None;
        self.resume_url_failed = false;
        let count = self.queue.drop_member_requests();
        if count > 0 {
            tracing::warn!(
                shard = self.shard.number(),
                count,
                "member requests of the ended session dropped"
            );
            self.events
                .push_back(ShardEvent::MemberRequestsDropped { count });
        }
    }

    fn lost(&mut self, now: Instant, code: Option<u16>, reason: &str, next: Reconnect) {
        self.lost_after(now, code, reason, next, Duration::ZERO);
    }

    /// The connection is over: close it if open, tell the user, and reconnect (or stop).
    fn lost_after(
        &mut self,
        now: Instant,
        code: Option<u16>,
        reason: &str,
        next: Reconnect,
        wait: Duration,
    ) {
        if self.connection_open {
            self.connection_open = false;
            if let Some(code) = code {
                self.actions.push_back(Action::Close { code });
            }
        }
        let announced = std::mem::take(&mut self.announced);
        let mut reason = reason.to_owned();
        if !matches!(self.phase, Phase::Connected { .. }) && next != Reconnect::Stop {
            self.last_failure = Some(match code {
                Some(code) => format!("closed with {code}: {reason}"),
                None => reason.clone(),
            });
        }
        let had_connection = matches!(
            self.phase,
            Phase::AwaitingHello { .. }
                | Phase::AwaitingIdentify
                | Phase::Handshaking { .. }
                | Phase::Connected { .. }
        );
        if had_connection && next != Reconnect::Stop {
            let reached_ready = matches!(self.phase, Phase::Connected { .. });
            self.backoff.session_ended(reached_ready, code);
            if let Some(failed) = self.backoff.breaker_open() {
                tracing::warn!(
                    shard = self.shard.number(),
                    failed,
                    "sessions keep failing: backing off for up to minutes"
                );
                reason.push_str(&format!(
                    "; {failed} sessions in a row ended before READY or with 4007/4009: backing off for up to minutes"
                ));
            }
        }
        if announced {
            self.events.push_back(ShardEvent::Disconnected {
                code,
                reason: reason.clone(),
                next,
            });
        }
        tracing::info!(
            shard = self.shard.number(),
            ?code,
            reason,
            ?next,
            "disconnected"
        );

        let lived = match self.phase {
            Phase::Connected { since } => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        };
        self.interval = None;
        self.next_heartbeat = None;
        self.heartbeat_due = false;
        self.awaiting_ack = false;
        self.handshake_frame = None;
        if next == Reconnect::Stop {
            self.phase = Phase::Stopped;
            self.outcome.get_or_insert(Ok(()));
            return;
        }
        if lived >= self.backoff.stable_after() {
            self.backoff.reset();
        }
        self.schedule_reconnect(now, wait);
        // A connection that ended before HELLO had no `Connected` to pair a `Disconnected` with:
        // the user still hears why.
        if !announced
            && had_connection
            && let Phase::Idle { connect_at } = self.phase
        {
            self.events.push_back(ShardEvent::ConnectFailed {
                reason: match code {
                    Some(code) => format!("closed with {code} before HELLO: {reason}"),
                    None => format!("{reason} (before HELLO)"),
                },
                retry_in: connect_at.saturating_duration_since(now),
            });
        }
    }

    /// Reconnects after the backoff's next delay or, when the gateway told how long to wait
    /// (INVALID_SESSION's 1–5 s), after exactly that: an answer from a live gateway is not one
    /// more failure.
    fn schedule_reconnect(&mut self, now: Instant, wait: Duration) {
        // The breaker's delay overrides a shorter wait the gateway asked for, never a longer one.
        let delay = if wait.is_zero() || self.backoff.breaker_open().is_some() {
            self.backoff.next(&mut self.rng).max(wait)
        } else {
            wait
        };
        tracing::debug!(shard = self.shard.number(), ?delay, "reconnecting after");
        self.phase = Phase::Idle {
            connect_at: now + delay,
        };
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
