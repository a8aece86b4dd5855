//! An in-memory Redis with the semantics of the node's scripts: leases set `NX PX` with a fencing
//! counter, compare-and-extend, compare-and-delete, sessions stored only by the lease holder, and
//! one append-only stream per shard. Keys expire on virtual time, when a command arrives.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gateway_shard::ResumeInfo;

/// One stream entry, as a consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamEntry {
    pub(crate) name: String,
    pub(crate) session: String,
    pub(crate) seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Redis {
    /// Lease value and when it expires.
    leases: BTreeMap<u32, (String, Instant)>,
    fences: BTreeMap<u32, u64>,
    /// Stored session and the lease value that stored it.
    sessions: BTreeMap<u32, ResumeInfo>,
    /// Each stream's last entry and its fencing token.
    tops: BTreeMap<u32, (StreamEntry, u64)>,
}

/// What the publisher's APPEND script does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Added at the stream's next position.
    Added,
    /// At or below the stream's last `(session, seq)`: there already.
    Skipped,
    /// Under a lower fencing token than the stream's last entry: refused.
    Fenced,
}

impl Redis {
    fn live(&mut self, now: Instant, shard: u32) -> Option<&str> {
        if self.leases.get(&shard).is_some_and(|(_, at)| *at <= now) {
            self.leases.remove(&shard);
        }
        self.leases.get(&shard).map(|(v, _)| v.as_str())
    }

    /// ACQUIRE: the next fencing token if the lease was free.
    pub(crate) fn acquire(
        &mut self,
        now: Instant,
        node: &str,
        shard: u32,
        ttl: Duration,
    ) -> Option<u64> {
        if self.live(now, shard).is_some() {
            return None;
        }
        let token = self.fences.entry(shard).or_default();
        *token += 1;
        let token = *token;
        self.leases
            .insert(shard, (format!("{node}/{token}"), now + ttl));
        Some(token)
    }

    /// RENEW: extends the lease if it still holds `value`.
    pub(crate) fn renew(&mut self, now: Instant, shard: u32, value: &str, ttl: Duration) -> bool {
        if self.live(now, shard) != Some(value) {
            return false;
        }
        self.leases.insert(shard, (value.to_owned(), now + ttl));
        true
    }

    /// RELEASE: deletes the lease if it still holds `value`.
    pub(crate) fn release(&mut self, now: Instant, shard: u32, value: &str) {
        if self.live(now, shard) == Some(value) {
            self.leases.remove(&shard);
        }
    }

    /// SAVE: stores the session if the lease still holds `value`.
    pub(crate) fn save(
        &mut self,
        now: Instant,
        shard: u32,
        value: &str,
        info: &ResumeInfo,
    ) -> bool {
        if self.live(now, shard) != Some(value) {
            return false;
        }
        self.sessions.insert(shard, info.clone());
        true
    }

    /// APPEND, for one entry: refused under an older token than the stream's last entry's or
    /// one the fencing counter never gave; skipped if the stream has it (a dispatch at or below
    /// the last sequence of its session, a RESUMED below it, the last entry itself).
    pub(crate) fn append(&mut self, shard: u32, fence: u64, entry: &StreamEntry) -> Appended {
        if fence > self.fences.get(&shard).copied().unwrap_or(0) {
            return Appended::Fenced;
        }
        if let Some((top, top_fence)) = self.tops.get(&shard) {
            if fence < *top_fence {
                return Appended::Fenced;
            }
            let seq = entry.seq;
            if entry == top
                || (top.session == entry.session
                    && (seq < top.seq || (seq == top.seq && entry.name != "RESUMED")))
            {
                return Appended::Skipped;
            }
        }
        self.tops.insert(shard, (entry.clone(), fence));
        Appended::Added
    }

    /// HMGET of the stored session.
    pub(crate) fn load(&self, shard: u32) -> Option<ResumeInfo> {
        self.sessions.get(&shard).cloned()
    }
}

/// A consumer of one shard's stream: says when an entry leaves a gap or repeats one (the APPEND
/// script skips what the stream has, so the stream holds every event once).
#[derive(Debug, Default)]
pub(crate) struct StreamCheck {
    /// The last sequence seen per session.
    last: BTreeMap<String, u64>,
    pub(crate) entries: u64,
}

impl StreamCheck {
    pub(crate) fn see(&mut self, entry: &StreamEntry) -> Result<(), String> {
        self.entries += 1;
        if entry.name == "READY" {
            if entry.seq != 1 || self.last.contains_key(&entry.session) {
                return Err(format!("READY #{} of a session already started", entry.seq));
            }
            self.last.insert(entry.session.clone(), 1);
            return Ok(());
        }
        let Some(last) = self.last.get_mut(&entry.session) else {
            return Err(format!(
                "{} #{} of session {} before its READY",
                entry.name, entry.seq, entry.session
            ));
        };
        if entry.name == "RESUMED" && entry.seq == *last {
            // Where a resume picked up: a marker, at the last sequence.
        } else if entry.seq <= *last {
            return Err(format!(
                "{} #{} of session {} after #{}: a repeat in the stream",
                entry.name, entry.seq, entry.session, last
            ));
        } else if entry.seq == *last + 1 {
            *last = entry.seq;
        } else {
            return Err(format!(
                "{} #{} of session {} after #{}: a gap",
                entry.name, entry.seq, entry.session, last
            ));
        }
        Ok(())
    }

    /// The last sequence seen in `session`.
    pub(crate) fn last(&self, session: &str) -> Option<u64> {
        self.last.get(session).copied()
    }
}
