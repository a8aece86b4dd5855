//! Reconnect backoff: exponential with decorrelated jitter, capped, reset after a stable connection.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How long to wait between reconnect attempts.
///
/// Each delay is drawn uniformly from `[base, 3 × previous]` and capped (the "decorrelated jitter"
/// of the AWS architecture blog), so a thousand shards cut off together do not come back in step.
/// A connection that stayed up for [`Backoff::stable_after`] resets it: the next reconnect is
/// immediate.
///
/// While the gateway cannot be reached at all (refused or timed out before the websocket opened),
/// delays stay under [`Backoff::unreachable_cap`], so that a shard is back within seconds of the
/// gateway's return; a gateway that answers (HELLO) brings the delay back down to `base`, so
/// failures during an outage do not slow the recovery after it.
///
/// A circuit breaker stops identify loops: after [`Backoff::breaker_after`] sessions in a row that
/// end before READY (or RESUMED), or with 4007 or 4009, delays grow up to [`Backoff::breaker_cap`]
/// (minutes), whatever the gateway answered, until a session reaches READY again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The smallest delay. Default 1 s.
    pub base: Duration,
    /// The largest delay. Default 60 s (hikari's cap).
    pub cap: Duration,
    /// A connection up this long counts as healthy and resets the backoff. Default 60 s.
    pub stable_after: Duration,
    /// The largest delay while the gateway cannot be reached. Default 8 s.
    pub unreachable_cap: Duration,
    /// Sessions in a row that die before READY (or with 4007/4009) that open the breaker.
    /// Default 3.
    pub breaker_after: u32,
    /// The largest delay while the breaker is open. Default 5 minutes.
    pub breaker_cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
            unreachable_cap: Duration::from_secs(8),
            breaker_after: 3,
            breaker_cap: Duration::from_secs(300),
        }
    }
}

/// The backoff's state.
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    config: Backoff,
    previous: Option<Duration>,
    /// Sessions in a row that failed (see [`Backoff::breaker_after`]).
    failed_sessions: u32,
}

impl BackoffState {
    pub(crate) fn new(config: Backoff) -> Self {
        Self {
            config,
            previous: None,
            failed_sessions: 0,
        }
    }

    /// A connection ended: whether its session had reached READY or RESUMED, and its close code.
    pub(crate) fn session_ended(&mut self, reached_ready: bool, code: Option<u16>) {
        if !reached_ready || matches!(code, Some(4007 | 4009)) {
            self.failed_sessions = self.failed_sessions.saturating_add(1);
        } else {
            self.failed_sessions = 0;
        }
    }

    /// Whether the circuit breaker is open: sessions keep failing.
    pub(crate) fn breaker_open(&self) -> Option<u32> {
        (self.failed_sessions >= self.config.breaker_after.max(1)).then_some(self.failed_sessions)
    }

    /// Forgets past failures after a healthy connection: the next delay is zero, and the breaker
    /// is closed.
    pub(crate) fn reset(&mut self) {
        self.previous = None;
        self.failed_sessions = 0;
    }

    /// The gateway answered (HELLO): it is up, so earlier failures to reach it no longer count;
    /// the next delay is drawn from `[base, 3 × base]` (not zero: it may still close at once).
    pub(crate) fn answered(&mut self) {
        if self.breaker_open().is_some() {
            return;
        }
        let base = self.config.base.max(Duration::from_millis(1));
        if let Some(previous) = &mut self.previous {
            *previous = (*previous).min(base);
        }
    }

    /// The next delay after a session ended: zero after a reset, then drawn from
    /// `[base, 3 × previous]`, capped at `cap`.
    pub(crate) fn next(&mut self, rng: &mut ChaCha8Rng) -> Duration {
        match self.breaker_open() {
            Some(failed) => self.next_breaker(rng, failed),
            None => self.next_capped(rng, self.config.cap),
        }
    }

