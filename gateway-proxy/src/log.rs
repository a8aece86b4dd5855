//! A shard's replay log: every dispatch the upstream sent, in order, under the proxy's own
//! positions, bounded in bytes and in age. Each client reads it through a cursor, so a client
//! that falls behind costs no memory of its own, and a RESUME replays from it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_model::Intents;

use crate::cache::Held;

/// One dispatch in the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The position: one more than the entry before it, across upstream sessions.
    pub pos: u64,
    /// When it entered the log.
    pub at: Instant,
    /// The event name.
    pub name: Arc<str>,
    /// Its `d`, as the upstream sent it.
    pub data: Arc<str>,
    /// The intents of which a client needs one to get it (empty: every client).
    pub required: Intents,
    /// The one client session it is for (a member chunk, a voice server), or every session.
    pub to: Option<Arc<str>>,
    /// The guild whose cached GUILD_CREATE holds all the entry says, once the entry is applied
    /// (a session sent that GUILD_CREATE afterwards does not get the entry).
    pub held_by: Option<Held>,
    /// The upstream position it came from ([`ReplayLog::set_upstream`]): on a cluster, its
    /// place in the shard's stream, the same in every proxy process.
    pub upstream: u64,
}

impl Entry {
    /// Bytes the entry holds, as the log counts them.
    pub fn size(&self) -> usize {
        self.name.len() + self.data.len() + size_of::<Self>()
    }

    /// Whether the client session `session`, identified with `intents`, gets it.
    pub fn is_for(&self, session: &str, intents: Intents) -> bool {
        match &self.to {
            Some(to) => &**to == session,
            None => crate::intents::delivers(intents, self.required),
        }
    }
}

/// The log's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes of entries kept.
    pub max_bytes: usize,
    /// Age of the oldest entry kept.
    pub max_age: Duration,
}

/// A shard's replay log.
#[derive(Debug)]
pub struct ReplayLog {
    limits: LogLimits,
    entries: VecDeque<Entry>,
    /// The position the next entry takes.
    next: u64,
    bytes: usize,
    /// The upstream position entries pushed now come from.
    upstream: u64,
    /// The newest entry's upstream position, once one was pushed.
    last_upstream: Option<u64>,
    /// The log holds every entry from this upstream position on.
    complete_from: Option<u64>,
    /// Entries from this log position on are numbered upstream in order; the ones before it
    /// came before the upstream numbering started again (a Redis that lost the streams).
    numbered_from: u64,
}

impl ReplayLog {
    /// An empty log whose first entry takes position 1.
    pub fn new(limits: LogLimits) -> Self {
        Self {
            limits,
            entries: VecDeque::new(),
            next: 1,
            bytes: 0,
            upstream: 0,
            last_upstream: None,
            complete_from: None,
            numbered_from: 0,
        }
    }

    /// The entries pushed from now on come from upstream position `upstream` (one upstream
    /// dispatch may make several entries, or none).
    ///
    /// A position below the last one starts the numbering again (the upstream's stream was
    /// lost and written anew): the entries before it are no longer found by position.
    pub fn set_upstream(&mut self, upstream: u64) {
        if self.last_upstream.is_some_and(|last| upstream < last) {
            self.numbered_from = self.next;
            self.last_upstream = None;
            self.complete_from = Some(upstream);
        }
        self.upstream = upstream;
        self.complete_from.get_or_insert(upstream);
    }

    /// The upstream position up to which a cursor at `pos` has considered everything: the one
    /// of the entry before it.
    pub fn upstream_before(&self, pos: u64) -> Option<u64> {
        if pos > self.numbered_from
            && let Some(entry) = pos.checked_sub(1).and_then(|p| self.get(p))
        {
            return Some(entry.upstream);
        }
        if pos == self.next {
            return self
                .last_upstream
                .or(self.complete_from.map(|c| c.saturating_sub(1)));
        }
        self.complete_from
            .filter(|_| pos == self.first_pos().max(self.numbered_from))
            .map(|c| c.saturating_sub(1))
    }

    /// Where a cursor that considered everything up to upstream position `upstream` stands in
    /// this log; `None` when the log does not reach back that far.
    pub fn pos_after_upstream(&self, upstream: u64) -> Option<u64> {
        let complete_from = self.complete_from?;
        if upstream.saturating_add(1) < complete_from {
            return None;
        }
        let numbered_from = self.numbered_from;
        let index =
            (self.entries).partition_point(|e| e.pos < numbered_from || e.upstream <= upstream);
        Some(self.first_pos() + index as u64)
    }

    /// Appends a dispatch at `now`, dropping what falls out of the bounds; its position.
    pub fn push(
        &mut self,
        now: Instant,
        name: Arc<str>,
        data: Arc<str>,
        required: Intents,
        to: Option<Arc<str>>,
        held_by: Option<Held>,
    ) -> u64 {
        let pos = self.next;
        self.next += 1;
        let entry = Entry {
            pos,
            at: now,
            name,
            data,
            required,
            to,
            held_by,
            upstream: self.upstream,
        };
        self.last_upstream = Some(self.upstream);
        self.bytes += entry.size();
        self.entries.push_back(entry);
        self.trim(now);
        pos
    }

