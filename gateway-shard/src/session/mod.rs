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

use self::heartbeat::{Heartbeats, Tick};
use crate::backoff::BackoffState;
use crate::presence::PresenceState;
use crate::ratelimit::{CommandQueue, RateLimiter};
mod heartbeat;
mod recovery;
mod user;
mod view;

pub use crate::resume::ResumeInfo;
use crate::resume::secure_resume_url;
use crate::{Action, Output, Reconnect, ShardConfig, ShardError, ShardEvent, Timeouts};

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

/// A shard's session as a state machine, driven like quinn-proto's connections and str0m's peers.
///
/// * Inputs, each with `now` first: from the connection,
///   [`handle_connect_started`](Self::handle_connect_started),
///   [`handle_connected`](Self::handle_connected),
///   [`handle_connect_failed`](Self::handle_connect_failed), [`handle_payload`](Self::handle_payload),
///   [`handle_decode_error`](Self::handle_decode_error), [`handle_closed`](Self::handle_closed);
///   from the identify queue, [`handle_identify_permitted`](Self::handle_identify_permitted) and
///   [`handle_identify_refused`](Self::handle_identify_refused); from the user,
///   [`handle_command`](Self::handle_command), [`handle_presence`](Self::handle_presence) and
///   [`handle_close`](Self::handle_close); from the driver's event buffer,
///   [`handle_reading_paused`](Self::handle_reading_paused); and
///   [`handle_timeout`](Self::handle_timeout).
/// * Output: [`poll_output`](Self::poll_output) until `None` after every input (actions on the
///   connection, frames to send, events for the user), and
///   [`poll_timeout`](Self::poll_timeout) (when to call `handle_timeout` next). See
///   [the drain rule](crate::Output).
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
    raw_dispatches: bool,
    rng: ChaCha8Rng,
    phase: Phase,

    session_id: Option<String>,
    resume_url: Option<String>,
    seq: Option<u64>,
    /// The last sequence number before a gap that a resume was asked to fill.
    gap_after: Option<u64>,
    user_id: Option<Snowflake>,
    resume_url_failed: bool,

    heartbeats: Heartbeats,

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
            .field("latency", &self.heartbeats.latency())
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
            raw_dispatches: config.raw_dispatches,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ u64::from(config.shard.number())),
            phase: Phase::Idle { connect_at: now },
            session_id: resume.as_ref().map(|r| r.session_id.clone()),
            resume_url: resume
                .as_ref()
                .and_then(|r| secure_resume_url(&config.gateway_url, &r.resume_url)),
            seq: resume.as_ref().map(|r| r.sequence),
            gap_after: None,
            user_id: None,
            resume_url_failed: false,
            heartbeats: Heartbeats::default(),
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

    // ---- outputs ----

    /// The next thing the driver must do: actions on the connection first, then frames to send
    /// (only while a connection is open, and within the rate limit), then events for the user.
    /// Call it until `None` after every input (see [the drain rule](crate::Output)).
    #[must_use = "the driver must act on every output"]
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        if let Some(action) = self.actions.pop_front() {
            return Some(Output::Action(action));
        }
        if let Some(frame) = self.next_frame(now) {
            return Some(Output::Transmit(frame));
        }
        self.events.pop_front().map(Output::Event)
    }

    /// The next text frame to send now, within the rate limit.
    fn next_frame(&mut self, now: Instant) -> Option<String> {
        if !self.connection_open || self.heartbeats.interval().is_none() {
            return None;
        }
        if self.heartbeats.is_due() && self.limiter.available(now) > 0 {
            self.heartbeats.sent(now);
            self.limiter.record(now);
            return match encode(&Command::Heartbeat(Heartbeat(self.seq))) {
                Ok(frame) => Some(frame),
                Err(e) => {
                    // A heartbeat is a few bytes; this cannot happen, and would show as a zombie.
                    tracing::error!(shard = self.shard.number(), error = %e, "heartbeat not encoded");
                    None
                }
            };
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
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Idle { connect_at } => Some(connect_at),
            Phase::Connecting { deadline, .. }
            | Phase::AwaitingHello { deadline, .. }
            | Phase::Handshaking { deadline, .. } => Some(deadline),
            Phase::AwaitingIdentify | Phase::Connected { .. } | Phase::Stopped => None,
        };
        let waiting = self.heartbeats.is_due()
            || self.handshake_frame.is_some()
            || (self.is_connected() && !self.queue.is_empty());
        let limiter = if waiting && self.connection_open {
            self.limiter.next_free()
        } else {
            None
        };
        [phase, self.heartbeats.deadline(), limiter]
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
        if !self.connection_open {
            return;
        }
        let reading = !self.is_reading_paused();
        if self.heartbeats.tick(now, reading) == Tick::Zombie {
            tracing::warn!(
                shard = self.shard.number(),
                "no heartbeat ACK and nothing received since the last heartbeat: zombied connection"
            );
            self.lost(
                now,
                Some(4000),
                "zombied connection (no heartbeat ACK, nothing received)",
                Reconnect::Resume,
            );
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

    /// Whether a dispatch numbered `seq` comes next in the session. A gap
    /// means a dispatch was lost (an unreadable payload, a frame the transport lost): the shard
    /// resumes from the last one it delivered, and the gateway replays the rest. If the same gap
    /// comes back after that resume, the lost dispatch cannot be read even when replayed, and a
    /// new session starts (as after an oversize message), marked by READY.
    ///
    /// A dispatch other than READY before any READY means READY itself was lost: the session
    /// is unknown, so a new one starts.
    ///
    /// READY and RESUMED are not checked: they start and end a session's handshake, and some
    /// gateways number RESUMED loosely.
    fn in_sequence(&mut self, now: Instant, seq: u64, name: Option<&str>) -> bool {
        if matches!(name, Some("READY" | "RESUMED")) {
            return true;
        }
        if self.session_id.is_none() {
            tracing::warn!(
                shard = self.shard.number(),
                seq,
                "a dispatch before READY: READY was lost; identifying again"
            );
            self.lost(now, Some(4000), "READY was lost", Reconnect::Reidentify);
            return false;
        }
        let Some(last) = self.seq else {
            return true;
        };
        if seq <= last.saturating_add(1) {
            // A number at or below the last is not Discord's way, but is taken as it comes.
            if self.gap_after.is_some_and(|g| seq > g.saturating_add(1)) {
                self.gap_after = None;
            }
            return true;
        }
        tracing::warn!(shard = self.shard.number(), seq, last, "a sequence gap");
        self.lost_after_dispatch(now, last);
        false
    }

    /// A dispatch after `last` was lost (a gap, or a payload that could not be read): resume
    /// from `last`, so that the gateway replays it; if that already happened at `last`, the
    /// dispatch cannot be read even when replayed, and a new session starts.
    fn lost_after_dispatch(&mut self, now: Instant, last: u64) {
        if self.gap_after == Some(last) {
            tracing::error!(
                shard = self.shard.number(),
                last,
                "a dispatch is lost even when replayed; starting a new session"
            );
            self.gap_after = None;
            self.forget_session();
            self.lost(
                now,
                Some(4000),
                "a dispatch could not be read",
                Reconnect::Reidentify,
            );
        } else {
            tracing::warn!(
                shard = self.shard.number(),
                last,
                "resuming from the last dispatch delivered"
            );
            self.gap_after = Some(last);
            self.lost(now, Some(4000), "a dispatch was lost", Reconnect::Resume);
        }
    }

    /// Delivers a dispatch raw, `d` as the codec found it (READY and RESUMED are typed, for the
    /// session's own use). False if it is not one to deliver raw.
    fn deliver_raw(&mut self, payload: &Payload<'_>) -> bool {
        let (Some(seq), Some(name)) = (payload.seq, payload.event_name.as_deref()) else {
            return false;
        };
        if payload.op != gateway_model::OpCode::Dispatch || matches!(name, "READY" | "RESUMED") {
            return false;
        }
        let kind = EventTypes::from_event_name(name);
        if !self.event_types.intersects(kind) {
            return true;
        }
        let Ok(data) = gateway_model::RawJson::from_string(payload.data.unwrap_or("null")) else {
            // Not JSON: the typed path says why, and drops it.
            return false;
        };
        let event = DispatchEvent::Other(gateway_model::RawDispatch::with_kind(name, kind, data));
        self.events
            .push_back(ShardEvent::Dispatch(gateway_model::Dispatch { seq, event }));
        true
    }

    /// A payload arrived.
    pub fn handle_payload(&mut self, now: Instant, payload: &Payload<'_>) {
        if !self.connection_open {
            return;
        }
        // Whatever it is, the connection is alive (see the zombie rule in `heartbeat`).
        self.heartbeats.heard();
        if payload.op == gateway_model::OpCode::Dispatch {
            if let Some(seq) = payload.seq {
                if !self.in_sequence(now, seq, payload.event_name.as_deref()) {
                    return;
                }
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
        if self.raw_dispatches && self.deliver_raw(payload) {
            return;
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
                if let Some(latency) = self.heartbeats.acked(now) {
                    self.events.push_back(ShardEvent::HeartbeatAck { latency });
                }
            }
            GatewayEvent::HeartbeatRequest => self.heartbeats.request(),
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
                // It may have been a dispatch: a resume replays it, as after a gap.
                tracing::warn!(shard = self.shard.number(), error = %e, "unreadable payload");
                match self.seq.filter(|_| self.session_id.is_some()) {
                    Some(last) => self.lost_after_dispatch(now, last),
                    None if matches!(
                        self.phase,
                        Phase::Handshaking {
                            resuming: false,
                            ..
                        }
                    ) =>
                    {
                        // READY itself may be what could not be read.
                        self.lost(
                            now,
                            Some(4000),
                            "READY was unreadable",
                            Reconnect::Reidentify,
                        );
                    }
                    None => {}
                }
            }
        }
    }

    /// This shard's turn to identify came.
    pub fn handle_identify_permitted(&mut self, now: Instant) {
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
    pub fn handle_identify_refused(&mut self, now: Instant, retry_in: Duration, reason: &str) {
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
        // The gateway is up: failures to reach it during an outage no longer slow us down.
        self.backoff.answered();
        // The first heartbeat after interval × jitter, jitter in [0, 1).
        let jitter: f64 = self.rng.random_range(0.0..1.0);
        self.heartbeats.start(now, interval, jitter);
        self.limiter.reset(Some(interval));
        let resuming = self.session_id.is_some();
        self.announced = true;
        self.events.push_back(ShardEvent::Connected { resuming });
        let resume = self
            .session_id
            .clone()
            .filter(|_| resuming)
            .map(|session_id| Resume {
                token: self.token.clone(),
                session_id,
                seq: self.seq.unwrap_or(0),
            });
        let frame = match resume.map(|r| encode(&Command::Resume(r))) {
            Some(Ok(frame)) => Some(frame),
            Some(Err(e)) => {
                // A RESUME that cannot be sent (a session id far past Discord's) would time out
                // forever: start a new session instead.
                tracing::error!(shard = self.shard.number(), error = %e, "RESUME cannot be encoded; identifying");
                self.forget_session();
                None
            }
            None => None,
        };
        if let Some(frame) = frame {
            self.handshake_frame = Some(frame);
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
                let seq = self.seq.unwrap_or(0);
                self.events.push_back(ShardEvent::Resumed { replayed, seq });
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
}

#[cfg(test)]
mod tests;
