//! The heartbeat schedule of one connection, and the rule that tells a dead connection from a
//! busy one.
//!
//! # The zombie rule
//!
//! A connection is a zombie when, at a heartbeat's due time, the last heartbeat is still not
//! acknowledged **and nothing at all was received since it was sent**. A missing ACK alone is not
//! enough: the gateway writes its ACK in order, behind the dispatches it queued before, so a
//! connection draining a backlog longer than an interval sees its ACK late although frames keep
//! coming. Calling that a zombie closes a healthy connection, the resume replays the rest of the
//! backlog, and the shard loops (a livelock; twilight-gateway 0.18 has it). While frames keep
//! arriving the connection is alive: the next heartbeat goes out on time (so the gateway still
//! hears from us every interval) and the ACKs are matched in order.
//!
//! A connection the gateway stopped serving still ends within two intervals: the last receipt
//! comes before some heartbeat `h`, and at `h`'s next due time (one interval later) `h` is
//! unacknowledged with nothing received since.
//!
//! While the driver leaves the socket unread (the user is behind), nothing can be received, so
//! the rule waits; it starts again from the moment reading resumes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Heartbeats sent and not acknowledged that are remembered for latency; older ones are
/// forgotten (their ACKs then measure from the oldest remembered). Bounded, whatever the gateway
/// does.
const UNACKED_REMEMBERED: usize = 8;

/// What a heartbeat's due time found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Not due yet, or no connection has a schedule.
    Idle,
    /// A heartbeat is due now.
    Due,
    /// The last heartbeat went unacknowledged with nothing received since: the connection is
    /// dead.
    Zombie,
}

/// One connection's heartbeat schedule, from HELLO until the connection ends.
#[derive(Debug, Default)]
pub(crate) struct Heartbeats {
    /// HELLO's interval, while a connection has one.
    interval: Option<Duration>,
    /// When the next heartbeat falls due.
    next: Option<Instant>,
    /// A heartbeat should go out as soon as the rate limit lets it.
    due: bool,
    /// When each heartbeat not acknowledged yet was sent, oldest first.
    unacked: VecDeque<Instant>,
    /// Whether anything came from the gateway since the last heartbeat went out.
    heard_since_sent: bool,
    /// The last round trip measured.
    latency: Option<Duration>,
}

impl Heartbeats {
    /// HELLO gave `interval`: the first heartbeat is due after `interval × jitter`, jitter in
    /// `[0, 1)`, as Discord asks.
    pub(crate) fn start(&mut self, now: Instant, interval: Duration, jitter: f64) {
        *self = Self {
            interval: Some(interval),
            next: Some(now + interval.mul_f64(jitter.clamp(0.0, 1.0))),
            latency: self.latency,
            ..Self::default()
        };
    }

    /// The connection ended: no schedule until the next HELLO (the latency stays, for the user).
    pub(crate) fn stop(&mut self) {
        *self = Self {
            latency: self.latency,
            ..Self::default()
        };
    }

    /// The interval, while a connection has a schedule.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// When [`tick`](Self::tick) must be called next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a heartbeat waits to be sent.
    pub(crate) fn is_due(&self) -> bool {
        self.due
    }

    /// The last round trip measured.
    pub(crate) fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// Time passed. `reading` is false while the driver leaves the socket unread, when nothing
    /// can be heard and so nothing is a zombie.
    pub(crate) fn tick(&mut self, now: Instant, reading: bool) -> Tick {
        let (Some(at), Some(interval)) = (self.next, self.interval) else {
            return Tick::Idle;
        };
        if now < at {
            return Tick::Idle;
        }
        if reading && !self.unacked.is_empty() && !self.heard_since_sent {
            return Tick::Zombie;
        }
        self.due = true;
        // Keep the schedule without drift, but never send a burst to catch up.
        let next = at + interval;
        self.next = Some(if next <= now { now + interval } else { next });
        Tick::Due
    }

    /// The gateway asked for a heartbeat now (op 1).
    pub(crate) fn request(&mut self) {
        if self.interval.is_some() {
            self.due = true;
        }
    }

