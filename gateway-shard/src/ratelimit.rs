//! The outbound rate limit and the command queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Payloads a connection may send per [`WINDOW`]: Discord allows 120 per 60 s; two are kept
/// back, and the window is a second longer, so that network jitter cannot bunch 121 sends into
/// Discord's window.
pub const COMMANDS_PER_WINDOW: usize = 118;
/// The rate limit's window (Discord's 60 s, plus a second of margin).
pub const WINDOW: Duration = Duration::from_secs(61);
/// The most slots held back for heartbeats.
const MAX_RESERVED: usize = 10;

/// A sliding-window log of what this connection sent: exact, and fresh for every connection.
///
/// Heartbeats may use every slot; everything else leaves `ceil(60 s / interval) + 1` slots (at most
/// 10) for the heartbeats the window will need.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    sent: VecDeque<Instant>,
    reserved: usize,
}

impl RateLimiter {
    pub(crate) fn new() -> Self {
        Self {
            // Grown on demand: most shards send a few commands a minute, and a full window's
            // worth up front would be 1.9 KiB per idle shard.
            sent: VecDeque::new(),
            reserved: 2,
        }
    }

    /// Forgets every send: a new connection has a fresh budget.
    pub(crate) fn reset(&mut self, heartbeat_interval: Option<Duration>) {
        self.sent.clear();
        self.reserved = match heartbeat_interval {
            Some(i) if !i.is_zero() => {
                ((WINDOW.as_millis().div_ceil(i.as_millis())) as usize + 1).min(MAX_RESERVED)
            }
            _ => 2,
        };
    }

    fn expire(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
    }

    /// Slots left in the window now.
    pub(crate) fn available(&mut self, now: Instant) -> usize {
        self.expire(now);
        COMMANDS_PER_WINDOW - self.sent.len().min(COMMANDS_PER_WINDOW)
    }

    /// Slots left for commands other than heartbeats.
    pub(crate) fn available_for_commands(&mut self, now: Instant) -> usize {
        self.available(now).saturating_sub(self.reserved)
    }

    pub(crate) fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }

    /// When the oldest send leaves the window.
    pub(crate) fn next_free(&self) -> Option<Instant> {
        self.sent.front().map(|t| *t + WINDOW)
    }
}

/// How urgent a queued command is; lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Priority {
    /// Presence and voice state updates.
    State = 0,
    /// Member requests, channel info, soundboard sounds.
    Request = 1,
}

/// Commands waiting to be sent, in priority order, first in first out within a priority.
#[derive(Debug)]
pub(crate) struct CommandQueue {
    /// Frames per priority, each marked whether it is a member request.
    queues: [VecDeque<(String, bool)>; 2],
    capacity: usize,
}

impl CommandQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queues: [VecDeque::new(), VecDeque::new()],
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Queues a frame; gives it back if the queue is full.
    pub(crate) fn push(
        &mut self,
        priority: Priority,
        frame: String,
        member_request: bool,
    ) -> Result<(), String> {
        if self.len() >= self.capacity {
            return Err(frame);
        }
        self.queues[priority as usize].push_back((frame, member_request));
        Ok(())
    }

    pub(crate) fn pop(&mut self) -> Option<String> {
        self.queues
            .iter_mut()
            .find_map(VecDeque::pop_front)
            .map(|(frame, _)| frame)
    }

    /// Drops the member requests waiting; returns how many.
    pub(crate) fn drop_member_requests(&mut self) -> usize {
        let before = self.len();
        for queue in &mut self.queues {
            queue.retain(|(_, member_request)| !member_request);
        }
        before - self.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_and_reserves_for_heartbeats() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new();
        r.reset(Some(Duration::from_millis(41_250)));
        assert_eq!(r.available(t0), 118);
        assert_eq!(r.available_for_commands(t0), 115);
        for i in 0..115 {
            r.record(t0 + Duration::from_millis(i));
        }
        let t = t0 + Duration::from_secs(1);
        assert_eq!(r.available_for_commands(t), 0);
        assert_eq!(r.available(t), 3);
        assert_eq!(r.next_free(), Some(t0 + WINDOW));
        assert_eq!(r.available_for_commands(t0 + WINDOW), 1);
        r.reset(Some(Duration::from_secs(1)));
        assert_eq!(r.available_for_commands(t), 108);
    }

    #[test]
    fn queue_orders_by_priority_and_is_bounded() {
        let mut q = CommandQueue::new(3);
        q.push(Priority::Request, "r1".into(), true).unwrap();
        q.push(Priority::State, "s1".into(), false).unwrap();
        q.push(Priority::Request, "r2".into(), false).unwrap();
        assert_eq!(
            q.push(Priority::State, "s2".into(), false),
            Err("s2".to_owned())
        );
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (
                Some("s1".into()),
                Some("r1".into()),
                Some("r2".into()),
                None
            )
        );
    }
}
