//! The session start budget: how many IDENTIFYs the application may still spend before the
//! window resets, as `GET /gateway/bot` reports it in `session_start_limit`.

use std::time::Duration;

use std::time::Instant;

use crate::GatewayConfig;

/// Session starts spent in the current window.
#[derive(Debug, Default)]
pub(crate) struct SessionStarts {
    /// When the current window began (at its first session start).
    window_start: Option<Instant>,
    /// Starts spent in it.
    used: u32,
}

/// The budget as `GET /gateway/bot` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) total: u32,
    pub(crate) remaining: u32,
    pub(crate) reset_after: Duration,
}

impl SessionStarts {
    fn roll(&mut self, now: Instant, reset: Duration) {
        if self
            .window_start
            .is_some_and(|start| now.duration_since(start) >= reset)
        {
            self.window_start = None;
            self.used = 0;
        }
    }

    /// The budget at `now`.
    pub(crate) fn budget_at(&mut self, now: Instant, config: &GatewayConfig) -> Budget {
        let reset = config.session_start_reset;
        self.roll(now, reset);
        Budget {
            total: config.session_start_limit,
            remaining: config.session_start_limit.saturating_sub(self.used),
            reset_after: self.window_start.map_or(reset, |start| {
                reset.saturating_sub(now.duration_since(start))
            }),
        }
    }

    /// Spends one start; false if none is left.
    pub(crate) fn spend(&mut self, now: Instant, config: &GatewayConfig) -> bool {
        if self.budget_at(now, config).remaining == 0 {
            return false;
        }
        self.window_start.get_or_insert(now);
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_and_resets_after_the_window() {
        let config = GatewayConfig {
            session_start_limit: 2,
            session_start_reset: Duration::from_secs(10),
            ..GatewayConfig::default()
        };
        let t0 = Instant::now();
        let mut starts = SessionStarts::default();
        assert_eq!(starts.budget_at(t0, &config).remaining, 2);
        assert!(starts.spend(t0, &config));
        assert!(starts.spend(t0 + Duration::from_secs(1), &config));
        assert!(!starts.spend(t0 + Duration::from_secs(2), &config));
        let b = starts.budget_at(t0 + Duration::from_secs(4), &config);
        assert_eq!((b.remaining, b.reset_after), (0, Duration::from_secs(6)));
        assert!(starts.spend(t0 + Duration::from_secs(10), &config));
        assert_eq!(
            starts
                .budget_at(t0 + Duration::from_secs(10), &config)
                .remaining,
            1
        );
    }
}
