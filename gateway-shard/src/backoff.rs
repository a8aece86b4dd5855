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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The smallest delay. Default 1 s.
    pub base: Duration,
    /// The largest delay. Default 60 s (hikari's cap).
    pub cap: Duration,
    /// A connection up this long counts as healthy and resets the backoff. Default 60 s.
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// The backoff's state.
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    config: Backoff,
    previous: Option<Duration>,
}

impl BackoffState {
    pub(crate) fn new(config: Backoff) -> Self {
        Self {
            config,
            previous: None,
        }
    }

    /// Forgets past failures: the next delay is zero.
    pub(crate) fn reset(&mut self) {
        self.previous = None;
    }

    /// The next delay: zero after a reset, then drawn from `[base, 3 × previous]`, capped.
    pub(crate) fn next(&mut self, rng: &mut ChaCha8Rng) -> Duration {
        let base = self.config.base.max(Duration::from_millis(1));
        let delay = match self.previous {
            None => Duration::ZERO,
            Some(previous) => {
                let high = (previous.max(base) * 3).min(self.config.cap).max(base);
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
    fn same_seed_same_delays() {
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut b = BackoffState::new(Backoff::default());
            (0..10).map(|_| b.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
