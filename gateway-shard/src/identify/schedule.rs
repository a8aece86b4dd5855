//! The identify schedule: sans-IO, time as input.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use gateway_model::SessionStartLimit;

/// A place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The answer to [`IdentifySchedule::try_grant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Identify now.
    Granted,
    /// First in the bucket: ask again at this time, when the bucket's window ends.
    WaitUntil(Instant),
    /// Others are ahead in the bucket: ask again when the queue changes.
    WaitForTurn,
    /// The daily budget is spent; it resets after this long.
    Exhausted(Duration),
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
    /// ([`Grant::Exhausted`]) until the budget resets, so that an identify storm cannot spend the
    /// last of it (Discord resets the token of a bot that goes over).
    pub fn set_reserve(&mut self, reserve: u32) {
        self.reserve = reserve;
    }

    /// Queues `shard_id` in its bucket.
    pub fn request(&mut self, shard_id: u32, max_concurrency: u32, _now: Instant) -> Ticket {
        let bucket = shard_id % max_concurrency.max(1);
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.lines.entry(bucket).or_default().push_back(ticket);
        self.buckets.insert(ticket, bucket);
        ticket
    }

    /// Leaves the queue.
    pub fn cancel(&mut self, ticket: Ticket) {
        if let Some(bucket) = self.buckets.remove(&ticket)
            && let Some(line) = self.lines.get_mut(&bucket)
        {
            line.retain(|t| *t != ticket);
        }
    }

    /// Whether `ticket` may identify now; granting it starts its bucket's window and spends one
    /// session start.
    pub fn try_grant(&mut self, ticket: Ticket, now: Instant) -> Grant {
        let Some(&bucket) = self.buckets.get(&ticket) else {
            return Grant::Granted;
        };
        if self.lines.get(&bucket).and_then(|l| l.front()) != Some(&ticket) {
            return Grant::WaitForTurn;
        }
        if let Some(last) = self.last.get(&bucket) {
            let free = *last + self.window;
            if now < free {
                return Grant::WaitUntil(free);
            }
        }
        if let Some((limit, reset_at)) = &mut self.budget {
            if now >= *reset_at {
                limit.remaining = limit.total;
                *reset_at = now + Duration::from_secs(24 * 3600);
            }
            if limit.remaining <= self.reserve {
                return Grant::Exhausted(reset_at.saturating_duration_since(now));
            }
            limit.remaining -= 1;
        }
        self.buckets.remove(&ticket);
        if let Some(line) = self.lines.get_mut(&bucket) {
            line.pop_front();
        }
        self.last.insert(bucket, now);
        Grant::Granted
    }

    /// The earliest time a waiting ticket could be granted.
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
    pub fn set_session_start_limit(&mut self, limit: SessionStartLimit, now: Instant) {
        self.budget = Some((limit, now + Duration::from_millis(limit.reset_after)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants everything it can at each step of made-up time; returns (shard, seconds) in order.
    fn run(shards: &[u32], max_concurrency: u32) -> Vec<(u32, u64)> {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::from_secs(5));
        let mut waiting: Vec<(u32, Ticket)> = shards
            .iter()
            .map(|&id| (id, s.request(id, max_concurrency, t0)))
            .collect();
        let mut order = Vec::new();
        let mut now = t0;
        while !waiting.is_empty() {
            waiting.retain(|&(id, ticket)| match s.try_grant(ticket, now) {
                Grant::Granted => {
                    order.push((id, (now - t0).as_secs()));
                    false
                }
                _ => true,
            });
            now = s.poll_timeout().unwrap_or(now).max(now);
            if !waiting.is_empty() && s.poll_timeout().is_none() {
                now += Duration::from_millis(1);
            }
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
        let a = s.request(1, 4, t0);
        assert_eq!(s.try_grant(a, t0), Grant::Granted);
        let b = s.request(5, 4, t0); // same bucket
        let c = s.request(2, 4, t0); // another bucket
        assert_eq!(
            s.try_grant(b, t0),
            Grant::WaitUntil(t0 + Duration::from_secs(5))
        );
        assert_eq!(s.try_grant(c, t0), Grant::Granted);
        assert_eq!(s.try_grant(b, t0 + Duration::from_secs(5)), Grant::Granted);
    }

    #[test]
    fn first_in_first_out_within_a_bucket_and_cancel() {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::from_secs(5));
        let a = s.request(0, 1, t0);
        let b = s.request(1, 1, t0);
        assert_eq!(s.try_grant(b, t0), Grant::WaitForTurn);
        s.cancel(a);
        assert_eq!(s.try_grant(b, t0), Grant::Granted);
    }

    #[test]
    fn identifies_pause_at_the_reserve() {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::ZERO);
        s.set_reserve(2);
        s.set_session_start_limit(
            SessionStartLimit {
                total: 1000,
                remaining: 3,
                reset_after: 60_000,
                max_concurrency: 1,
            },
            t0,
        );
        let first = s.request(0, 1, t0);
        assert_eq!(s.try_grant(first, t0), Grant::Granted);
        let second = s.request(0, 1, t0);
        assert_eq!(
            s.try_grant(second, t0),
            Grant::Exhausted(Duration::from_secs(60))
        );
    }

    #[test]
    fn the_daily_budget_is_spent_and_resets() {
        let t0 = Instant::now();
        let mut s = IdentifySchedule::new(Duration::ZERO);
        s.set_session_start_limit(
            SessionStartLimit {
                total: 2,
                remaining: 1,
                reset_after: 1000,
                max_concurrency: 1,
            },
            t0,
        );
        let a = s.request(0, 1, t0);
        assert_eq!(s.try_grant(a, t0), Grant::Granted);
        let b = s.request(0, 1, t0);
        assert_eq!(s.try_grant(b, t0), Grant::Exhausted(Duration::from_secs(1)));
        assert_eq!(s.session_start_limit(t0).map(|l| l.remaining), Some(0));
        assert_eq!(s.try_grant(b, t0 + Duration::from_secs(1)), Grant::Granted);
        assert_eq!(
            s.session_start_limit(t0 + Duration::from_secs(1))
                .map(|l| l.remaining),
            Some(1)
        );
    }
}
