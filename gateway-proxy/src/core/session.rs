//! One client session: which shard, which intents, its own contiguous sequence numbers, and how
//! they map onto the shard's replay log, so that a RESUME with any sequence number the client
//! was sent finds where in the log to replay from.
//!
//! The session knows where it stands, `(seq, pos)`: the last sequence number sent, and the next
//! log entry to consider. A RESUME with an earlier `seq` walks the log back from there,
//! counting the entries this session got. Dispatches that are not in the log (READY and the
//! cache's GUILD_CREATEs at the start, RESUMED) took sequence numbers too: each is marked
//! `(seq, pos)`, so the walk steps over them; one that cannot be sent again (the start) ends the
//! walk: a RESUME from before it cannot be served.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_model::Intents;

use crate::log::{Entry, ReplayLog};
use crate::record::{RecordMark, SessionRecord};

/// Where a RESUME starts, or why it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeFrom {
    /// Replay from this log position, the next client sequence number being `seq + 1`.
    Pos(u64),
    /// The sequence number was never sent.
    Future,
    /// What followed it is no longer in the log (or it fell in the synthetic start).
    Gone,
}

/// A dispatch sent that is not in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Synthetic {
    seq: u64,
    pos: u64,
    /// It cannot be sent again (READY, the cache's GUILD_CREATEs): a RESUME from before it
    /// is refused.
    essential: bool,
}

/// A client session of one shard.
#[derive(Debug)]
pub(crate) struct ClientSession {
    pub(crate) id: Arc<str>,
    pub(crate) shard: u32,
    pub(crate) intents: Intents,
    /// The last sequence number sent to the client.
    pub(crate) seq: u64,
    /// The next log position to consider for it.
    pub(crate) pos: u64,
    synthetic: VecDeque<Synthetic>,
    /// The connection it is on, if any.
    pub(crate) client: Option<u64>,
    /// When its connection went, if it did.
    pub(crate) detached_at: Option<Instant>,
    /// Commands forwarded upstream in the last 60 s.
    pub(crate) forwarded: VecDeque<Instant>,
    /// A RESUME's replay is under way: RESUMED follows once it reaches the log's head.
    pub(crate) resuming: bool,
    /// Guilds whose GUILD_CREATE is still to be sent at the start, in the cache's order.
    pub(crate) pending: VecDeque<u64>,
    /// Guilds whose GUILD_CREATE went out with the log past the session's place, and that
    /// place: the guild's entries before it are in that GUILD_CREATE already, and this session
    /// does not get them (kept while the log holds them, for the RESUME walk). Keyed by guild,
    /// as `gets` asks it for every held entry.
    covered: HashMap<u64, u64>,
    /// The last position `covered` reaches: entries from there on are never skipped.
    covered_until: u64,
    /// When it was last written down for other processes while on a connection (or attached).
    pub(crate) recorded_at: Option<Instant>,
    /// It was sent something since that another process cannot count from its own log: a
    /// dispatch not from the log, or an answer addressed to it.
    pub(crate) changed: bool,
    /// Taken from another process's record: a RESUME may be past its place, and is found by
    /// walking the log forward (the record was written while its client was still reading).
    onward: bool,
}

impl ClientSession {
    pub(crate) fn new(id: Arc<str>, shard: u32, intents: Intents, client: u64) -> Self {
        Self {
            id,
            shard,
            intents,
            seq: 0,
            pos: 0,
            synthetic: VecDeque::new(),
            client: Some(client),
            detached_at: None,
            forwarded: VecDeque::new(),
            resuming: false,
            pending: VecDeque::new(),
            covered: HashMap::new(),
            covered_until: 0,
            recorded_at: None,
            changed: false,
            onward: false,
        }
    }