    /// Drops entries past the bounds (the newest always stays).
    pub fn trim(&mut self, now: Instant) {
        while self.entries.len() > 1
            && let Some(first) = self.entries.front()
            && (self.bytes > self.limits.max_bytes
                || now.saturating_duration_since(first.at) > self.limits.max_age)
        {
            self.bytes -= first.size();
            if first.pos >= self.numbered_from {
                self.complete_from = Some(first.upstream + 1);
            }
            self.entries.pop_front();
        }
    }

    /// The position the next entry will take (one past the newest).
    pub fn next_pos(&self) -> u64 {
        self.next
    }

    /// The oldest position still held (`next_pos` when empty).
    pub fn first_pos(&self) -> u64 {
        self.entries.front().map_or(self.next, |e| e.pos)
    }

    /// Whether `pos` (an entry, or `next_pos`) can still be read from.
    pub fn holds(&self, pos: u64) -> bool {
        pos >= self.first_pos() && pos <= self.next
    }

    /// The entry at `pos`, if held.
    pub fn get(&self, pos: u64) -> Option<&Entry> {
        let index = pos.checked_sub(self.first_pos())?;
        self.entries.get(usize::try_from(index).ok()?)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the oldest entry ages out, if any does.
    pub fn expiry(&self) -> Option<Instant> {
        (self.entries.len() > 1)
            .then(|| self.entries.front().map(|e| e.at + self.limits.max_age))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(max_bytes: usize) -> ReplayLog {
        ReplayLog::new(LogLimits {
            max_bytes,
            max_age: Duration::from_secs(60),
        })
    }

    #[test]
    fn positions_are_contiguous_and_bounded_in_bytes_and_age() {
        let now = Instant::now();
        let mut l = log(10 * (size_of::<Entry>() + 10));
        for i in 0..100 {
            let pos = l.push(
                now,
                "EVENT".into(),
                "{}".into(),
                Intents::empty(),
                None,
                None,
            );
            assert_eq!(pos, i + 1);
        }
        assert!(l.len() <= 11 && l.len() >= 9, "{}", l.len());
        assert_eq!(l.next_pos(), 101);
        assert_eq!(l.get(100).map(|e| e.pos), Some(100));
        assert!(l.get(1).is_none());
        assert!(l.holds(101) && !l.holds(1));
        l.trim(now + Duration::from_secs(61));
        assert_eq!(l.len(), 1, "the newest stays");
        assert_eq!(l.first_pos(), 100);
    }

    #[test]
    fn upstream_numbering_that_starts_again_leaves_the_older_entries_unmapped() {
        let mut l = log(1 << 20);
        let t = Instant::now();
        for upstream in [40, 41] {
            l.set_upstream(upstream);
            l.push(t, "A".into(), "{}".into(), Intents::empty(), None, None);
        }
        assert_eq!(l.pos_after_upstream(40), Some(2));
        // The stream was written anew from 1.
        for upstream in [1, 2] {
            l.set_upstream(upstream);
            l.push(t, "B".into(), "{}".into(), Intents::empty(), None, None);
        }
        assert_eq!(
            l.pos_after_upstream(1),
            Some(4),
            "after the new first entry"
        );
        assert_eq!(l.pos_after_upstream(0), Some(3), "at the restart");
        assert_eq!(l.upstream_before(3), Some(0), "the restart's place");
        assert_eq!(l.upstream_before(5), Some(2), "at the head");
        assert_eq!(l.upstream_before(2), None, "before the restart: unmapped");
    }

    #[test]
    fn upstream_positions_map_cursors_between_logs() {
        let now = Instant::now();
        // Upstream 10 made two entries here (two askers), 11 none, 12 one.
        let mut l = log(1 << 20);
        assert_eq!(l.pos_after_upstream(9), None, "nothing fed yet");
        for (upstream, n) in [(10, 2), (11, 0), (12, 1)] {
            l.set_upstream(upstream);
            for _ in 0..n {
                l.push(now, "E".into(), "{}".into(), Intents::empty(), None, None);
            }
        }
        assert_eq!(l.upstream_before(1), Some(9), "before everything");
        assert_eq!(l.upstream_before(3), Some(10));
        assert_eq!(l.upstream_before(4), Some(12), "at the head");
        assert_eq!(l.pos_after_upstream(9), Some(1));
        assert_eq!(l.pos_after_upstream(10), Some(3));
        assert_eq!(l.pos_after_upstream(11), Some(3));
        assert_eq!(l.pos_after_upstream(12), Some(4));
        assert_eq!(l.pos_after_upstream(8), None, "from before the log");
        // Another process's log of the same stream, with no entry for upstream 10.
        let mut other = log(1 << 20);
        for upstream in [10, 11, 12] {
            other.set_upstream(upstream);
            if upstream == 12 {
                other.push(now, "E".into(), "{}".into(), Intents::empty(), None, None);
            }
        }
        let mapped = other.pos_after_upstream(l.upstream_before(3).unwrap());
        assert_eq!(
            mapped.and_then(|p| other.get(p)).map(|e| e.upstream),
            Some(12)
        );
    }

    #[test]
    fn addressed_entries_reach_their_session_alone() {
        let now = Instant::now();
        let mut l = log(1 << 20);
        l.push(
            now,
            "GUILD_MEMBERS_CHUNK".into(),
            "{}".into(),
            Intents::empty(),
            Some("a".into()),
            None,
        );
        let e = l.get(1).unwrap();
        assert!(e.is_for("a", Intents::empty()));
        assert!(!e.is_for("b", Intents::all()));
    }
}