    /// The due heartbeat went out at `now`.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.due = false;
        self.heard_since_sent = false;
        if self.unacked.len() == UNACKED_REMEMBERED {
            self.unacked.pop_back();
        }
        self.unacked.push_back(now);
    }

    /// Something came from the gateway: the connection is alive.
    pub(crate) fn heard(&mut self) {
        self.heard_since_sent = true;
    }

    /// The driver reads the socket again after leaving it unread: what waits in it was sent
    /// while we did not listen, so the rule counts from now, as if just heard.
    pub(crate) fn reading_resumed(&mut self) {
        self.heard();
    }

    /// An ACK came: it answers the oldest heartbeat not acknowledged (the gateway answers in
    /// order). Returns that round trip; `None` for an ACK nobody asked for.
    pub(crate) fn acked(&mut self, now: Instant) -> Option<Duration> {
        self.heard();
        let sent = self.unacked.pop_front()?;
        let latency = now.saturating_duration_since(sent);
        self.latency = Some(latency);
        Some(latency)
    }

    /// When the oldest heartbeat not acknowledged went out.
    #[cfg(test)]
    pub(crate) fn oldest_unacked(&self) -> Option<Instant> {
        self.unacked.front().copied()
    }

    /// When the newest heartbeat went out, while it is not acknowledged.
    #[cfg(test)]
    pub(crate) fn newest_unacked(&self) -> Option<Instant> {
        self.unacked.back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INTERVAL: Duration = Duration::from_secs(1);

    fn started(t0: Instant) -> Heartbeats {
        let mut h = Heartbeats::default();
        h.start(t0, INTERVAL, 0.0);
        h
    }

    /// Ticks at `now`, and sends the heartbeat if one fell due.
    fn step(h: &mut Heartbeats, now: Instant) -> Tick {
        let tick = h.tick(now, true);
        if h.is_due() {
            h.sent(now);
        }
        tick
    }

    #[test]
    fn a_late_ack_with_frames_arriving_is_no_zombie() {
        let t0 = Instant::now();
        let mut h = started(t0);
        assert_eq!(step(&mut h, t0), Tick::Due);
        // Five intervals of backlog: dispatches arrive, the ACKs sit behind them.
        for i in 1..=5u32 {
            h.heard();
            assert_eq!(step(&mut h, t0 + INTERVAL * i), Tick::Due, "interval {i}");
        }
        // The ACKs come out in order: each one measures its own heartbeat.
        assert_eq!(h.acked(t0 + INTERVAL * 5), Some(INTERVAL * 5));
        assert_eq!(h.acked(t0 + INTERVAL * 5), Some(INTERVAL * 4));
        assert_eq!(h.oldest_unacked(), Some(t0 + INTERVAL * 2));
    }

    #[test]
    fn nothing_heard_for_an_interval_after_a_heartbeat_is_a_zombie() {
        let t0 = Instant::now();
        let mut h = started(t0);
        assert_eq!(step(&mut h, t0), Tick::Due);
        h.heard();
        assert_eq!(step(&mut h, t0 + INTERVAL), Tick::Due);
        // The gateway stops sending; the next due time finds nothing heard since the heartbeat.
        assert_eq!(step(&mut h, t0 + INTERVAL * 2), Tick::Zombie);
    }

    #[test]
    fn an_acked_heartbeat_is_never_a_zombie_even_in_silence() {
        let t0 = Instant::now();
        let mut h = started(t0);
        for i in 0..5u32 {
            assert_eq!(step(&mut h, t0 + INTERVAL * i), Tick::Due);
            assert!(h.acked(t0 + INTERVAL * i + INTERVAL / 10).is_some());
        }
    }

    #[test]
    fn no_zombie_while_the_socket_is_left_unread() {
        let t0 = Instant::now();
        let mut h = started(t0);
        assert_eq!(step(&mut h, t0), Tick::Due);
        for i in 1..=15u32 {
            assert_eq!(h.tick(t0 + INTERVAL * i, false), Tick::Due);
            h.sent(t0 + INTERVAL * i);
        }
        h.reading_resumed();
        assert_eq!(step(&mut h, t0 + INTERVAL * 16), Tick::Due);
        // Still nothing heard after reading resumed: dead after all.
        assert_eq!(step(&mut h, t0 + INTERVAL * 17), Tick::Zombie);
    }

    #[test]
    fn unacked_memory_is_bounded() {
        let t0 = Instant::now();
        let mut h = started(t0);
        for i in 0..1000u32 {
            h.heard();
            step(&mut h, t0 + INTERVAL * i);
        }
        assert_eq!(h.unacked.len(), UNACKED_REMEMBERED);
        assert_eq!(
            h.oldest_unacked(),
            Some(t0),
            "the oldest is kept for latency"
        );
        assert_eq!(h.newest_unacked(), Some(t0 + INTERVAL * 999));
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Milliseconds pass, ticking on the way.
        Wait(u64),
        /// A dispatch (or any frame) arrives.
        Frame,
        /// An ACK arrives.
        Ack,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                (1u64..3_000).prop_map(Step::Wait),
                Just(Step::Frame),
                Just(Step::Ack),
            ],
            0..200,
        )
    }

    proptest! {
        /// A connection that hears something at least every `gap < interval` is never a zombie,
        /// whatever its ACKs do; and any connection that is silent for two whole intervals is
        /// one by then.
        #[test]
        fn busy_is_alive_and_silence_is_dead(steps in steps(), gap in 1u64..1_000) {
            let t0 = Instant::now();
            let mut h = started(t0);
            let mut now = t0;
            let mut last_heard = t0;
            let gap = Duration::from_millis(gap);
            for s in steps {
                match s {
                    Step::Wait(ms) => {
                        // Events in time order: heartbeat due times first at a tie, then the
                        // busy connection's frame every `gap`.
                        let end = now + Duration::from_millis(ms);
                        loop {
                            let heard_at = last_heard + gap;
                            let due = h.deadline().filter(|d| *d <= heard_at.min(end));
                            if let Some(due) = due {
                                now = due;
                                prop_assert_ne!(step(&mut h, now), Tick::Zombie);
                            } else if heard_at <= end {
                                now = heard_at;
                                h.heard();
                                last_heard = now;
                            } else {
                                now = end;
                                break;
                            }
                        }
                    }
                    Step::Frame => { h.heard(); last_heard = now; }
                    Step::Ack => { h.acked(now); last_heard = now; }
                }
            }
            // Then silence: dead within two intervals.
            let silent_from = now;
            let mut zombie = None;
            while zombie.is_none() && now <= silent_from + INTERVAL * 3 {
                let at = h.deadline().expect("a schedule");
                now = at;
                if step(&mut h, now) == Tick::Zombie {
                    zombie = Some(now);
                }
            }
            let zombie = zombie.expect("silence is a zombie");
            prop_assert!(zombie - silent_from <= INTERVAL * 2, "{:?}", zombie - silent_from);
        }
    }
}