    /// Whether this session gets `entry`: its intents or its address say so, and no
    /// GUILD_CREATE it was sent holds it already.
    pub(crate) fn gets(&self, entry: &Entry) -> bool {
        if !entry.is_for(&self.id, self.intents) {
            return false;
        }
        // An answer to this session (a chunk, a RATE_LIMITED) is never in a GUILD_CREATE.
        let Some(held) = entry.held_by.filter(|_| entry.to.is_none()) else {
            return true;
        };
        if entry.pos >= self.covered_until
            || (held.with_presences && !self.intents.contains(Intents::GUILD_PRESENCES))
        {
            return true;
        }
        self.covered
            .get(&held.guild)
            .is_none_or(|upto| entry.pos >= *upto)
    }

    /// A GUILD_CREATE of `guild` goes out as the cache has it with the log at `head`: the
    /// guild's entries from the session's place up to there are in it.
    pub(crate) fn cover(&mut self, guild: u64, head: u64) {
        if head > self.pos {
            let upto = self.covered.entry(guild).or_insert(head);
            *upto = (*upto).max(head);
            self.covered_until = self.covered_until.max(head);
        }
    }

    /// A dispatch not from the log takes the next sequence number; `pos` is where the log
    /// stands. `essential`: it cannot be sent again.
    pub(crate) fn synthetic(&mut self, pos: u64, essential: bool) -> u64 {
        self.changed = true;
        self.seq += 1;
        self.pos = pos;
        self.synthetic.push_back(Synthetic {
            seq: self.seq,
            pos,
            essential,
        });
        self.seq
    }

    /// The log entry at `self.pos` is considered: if the session gets it, the sequence number
    /// it takes.
    pub(crate) fn advance(&mut self, gets: bool) -> Option<u64> {
        self.pos += 1;
        if !gets {
            return None;
        }
        self.seq += 1;
        Some(self.seq)
    }

    /// Forgets marks before the log's oldest entry (no walk reaches them), but the newest
    /// essential one.
    pub(crate) fn trim(&mut self, log: &ReplayLog) {
        while self.synthetic.len() > 1
            && self
                .synthetic
                .front()
                .is_some_and(|m| m.pos < log.first_pos())
        {
            self.synthetic.pop_front();
        }
        self.covered.retain(|_, upto| *upto > log.first_pos());
    }

    /// Written down when it was on a connection, and due again: once it settled after being
    /// sent what another process cannot count (`settle`), else every `refresh`. `None` while
    /// off a connection, starting, or resuming.
    pub(crate) fn record_due(&self, settle: Duration, refresh: Duration) -> Option<Instant> {
        if self.client.is_none() || self.resuming || !self.pending.is_empty() {
            return None;
        }
        let at = self.recorded_at?;
        Some(at + if self.changed { settle } else { refresh })
    }

    /// Where a RESUME with `seq` starts in `log`.
    pub(crate) fn resume_from(&self, seq: u64, log: &ReplayLog) -> ResumeFrom {
        if seq > self.seq {
            return match self.onward {
                true => self.forward_to(seq, log),
                false => ResumeFrom::Future,
            };
        }
        let (mut at, mut pos) = (self.seq, self.pos);
        let mut marks = self.synthetic.iter().rev().peekable();
        while at > seq {
            if let Some(mark) = marks.next_if(|m| m.seq == at && m.pos == pos) {
                if mark.essential {
                    return ResumeFrom::Gone;
                }
                at -= 1;
                continue;
            }
            // Marks past the walk's place are behind it now.
            while marks.next_if(|m| m.seq > at).is_some() {}
            let Some(entry) = pos.checked_sub(1).and_then(|p| log.get(p)) else {
                return ResumeFrom::Gone;
            };
            pos -= 1;
            if self.gets(entry) {
                at -= 1;
            }
        }
        if log.holds(pos) {
            ResumeFrom::Pos(pos)
        } else {
            ResumeFrom::Gone
        }
    }