    /// While the breaker is open: `base × 2^(failures past the threshold + 1)`, capped at
    /// `breaker_cap`, drawn from its upper half so that shards keep their spread.
    fn next_breaker(&mut self, rng: &mut ChaCha8Rng, failed: u32) -> Duration {
        let base = self.config.base.max(Duration::from_millis(1));
        let steps = (failed + 1)
            .saturating_sub(self.config.breaker_after.max(1))
            .min(20);
        let cap = self.config.breaker_cap.max(self.config.cap);
        let high = base.saturating_mul(1 << steps).min(cap);
        let millis = high.as_millis() as u64;
        let delay = Duration::from_millis(rng.random_range(millis / 2..=millis));
        self.previous = Some(delay.max(base));
        delay
    }

    /// The next delay after the gateway could not be reached: as [`next`](Self::next), capped at
    /// `unreachable_cap`.
    pub(crate) fn next_unreachable(&mut self, rng: &mut ChaCha8Rng) -> Duration {
        self.next_capped(rng, self.config.unreachable_cap.min(self.config.cap))
    }

    fn next_capped(&mut self, rng: &mut ChaCha8Rng, cap: Duration) -> Duration {
        let base = self.config.base.max(Duration::from_millis(1));
        let delay = match self.previous {
            None => Duration::ZERO,
            Some(previous) => {
                let high = (previous.max(base) * 3).min(cap).max(base);
                let millis = rng.random_range(base.as_millis() as u64..=high.as_millis() as u64);
                Duration::from_millis(millis)
            }
        };
        self.previous = Some(delay.max(base));
        delay
    }

    pub(crate) fn stable_after(&self) -> Duration {
        self.config.stable_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zero_then_grows_within_bounds_and_caps() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut b = BackoffState::new(Backoff::default());
        assert_eq!(b.next(&mut rng), Duration::ZERO);
        let mut previous = Duration::from_secs(1);
        for _ in 0..50 {
            let d = b.next(&mut rng);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(60),
                "{d:?}"
            );
            assert!(d <= previous * 3, "{d:?} after {previous:?}");
            previous = d;
        }
        b.reset();
        assert_eq!(b.next(&mut rng), Duration::ZERO);
    }

    #[test]
    fn unreachable_delays_stay_short_and_an_answer_brings_them_down() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut b = BackoffState::new(Backoff::default());
        for _ in 0..30 {
            assert!(b.next_unreachable(&mut rng) <= Duration::from_secs(8));
        }
        for _ in 0..30 {
            b.next(&mut rng);
        }
        b.answered();
        let after = b.next(&mut rng);
        assert!(
            after >= Duration::from_secs(1) && after <= Duration::from_secs(3),
            "{after:?}"
        );
    }

    #[test]
    fn the_breaker_opens_after_failed_sessions_and_closes_on_ready() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut b = BackoffState::new(Backoff::default());
        for _ in 0..3 {
            b.session_ended(false, Some(4000));
            b.next(&mut rng);
        }
        assert_eq!(b.breaker_open(), Some(3));
        let mut delays = Vec::new();
        for _ in 0..10 {
            b.session_ended(false, None);
            delays.push(b.next(&mut rng));
        }
        assert!(
            delays.windows(2).all(|w| w[1] * 4 >= w[0] * 2),
            "{delays:?}"
        );
        assert!(
            delays[9] > Duration::from_secs(60),
            "past the normal cap: {delays:?}"
        );
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(300)),
            "{delays:?}"
        );
        b.answered();
        assert!(
            b.next(&mut rng) > Duration::from_secs(3),
            "an answer does not close it"
        );
        b.session_ended(true, Some(4009));
        assert_eq!(b.breaker_open(), Some(14), "4009 counts even after READY");
        b.session_ended(true, None);
        assert_eq!(b.breaker_open(), None);
    }

    #[test]
    fn same_seed_same_delays() {
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut b = BackoffState::new(Backoff::default());
            (0..10).map(|_| b.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
