//! The identify schedule: sans-IO, time as input.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use gateway_model::SessionStartLimit;

/// A place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

/// What the schedule decided for a waiting ticket, from [`IdentifySchedule::poll_output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the waiter must be told"]
pub enum Grant {
    /// This ticket may identify now; its bucket's window starts and one session start is spent.
    Granted(Ticket),
    /// The daily budget is spent (or down to the reserve); it resets after `retry_in`. The
    /// ticket has left the queue.
    Refused {
        /// The ticket refused.
        ticket: Ticket,
        /// When the budget resets.
        retry_in: Duration,
    },
}

/// Who may identify when: per bucket (`shard_id % max_concurrency`) a first-in-first-out line and
/// the time of the last identify, plus the daily session start budget.
#[derive(Debug, Clone)]
pub struct IdentifySchedule {
    window: Duration,
    next_ticket: u64,
    /// Waiting tickets per bucket.
    lines: BTreeMap<u32, VecDeque<Ticket>>,
    /// Bucket of each waiting ticket.
    buckets: BTreeMap<Ticket, u32>,
    last: BTreeMap<u32, Instant>,
    budget: Option<(SessionStartLimit, Instant)>,
    /// Session starts kept back: identifies pause when only this many are left.
    reserve: u32,
}

impl IdentifySchedule {
    /// A schedule with this window per bucket.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            next_ticket: 0,
            lines: BTreeMap::new(),
            buckets: BTreeMap::new(),
            last: BTreeMap::new(),
            budget: None,
            reserve: 0,
        }
    }

    /// Keeps `reserve` session starts back: once only that many are left, identifies pause
    /// ([`Grant::Refused`]) until the budget resets, so that an identify storm cannot spend the
    /// last of it (Discord resets the token of a bot that goes over).
    pub fn set_reserve(&mut self, reserve: u32) {
        self.reserve = reserve;
    }

    /// Queues `shard_id` in its bucket (`shard_id % max_concurrency`).
    pub fn handle_request(&mut self, _now: Instant, shard_id: u32, max_concurrency: u32) -> Ticket {
        let bucket = shard_id % max_concurrency.max(1);
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.lines.entry(bucket).or_default().push_back(ticket);
        self.buckets.insert(ticket, bucket);
        ticket
    }

    /// Leaves the queue (the waiter went away).
    pub fn handle_cancel(&mut self, _now: Instant, ticket: Ticket) {
        if let Some(bucket) = self.buckets.remove(&ticket)
            && let Some(line) = self.lines.get_mut(&bucket)
        {
            line.retain(|t| *t != ticket);
        }
    }

    /// Time passed. Nothing is decided until [`poll_output`](Self::poll_output); this is here so
    /// that the schedule is driven like every other state machine of the stack.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// The next decision at `now`: the first ticket of a bucket whose window has passed is
    /// granted (or refused, when the budget is down to the reserve). Call it until `None` after
    /// every input and at every [`poll_timeout`](Self::poll_timeout).
    #[must_use = "the waiter must be told"]
    pub fn poll_output(&mut self, now: Instant) -> Option<Grant> {
        let (bucket, ticket) = self.lines.iter().find_map(|(bucket, line)| {
            let ticket = *line.front()?;
            let free = self
                .last
                .get(bucket)
                .is_none_or(|last| now >= *last + self.window);
            free.then_some((*bucket, ticket))
        })?;
        if let Some(line) = self.lines.get_mut(&bucket) {
            line.pop_front();
        }
        self.buckets.remove(&ticket);
        if let Some((limit, reset_at)) = &mut self.budget {
            if now >= *reset_at {
                limit.remaining = limit.total;
                *reset_at = now + Duration::from_secs(24 * 3600);
            }
            if limit.remaining <= self.reserve {
                let retry_in = reset_at.saturating_duration_since(now);
                return Some(Grant::Refused { ticket, retry_in });
            }
            limit.remaining -= 1;
        }
        self.last.insert(bucket, now);
        Some(Grant::Granted(ticket))
    }

    /// The earliest time a waiting ticket could be granted.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lines
            .iter()
            .filter(|(_, line)| !line.is_empty())
            .filter_map(|(bucket, _)| self.last.get(bucket).map(|t| *t + self.window))
            .min()
    }

    /// The budget now.
    pub fn session_start_limit(&self, now: Instant) -> Option<SessionStartLimit> {
        self.budget.map(|(mut limit, reset_at)| {
            limit.reset_after = reset_at.saturating_duration_since(now).as_millis() as u64;
            limit
        })
    }

    /// Sets the budget (`reset_after` counts from `now`).
    pub fn handle_session_start_limit(&mut self, now: Instant, limit: SessionStartLimit) {
        // A reset far in the future (an absurd answer) is held at a day, Discord's window.
        let day = Duration::from_secs(24 * 3600);
        let reset = Duration::from_millis(limit.reset_after).min(day);
        self.budget = Some((limit, now + reset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(s: &mut IdentifySchedule, now: Instant) -> Vec<Grant> {
        std::iter::from_fn(|| s.poll_output(now)).collect()
    }

    /// Grants everything it can at each step of made-up time; returns (shard, seconds) in order.
    fn run(shards: &[u32], max_concurrency: u32) -> Vec<(u32, u64)> {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::from_secs(5));
        let tickets: BTreeMap<Ticket, u32> = shards
            .iter()
            .map(|&id| (s.handle_request(t0, id, max_concurrency), id))
            .collect();
        let mut order = Vec::new();
        let mut now = t0;
        while order.len() < shards.len() {
            for grant in grants(&mut s, now) {
                let Grant::Granted(ticket) = grant else {
                    panic!("no budget was set: {grant:?}")
                };
                order.push((tickets[&ticket], (now - t0).as_secs()));
            }
            s.handle_timeout(now);
            now = s.poll_timeout().unwrap_or(now).max(now);
        }
        order
    }

    #[test]
    fn buckets_go_in_rounds_5_s_apart() {
        let order = run(&(0..16).collect::<Vec<_>>(), 4);
        for (i, (shard, at)) in order.iter().enumerate() {
            assert_eq!(*at, (i as u64 / 4) * 5, "shard {shard}");
            assert_eq!(*shard / 4, i as u32 / 4, "round of shard {shard}");
        }
    }

    #[test]
    fn a_shard_back_in_its_bucket_waits_for_the_window() {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::from_secs(5));
        let a = s.handle_request(t0, 1, 4);
        assert_eq!(grants(&mut s, t0), [Grant::Granted(a)]);
        let b = s.handle_request(t0, 5, 4); // same bucket
        let c = s.handle_request(t0, 2, 4); // another bucket
        assert_eq!(grants(&mut s, t0), [Grant::Granted(c)]);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(grants(&mut s, later), [Grant::Granted(b)]);
    }

    #[test]
    fn first_in_first_out_within_a_bucket_and_cancel() {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::from_secs(5));
        let a = s.handle_request(t0, 0, 1);
        let b = s.handle_request(t0, 1, 1);
        s.handle_cancel(t0, a);
        assert_eq!(grants(&mut s, t0), [Grant::Granted(b)]);
        let c = s.handle_request(t0, 2, 1);
        let d = s.handle_request(t0, 3, 1);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(grants(&mut s, later), [Grant::Granted(c)]);
        assert_eq!(
            grants(&mut s, later + Duration::from_secs(5)),
            [Grant::Granted(d)]
        );
    }

    #[test]
    fn identifies_pause_at_the_reserve() {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::ZERO);
        s.set_reserve(2);
        let limit = SessionStartLimit {
            total: 1000,
            remaining: 3,
            reset_after: 60_000,
            max_concurrency: 1,
        };
        s.handle_session_start_limit(t0, limit);
        let first = s.handle_request(t0, 0, 1);
        assert_eq!(grants(&mut s, t0), [Grant::Granted(first)]);
        let second = s.handle_request(t0, 0, 1);
        let retry_in = Duration::from_secs(60);
        assert_eq!(
            grants(&mut s, t0),
            [Grant::Refused {
                ticket: second,
                retry_in
            }]
        );
    }

    #[test]
    fn the_daily_budget_is_spent_and_resets() {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::ZERO);
        let limit = SessionStartLimit {
            total: 2,
            remaining: 1,
            reset_after: 1000,
            max_concurrency: 1,
        };
        s.handle_session_start_limit(t0, limit);
        let a = s.handle_request(t0, 0, 1);
        assert_eq!(grants(&mut s, t0), [Grant::Granted(a)]);
        let b = s.handle_request(t0, 0, 1);
        let retry_in = Duration::from_secs(1);
        assert_eq!(
            grants(&mut s, t0),
            [Grant::Refused {
                ticket: b,
                retry_in
            }]
        );
        assert_eq!(s.session_start_limit(t0).map(|l| l.remaining), Some(0));
        let later = t0 + Duration::from_secs(1);
        let c = s.handle_request(later, 0, 1);
        assert_eq!(grants(&mut s, later), [Grant::Granted(c)]);
        assert_eq!(s.session_start_limit(later).map(|l| l.remaining), Some(1));
    }
}