    /// The session written down in upstream positions, for another process; `None` if its
    /// place is no longer in `log`.
    pub(crate) fn to_record(
        &self,
        log: &ReplayLog,
        ttl_ms: u64,
        origin: u64,
        now: Instant,
    ) -> Option<SessionRecord> {
        let forwarded_ms_ago = (self.forwarded.iter())
            .map(|at| now.saturating_duration_since(*at).as_millis())
            .filter(|ms| *ms < 60_000)
            .filter_map(|ms| u64::try_from(ms).ok())
            .collect();
        let marks = self
            .synthetic
            .iter()
            .filter_map(|m| {
                Some(RecordMark {
                    seq: m.seq,
                    upstream: log.upstream_before(m.pos)?,
                    essential: m.essential,
                })
            })
            .collect();
        let covered = self
            .covered
            .iter()
            .filter_map(|(guild, upto)| Some((*guild, log.upstream_before(*upto)?)))
            .collect();
        Some(SessionRecord {
            id: self.id.to_string(),
            shard: self.shard,
            intents: self.intents.bits(),
            seq: self.seq,
            upstream: log.upstream_before(self.pos)?,
            marks,
            covered,
            covered_until: log.upstream_before(self.covered_until).unwrap_or(0),
            pending: self.pending.iter().copied().collect(),
            ttl_ms,
            origin,
            forwarded_ms_ago,
        })
    }

    /// A session another process wrote down, placed in `log`, detached since `detached_at`,
    /// the record read at `read_at`; `None` if `log` does not reach back to its place.
    pub(crate) fn from_record(
        record: &SessionRecord,
        log: &ReplayLog,
        detached_at: Instant,
        read_at: Instant,
    ) -> Option<Self> {
        let forwarded = (record.forwarded_ms_ago.iter().rev())
            .filter_map(|ms| read_at.checked_sub(Duration::from_millis(*ms)))
            .collect();
        let pos = log.pos_after_upstream(record.upstream)?;
        let synthetic = record
            .marks
            .iter()
            .filter_map(|m| {
                Some(Synthetic {
                    seq: m.seq,
                    pos: log.pos_after_upstream(m.upstream)?,
                    essential: m.essential,
                })
            })
            .collect();
        let covered = record
            .covered
            .iter()
            .filter_map(|(guild, upto)| Some((*guild, log.pos_after_upstream(*upto)?)))
            .collect();
        Some(Self {
            id: record.id.as_str().into(),
            shard: record.shard,
            intents: Intents::from_bits_truncate(record.intents),
            seq: record.seq,
            pos,
            synthetic,
            client: None,
            detached_at: Some(detached_at),
            forwarded,
            resuming: false,
            pending: record.pending.iter().copied().collect(),
            covered,
            covered_until: log.pos_after_upstream(record.covered_until).unwrap_or(0),
            recorded_at: None,
            changed: false,
            onward: true,
        })
    }

    /// A record's place is behind the client's `seq`: the entries it got since, counted
    /// forward in `log` (what a record holds is all it was sent but log entries).
    fn forward_to(&self, seq: u64, log: &ReplayLog) -> ResumeFrom {
        let (mut at, mut pos) = (self.seq, self.pos);
        while at < seq {
            let Some(entry) = log.get(pos) else {
                // Past the head here: it got what this process has not read yet, or more.
                return ResumeFrom::Future;
            };
            pos += 1;
            if self.gets(entry) {
                at += 1;
            }
        }
        ResumeFrom::Pos(pos)
    }

