//! The in-memory network and the simulation's agenda: events ordered by virtual time, and links
//! that keep each direction of a connection in order, as TCP does.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use gateway_testkit::core::Frame;

/// Something that happens at a virtual time.
#[derive(Debug)]
pub(crate) enum Event {
    /// A shard's session timer (stale unless `generation` is the shard's current one).
    ShardTimer { shard: u32, generation: u64 },
    /// The fake gateway's timer.
    CoreTimer { generation: u64 },
    /// The chunk tracker's timer.
    TrackerTimer { generation: u64 },
    /// The identify schedule's timer.
    ScheduleTimer { generation: u64 },
    /// A websocket handshake completes (or is refused).
    Opened {
        shard: u32,
        conn: u64,
        query: String,
        refused: bool,
    },
    /// A client's frame reaches the server.
    ToServer { conn: u64, frame: Frame },
    /// A client's close frame reaches the server.
    ClientClosed { conn: u64, code: u16 },
    /// The server notices a connection is gone.
    ServerLost { conn: u64 },
    /// The server's frames reach the client.
    ToClient {
        shard: u32,
        conn: u64,
        frames: Vec<Frame>,
    },
    /// The server's close frame (`Some`) or a dropped connection (`None`) reaches the client.
    ClientLost {
        shard: u32,
        conn: u64,
        code: Option<u16>,
    },
    /// The next fault drawn from the seed.
    Fault,
    /// The next burst of dispatches the server sends.
    Traffic,
    /// The server restarts.
    Restart,
}

/// The agenda: the next event is the earliest, and events at the same time go in the order
/// they were scheduled.
#[derive(Debug)]
pub(crate) struct Agenda<E = Event> {
    start: Instant,
    now: Instant,
    next: u64,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, E>,
    /// The latest arrival scheduled per link direction, so that nothing overtakes.
    links: BTreeMap<(u64, bool), Instant>,
    /// The most events that waited at once.
    pub(crate) peak: usize,
}

impl<E> Agenda<E> {
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            start,
            now: start,
            next: 0,
            heap: BinaryHeap::new(),
            events: BTreeMap::new(),
            links: BTreeMap::new(),
            peak: 0,
        }
    }

    /// Virtual now.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Schedules `event` at `at` (never before now).
    pub(crate) fn at(&mut self, at: Instant, event: E) {
        let at = at.max(self.now);
        self.next += 1;
        self.heap.push(Reverse((at, self.next)));
        self.events.insert(self.next, event);
        self.peak = self.peak.max(self.events.len());
    }

    /// Schedules `event` after `delay`.
    pub(crate) fn after(&mut self, delay: Duration, event: E) {
        self.at(self.now + delay, event);
    }

    /// Schedules `event` on connection `conn` in one direction (`to_server`), `latency` from
    /// now but never before what was sent on it earlier.
    pub(crate) fn send(&mut self, conn: u64, to_server: bool, latency: Duration, event: E) {
        let last = self.links.entry((conn, to_server)).or_insert(self.now);
        let at = (self.now + latency).max(*last);
        *last = at;
        self.at(at, event);
    }

    /// Forgets a connection's links (nothing more is sent on it).
    pub(crate) fn forget_link(&mut self, conn: u64) {
        self.links.remove(&(conn, true));
        self.links.remove(&(conn, false));
    }

    /// The next event, advancing virtual time to it; `None` past `until`.
    pub(crate) fn pop(&mut self, until: Instant) -> Option<E> {
        let Reverse((at, id)) = *self.heap.peek()?;
        if at > until {
            return None;
        }
        self.heap.pop();
        self.now = at;
        self.events.remove(&id)
    }
}
