//! Losing a connection: the close policy, the backoff and breaker, and the next connect.

use std::time::{Duration, Instant};

use super::{Phase, Session};
use crate::{Action, Reconnect, ShardEvent};

/// The longest reconnect delay, should a delay overflow `Instant`.
const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

impl Session {
    /// The session is over. Member requests still queued for it are dropped, and the user is
    /// told: sent in the next session they would ask for the same guild twice (with its own
    /// GUILD_CREATE's request), and the second is RATE_LIMITED or a second full download.
    pub(super) fn forget_session(&mut self) {
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
            self.emit(ShardEvent::MemberRequestsDropped { count });
        }
    }

    pub(super) fn lost(&mut self, now: Instant, code: Option<u16>, reason: &str, next: Reconnect) {
        self.lost_after(now, code, reason, next, Duration::ZERO);
    }

    /// The connection is over: close it if open, tell the user, and reconnect (or stop).
    pub(super) fn lost_after(
        &mut self,
        now: Instant,
        code: Option<u16>,
        reason: &str,
        next: Reconnect,
        wait: Duration,
    ) {
        // An attempt still opening (the user closed meanwhile) goes too.
        self.give_up_dialing();
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
            self.emit(ShardEvent::Disconnected {
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
        self.heartbeats.stop();
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
            self.emit(ShardEvent::ConnectFailed {
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
    pub(super) fn schedule_reconnect(&mut self, now: Instant, wait: Duration) {
        // The breaker's delay overrides a shorter wait the gateway asked for, never a longer one.
        let delay = if wait.is_zero() || self.backoff.breaker_open().is_some() {
            self.backoff.next(&mut self.rng).max(wait)
        } else {
            wait
        };
        tracing::debug!(shard = self.shard.number(), ?delay, "reconnecting after");
        // A delay past what `Instant` holds waits as long as it can.
        let connect_at = now.checked_add(delay).unwrap_or(now + MAX_DELAY);
        self.phase = Phase::Idle { connect_at };
    }
}