    /// Rewinds to a RESUME's `seq` at log position `pos` (or moves on to it, for a session
    /// taken from a record).
    pub(crate) fn rewind(&mut self, seq: u64, pos: u64) {
        self.onward = false;
        self.seq = seq;
        self.pos = pos;
        while self.synthetic.back().is_some_and(|m| m.seq > seq) {
            self.synthetic.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log::LogLimits;

    fn log() -> ReplayLog {
        ReplayLog::new(LogLimits {
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(3600),
        })
    }

    /// Pushes entries (every third one for guild messages only) and lets the session take
    /// what it gets; returns the seq sent for each log position.
    fn feed(s: &mut ClientSession, log: &mut ReplayLog, n: u64) -> Vec<(u64, Option<u64>)> {
        let now = Instant::now();
        (0..n)
            .map(|i| {
                let required = if i % 3 == 0 {
                    Intents::GUILD_MESSAGES
                } else {
                    Intents::GUILDS
                };
                let pos = log.push(now, "E".into(), "{}".into(), required, None, None);
                assert_eq!(pos, s.pos);
                let gets = log.get(pos).is_some_and(|e| e.is_for(&s.id, s.intents));
                (pos, s.advance(gets))
            })
            .collect()
    }

    /// The sequence numbers a replay from `from` would send (log entries only).
    fn replay(s: &ClientSession, log: &ReplayLog, from: ResumeFrom, seq: u64) -> Vec<u64> {
        let ResumeFrom::Pos(from) = from else {
            panic!("seq {seq}: {from:?}")
        };
        let gets =
            (from..s.pos).filter(|p| log.get(*p).is_some_and(|e| e.is_for(&s.id, s.intents)));
        (seq + 1..).zip(gets).map(|(seq, _)| seq).collect()
    }

    #[test]
    fn every_sent_sequence_number_resumes_with_the_entries_after_it() {
        let mut log = log();
        let mut s = ClientSession::new("s".into(), 0, Intents::GUILDS, 1);
        s.synthetic(log.next_pos(), true); // READY
        s.synthetic(log.next_pos(), true); // a GUILD_CREATE from the cache
        let sent: Vec<u64> = feed(&mut s, &mut log, 2_000)
            .into_iter()
            .filter_map(|(_, s)| s)
            .collect();
        for (i, seq) in sent.iter().enumerate() {
            assert_eq!(
                replay(&s, &log, s.resume_from(*seq, &log), *seq),
                sent[i + 1..],
                "seq {seq}"
            );
        }
        assert_eq!(s.resume_from(s.seq + 1, &log), ResumeFrom::Future);
        assert_eq!(
            s.resume_from(1, &log),
            ResumeFrom::Gone,
            "inside the synthetic start"
        );
        assert_eq!(replay(&s, &log, s.resume_from(2, &log), 2), sent);
        // RESUMED takes a number but is sent again on the next RESUME: a walk steps over it.
        let before = s.seq;
        s.synthetic(log.next_pos(), false);
        let more: Vec<u64> = feed(&mut s, &mut log, 30)
            .into_iter()
            .filter_map(|(_, s)| s)
            .collect();
        // From before RESUMED the same entries come, numbered on from there.
        let renumbered: Vec<u64> = more.iter().map(|s| s - 1).collect();
        assert_eq!(
            replay(&s, &log, s.resume_from(before, &log), before),
            renumbered
        );
        assert_eq!(
            replay(&s, &log, s.resume_from(before + 1, &log), before + 1),
            more,
            "RESUMED itself"
        );
        assert_eq!(
            replay(&s, &log, s.resume_from(more[0], &log), more[0]),
            more[1..]
        );
    }

    #[test]
    fn a_trimmed_log_is_gone_and_rewinds_resequence() {
        let mut log = ReplayLog::new(LogLimits {
            max_bytes: 100 * (size_of::<Entry>() + 3),
            max_age: Duration::from_secs(3600),
        });
        let mut s = ClientSession::new("s".into(), 0, Intents::all(), 1);
        s.synthetic(log.next_pos(), true);
        feed(&mut s, &mut log, 1_000);
        s.trim(&log);
        assert_eq!(s.resume_from(10, &log), ResumeFrom::Gone);
        assert_eq!(s.resume_from(s.seq, &log), ResumeFrom::Pos(s.pos));
        let seq = s.seq - 5;
        let ResumeFrom::Pos(pos) = s.resume_from(seq, &log) else {
            panic!("recent seq gone")
        };
        s.rewind(seq, pos);
        assert_eq!(s.resume_from(seq, &log), ResumeFrom::Pos(pos));
    }
}
