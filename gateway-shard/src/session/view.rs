//! What a session shows its driver and its user: where it stands, its ids, latency and budget.

use std::time::{Duration, Instant};

use gateway_model::{ShardId, Snowflake};

use super::{Phase, Session, SessionState};
use crate::{ResumeInfo, ShardError};

impl Session {
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
        self.heartbeats.latency()
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

    /// The sequence number the latest READY came with (Discord's is 1; other servers differ).
    pub fn ready_sequence(&self) -> Option<u64> {
        self.ready_seq
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

    /// The user is behind (`true`) or caught up. Reading pauses only on a connected session
    /// (see [`is_reading_paused`](Self::is_reading_paused)): a handshake (HELLO, READY, RESUMED
    /// and its replay) is always read through, so that none times out behind the user.
    pub fn handle_reading_paused(&mut self, _now: Instant, behind: bool) {
        let was = self.is_reading_paused();
        self.reading_paused = behind;
        if was && !self.is_reading_paused() {
            // What waits in the socket was sent while nobody listened: the zombie rule counts
            // from now.
            self.heartbeats.reading_resumed();
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
}
