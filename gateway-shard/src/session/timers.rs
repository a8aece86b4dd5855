//! The session's timers as data, after quinn-proto's `TimerTable` and str0m's `Reason`: every
//! deadline is named by what it is for and read from where its state lives (the phase, the
//! heartbeat schedule, the rate limiter, the decoder's quiet check), so that `poll_timeout` is the
//! earliest of one table, and `handle_timeout` fires each due timer in one fixed order and keeps
//! the reason.

use std::time::Instant;

use super::heartbeat::Tick;
use super::{Phase, Session};
use crate::Reconnect;

/// What one of the session's deadlines is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// The decoder gives back what large payloads needed, once the connection has been quiet
    /// for a second.
    Quiet,
    /// Connect (again), once the backoff or the gateway's wait is over.
    Connect,
    /// The websocket handshake takes too long.
    Handshake,
    /// HELLO takes too long.
    Hello,
    /// READY or RESUMED takes too long.
    Ready,
    /// The next heartbeat is due, and with it the zombie check.
    Heartbeat,
    /// The rate limit frees a slot for a frame that waits.
    Send,
}

impl Timer {
    /// Every timer, in the order [`Session::handle_timeout`] fires those that are due.
    pub const ALL: [Self; 7] = [
        Self::Quiet,
        Self::Connect,
        Self::Handshake,
        Self::Hello,
        Self::Ready,
        Self::Heartbeat,
        Self::Send,
    ];
}

impl Session {
    /// When `timer` is due, if it is set.
    #[must_use]
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        match (timer, self.phase) {
            (Timer::Quiet, _) => self.inbound.deadline(),
            (Timer::Connect, Phase::Idle { connect_at }) => Some(connect_at),
            (Timer::Handshake, Phase::Connecting { deadline, .. })
            | (Timer::Hello, Phase::AwaitingHello { deadline, .. })
            | (Timer::Ready, Phase::Handshaking { deadline, .. }) => Some(deadline),
            (Timer::Heartbeat, _) if self.connection_open => self.heartbeats.deadline(),
            (Timer::Send, _) => self.send_deadline(),
            _ => None,
        }
    }

    /// The next timer due, and when.
    #[must_use]
    pub fn next_timer(&self) -> Option<(Timer, Instant)> {
        Timer::ALL
            .into_iter()
            .filter_map(|timer| self.timer(timer).map(|at| (timer, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(_, at)| at)
    }

    /// The timer that the latest [`handle_timeout`](Self::handle_timeout) fired (the last of
    /// them, if several were due).
    #[must_use]
    pub fn last_timeout(&self) -> Option<Timer> {
        self.last_timeout
    }

    /// Time passed: every timer due by `now` fires, in the order of [`Timer::ALL`], each read
    /// again after the one before (a timer that fires may set or clear the others).
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if self.timer(timer).is_some_and(|at| at <= now) {
                self.last_timeout = Some(timer);
                self.fire(timer, now);
            }
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Quiet => self.inbound.handle_timeout(now),
            Timer::Connect => self.connect(now),
            Timer::Handshake => {
                self.give_up_dialing();
                self.connect_failed(now, "websocket handshake timed out");
            }
            Timer::Hello => self.lost(now, Some(4000), "no HELLO in time", Reconnect::Resume),
            Timer::Ready => self.lost(
                now,
                Some(4000),
                "no READY or RESUMED in time",
                Reconnect::Resume,
            ),
            Timer::Heartbeat => self.heartbeat_due(now),
            // The frame goes out at the next `poll_output`, now that the limit has room.
            Timer::Send => {}
        }
    }

    /// The heartbeat schedule's tick: a heartbeat is due, or the connection is a zombie.
    fn heartbeat_due(&mut self, now: Instant) {
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

    /// When the rate limit frees a slot, while a frame waits for one.
    fn send_deadline(&self) -> Option<Instant> {
        let waiting = self.heartbeats.is_due()
            || self.handshake_frame.is_some()
            || (self.is_connected() && !self.queue.is_empty());
        if waiting && self.connection_open {
            self.limiter.next_free()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timer_is_fired_in_one_order() {
        let mut seen = std::collections::HashSet::new();
        assert!(Timer::ALL.iter().all(|t| seen.insert(*t)), "each once");
        // The decoder's release first (it never changes another timer), sending last (it only
        // wakes the poll).
        assert_eq!(Timer::ALL.first(), Some(&Timer::Quiet));
        assert_eq!(Timer::ALL.last(), Some(&Timer::Send));
    }
}
