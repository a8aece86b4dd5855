//! The session: everything the protocol decides, with no IO and no clock of its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gateway_codec::{Decoder, connect_url, encode};
use gateway_model::{
    CloseAction, CloseCode, Command, DispatchEvent, EventTypes, Heartbeat, Identify, Resume,
    ShardId, Snowflake,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use self::heartbeat::Heartbeats;
use self::inbound::Inbound;
use crate::backoff::BackoffState;
use crate::presence::PresenceState;
use crate::ratelimit::{CommandQueue, RateLimiter};
mod heartbeat;
mod inbound;
mod recovery;
mod timers;
mod user;
mod view;

pub use self::timers::Timer;
pub use crate::resume::ResumeInfo;
use crate::resume::secure_resume_url;
use crate::{Action, Output, Reconnect, ShardConfig, ShardError, ShardEvent, Timeouts};

/// What an event is counted as beyond its payload's `d` (all of it, for an event without one).
pub(crate) const EVENT_OVERHEAD: usize = 64;

/// The longest an identify queue's refusal holds the shard back.
const MAX_IDENTIFY_WAIT: Duration = Duration::from_secs(24 * 3600);

/// How long after an identify queue that could not be asked the shard tries again.
pub const IDENTIFY_QUEUE_RETRY: Duration = Duration::from_secs(5);

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
///   [`handle_connect_failed`](Self::handle_connect_failed),
///   [`handle_message`](Self::handle_message) (each websocket message, as it came: the session
///   decodes it with its own `Decoder`),
///   [`handle_message_too_large`](Self::handle_message_too_large),
///   [`handle_closed`](Self::handle_closed); from the identify queue,
///   [`handle_identify_permitted`](Self::handle_identify_permitted),
///   [`handle_identify_refused`](Self::handle_identify_refused) and
///   [`handle_identify_failed`](Self::handle_identify_failed); from the user,
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
    /// The IDENTIFY's size without a presence, for the check of each presence update.
    identify_bytes: usize,
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
    /// The websocket messages' decoder and its lifecycle.
    inbound: Inbound,
    /// An [`Action::AwaitIdentify`] is out, and its wait has not ended.
    awaiting_turn: bool,
    /// An [`Action::Connect`] is out, and the driver has not said how it went.
    dialing: bool,
    /// The sequence number the latest READY came with.
    ready_seq: Option<u64>,
    /// The timer the latest [`handle_timeout`](Self::handle_timeout) fired.
    last_timeout: Option<Timer>,
    last_failure: Option<String>,
    announced: bool,
    /// Events for the user, each with the bytes it is counted as.
    events: VecDeque<(ShardEvent, usize)>,
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
        // An IDENTIFY that cannot be encoded fails when it is sent, with the reason.
        let identify_bytes = encode(&Command::from(identify.clone())).map_or(0, |f| f.len());
        let resume = config.resume.clone();
        let (decoder, outcome) = match Decoder::with_limits(config.compression, config.limits) {
            Ok(decoder) => (Some(decoder), None),
            Err(e) => (None, Some(Err(ShardError::Config(e.to_string())))),
        };
        let phase = match outcome {
            None => Phase::Idle { connect_at: now },
            Some(_) => Phase::Stopped,
        };
        Self {
            token: config.token.clone(),
            intents: config.intents,
            shard: config.shard,
            identify_template: identify,
            identify_bytes,
            gateway_url: config.gateway_url.clone(),
            compression: config.compression,
            timeouts: config.timeouts,
            event_types: config.event_types,
            raw_dispatches: config.raw_dispatches,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ u64::from(config.shard.number())),
            phase,
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
            inbound: Inbound::new(decoder, config.limits.max_message_size),
            awaiting_turn: false,
            dialing: false,
            ready_seq: None,
            last_timeout: None,
            last_failure: None,
            announced: false,
            events: VecDeque::new(),
            actions: VecDeque::new(),
            outcome,
        }
    }

    /// Queues an event for the user, counted as a small one (an event of a payload is counted
    /// as its `d`: see [`handle_message`](Self::handle_message)).
    fn emit(&mut self, event: ShardEvent) {
        self.events.push_back((event, EVENT_OVERHEAD));
    }

    // ---- getters ----

    // ---- outputs ----

    /// The next thing the driver must do: actions on the connection first, then frames to send
    /// (only while a connection is open, and within the rate limit), then events for the user.
    /// Call it until `None` after every input (see [the drain rule](crate::Output)).
    #[must_use = "the driver must act on every output"]
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        if self.awaiting_turn && self.phase != Phase::AwaitingIdentify {
            // The connection that waited is gone: its place in the queue is given up.
            self.awaiting_turn = false;
            return Some(Output::Action(Action::CancelIdentify));
        }
        if let Some(action) = self.actions.pop_front() {
            if action == Action::AwaitIdentify {
                self.awaiting_turn = true;
            }
            return Some(Output::Action(action));
        }
        if let Some(frame) = self.next_frame(now) {
            return Some(Output::Transmit(frame));
        }
        self.events
            .pop_front()
            .map(|(event, cost)| Output::Event { event, cost })
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

    // ---- inputs ----

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
        self.dialing = false;
        if let Phase::Connecting { resume_url, .. } = self.phase {
            self.connection_open = true;
            self.limiter.reset(None);
            self.phase = Phase::AwaitingHello {
                deadline: now + self.timeouts.hello,
                resume_url,
            };
            if let Err(e) = self.inbound.new_stream() {
                // Its stream cannot be read: close it, and try again with a new one.
                tracing::error!(shard = self.shard.number(), error = %e, "decoder reset failed");
                self.lost(
                    now,
                    Some(4000),
                    "the decoder could not be reset",
                    Reconnect::Resume,
                );
            }
        }
    }

    /// The websocket could not be opened.
    pub fn handle_connect_failed(&mut self, now: Instant, reason: &str) {
        self.dialing = false;
        self.connect_failed(now, reason);
    }

    /// The attempt failed (the driver said so, or its handshake timed out): back off, then try
    /// again.
    pub(super) fn connect_failed(&mut self, now: Instant, reason: &str) {
        if let Phase::Connecting { resume_url, .. } = self.phase {
            tracing::warn!(shard = self.shard.number(), reason, "connect failed");
            if resume_url {
                // Discord: do not keep trying a resume URL that failed; fall back to the gateway.
                self.resume_url_failed = true;
            }
            let delay = self.backoff.next_unreachable(&mut self.rng);
            tracing::debug!(shard = self.shard.number(), ?delay, "reconnecting after");
            self.last_failure = Some(format!("connect failed: {reason}"));
            self.emit(ShardEvent::ConnectFailed {
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

    /// This shard's turn to identify came.
    pub fn handle_identify_permitted(&mut self, now: Instant) {
        self.awaiting_turn = false;
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
        self.awaiting_turn = false;
        // Bounded: a queue's answer (a Redis TTL, say) cannot push the reconnect past a day.
        let retry_in = retry_in.min(MAX_IDENTIFY_WAIT);
        if self.phase != Phase::AwaitingIdentify {
            return;
        }
        tracing::warn!(
            shard = self.shard.number(),
            ?retry_in,
            reason,
            "identify paused"
        );
        self.emit(ShardEvent::IdentifyPaused {
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

    /// The identify queue could not be asked (Redis unreachable, for one): the user is told, the
    /// connection closes, and the shard tries again after [`IDENTIFY_QUEUE_RETRY`].
    pub fn handle_identify_failed(&mut self, now: Instant, reason: &str) {
        tracing::error!(shard = self.shard.number(), reason, "cannot identify");
        let reason = format!("the identify queue failed: {reason}");
        self.handle_identify_refused(now, IDENTIFY_QUEUE_RETRY, &reason);
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
        self.give_up_dialing();
        self.dialing = true;
        self.actions.push_back(Action::Connect { url });
        self.phase = Phase::Connecting {
            deadline: now + self.timeouts.handshake,
            resume_url,
        };
    }

    /// The attempt that an [`Action::Connect`] started, if the driver has not said how it went,
    /// is given up on: the driver is told to stop it.
    pub(super) fn give_up_dialing(&mut self) {
        if std::mem::take(&mut self.dialing) {
            self.actions.push_back(Action::CancelConnect);
        }
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
        self.emit(ShardEvent::Connected { resuming });
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
                self.ready_seq = Some(dispatch.seq);
                self.phase = Phase::Connected { since: now };
                self.last_failure = None;
                tracing::info!(
                    shard = self.shard.number(),
                    guilds = ready.guilds.len(),
                    "ready"
                );
                self.emit(ShardEvent::Ready(ready));
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
                self.emit(ShardEvent::Resumed { replayed, seq });
            }
            // `handle_payload` typed only what the filter lets through (and READY, RESUMED).
            event => self.emit(ShardEvent::Dispatch(gateway_model::Dispatch {
                seq: dispatch.seq,
                event,
            })),
        }
    }
}

#[cfg(test)]
mod tests;
