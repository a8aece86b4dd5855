//! The invariants every run is held to, checked as events happen and once at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gateway_chunking::ChunkEvent;
use gateway_shard::ShardEvent;

/// One shard's stream as its user sees it: every dispatch of a session once, in order, across
/// resumes; a new session marked by READY (sequence 1).
#[derive(Debug, Default)]
pub(crate) struct Stream {
    expected: Option<u64>,
    /// The session the user is in.
    pub(crate) session: Option<String>,
    /// The last sequence number the user got.
    pub(crate) last: u64,
    pub(crate) readies: u64,
    pub(crate) resumes: u64,
    pub(crate) dispatches: u64,
}

impl Stream {
    /// Checks one event; says what is wrong.
    pub(crate) fn see(&mut self, event: &ShardEvent) -> Result<(), String> {
        match event {
            ShardEvent::Ready(ready) => {
                self.readies += 1;
                self.session = Some(ready.session_id.clone());
                self.expected = Some(2);
                self.last = 1;
            }
            // RESUMED takes a sequence number of its own, as Discord's does.
            ShardEvent::Resumed { .. } => {
                self.resumes += 1;
                let Some(expected) = self.expected else {
                    return Err("RESUMED before any READY".to_owned());
                };
                self.last = expected;
                self.expected = Some(expected + 1);
            }
            ShardEvent::Dispatch(d) => {
                let Some(expected) = self.expected else {
                    return Err(format!("dispatch #{} before READY", d.seq));
                };
                if d.seq != expected {
                    return Err(format!(
                        "dispatch #{} where #{expected} was due: a {}",
                        d.seq,
                        if d.seq < expected { "repeat" } else { "gap" }
                    ));
                }
                self.last = d.seq;
                self.expected = Some(expected + 1);
                self.dispatches += 1;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Member requests: each one sent resolves exactly once; each READY's chunking finishes once,
/// and the whole bot's once.
#[derive(Debug, Default)]
pub(crate) struct Chunking {
    /// Nonces sent, and how often each finished.
    requests: BTreeMap<String, u32>,
    pub(crate) shard_finished: BTreeMap<u32, u64>,
    pub(crate) finished: u64,
    pub(crate) outcomes: BTreeMap<String, u64>,
}

impl Chunking {
    pub(crate) fn sent(&mut self, nonce: Option<&str>) {
        if let Some(nonce) = nonce {
            self.requests.entry(nonce.to_owned()).or_insert(0);
        }
    }

    pub(crate) fn see(&mut self, event: &ChunkEvent) -> Result<(), String> {
        match event {
            ChunkEvent::RequestFinished(done) => {
                *self
                    .outcomes
                    .entry(format!("{:?}", done.outcome))
                    .or_default() += 1;
                if let Some(count) = self.requests.get_mut(&done.nonce) {
                    *count += 1;
                    if *count > 1 {
                        return Err(format!("request {} finished twice", done.nonce));
                    }
                }
            }
            ChunkEvent::ShardFinishedChunking { shard, .. } => {
                *self.shard_finished.entry(*shard).or_default() += 1;
            }
            ChunkEvent::FinishedChunking { .. } => {
                self.finished += 1;
                if self.finished > 1 {
                    return Err("\"finished chunking\" twice in one start".to_owned());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Requests sent that never finished.
    pub(crate) fn unresolved(&self) -> Vec<&str> {
        self.requests
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(nonce, _)| nonce.as_str())
            .collect()
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.len()
    }
}

/// Identifies as the gateway receives them: never two in one bucket within its window.
#[derive(Debug)]
pub(crate) struct Identifies {
    window: Duration,
    max_concurrency: u32,
    last: BTreeMap<u32, Instant>,
    pub(crate) count: u64,
}

impl Identifies {
    pub(crate) fn new(window: Duration, max_concurrency: u32) -> Self {
        Self {
            window,
            max_concurrency: max_concurrency.max(1),
            last: BTreeMap::new(),
            count: 0,
        }
    }

    pub(crate) fn arrived(&mut self, shard: u32, now: Instant) -> Result<(), String> {
        self.count += 1;
        let bucket = shard % self.max_concurrency;
        if let Some(last) = self.last.insert(bucket, now) {
            let gap = now.duration_since(last);
            if gap < self.window {
                return Err(format!(
                    "two identifies in bucket {bucket} {gap:?} apart (window {:?})",
                    self.window
                ));
            }
        }
        Ok(())
    }
}
