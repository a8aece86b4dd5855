//! The state every connection shares: sessions, records, counters, identify buckets and the
//! session start budget (held by the sans-IO core), and the read-only views tests get of it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_model::{Intents, ShardId, Snowflake};

use crate::session_start::SessionStarts;
use crate::{ConnectionInfo, Fault, Recorded, Stats};

/// A session the server knows.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) shard: ShardId,
    pub(crate) intents: Intents,
    pub(crate) large_threshold: usize,
    /// The last sequence number sent.
    pub(crate) seq: u64,
    /// The last dispatches sent, `(seq, payload)`, for RESUME.
    pub(crate) buffer: VecDeque<(u64, Arc<str>)>,
    /// The connection it is attached to.
    pub(crate) connection: Option<u64>,
    /// When its connection went away.
    pub(crate) detached_at: Option<Instant>,
}

/// Everything the connections share.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) stats: Stats,
    pub(crate) recorded: Vec<Recorded>,
    pub(crate) connections: Vec<ConnectionInfo>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) next_connection_faults: VecDeque<Fault>,
    /// Last identify per concurrency bucket.
    pub(crate) identify_buckets: HashMap<u32, Instant>,
    /// Last full member request per guild (the limit is per bot).
    pub(crate) full_member_requests: HashMap<Snowflake, Instant>,
    pub(crate) sessions_started: u64,
    /// Guilds that started unavailable and were made available.
    pub(crate) made_available: HashSet<Snowflake>,
    /// The session start budget.
    pub(crate) session_starts: SessionStarts,
    /// Connection tasks that panicked.
    pub(crate) task_failures: u64,
    /// Open connections whose session another connection just resumed: the core closes them
    /// once the input that resumed is handled.
    pub(crate) superseded: Vec<u64>,
}

impl State {
    pub(crate) fn connection_mut(&mut self, id: u64) -> Option<&mut ConnectionInfo> {
        self.connections.iter_mut().rev().find(|c| c.id == id)
    }

    /// Records a payload, forgetting the oldest ones past `limit` (an eighth at a time).
    pub(crate) fn record(&mut self, recorded: Recorded, limit: usize) {
        if self.recorded.len() >= limit.max(1) {
            let excess = self.recorded.len() + 1 - limit.max(1);
            let drop = excess.max(limit / 8).min(self.recorded.len());
            self.recorded.drain(..drop);
        }
        self.recorded.push(recorded);
    }

    /// Adds a connection, forgetting the oldest closed ones past `limit`.
    pub(crate) fn add_connection(&mut self, info: ConnectionInfo, limit: usize) {
        if self.connections.len() >= limit.max(1) {
            let mut excess = (self.connections.len() + 1 - limit.max(1)).max(limit / 8);
            self.connections.retain(|c| {
                if excess > 0 && !c.open {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.connections.push(info);
    }

    /// Forgets sessions detached for longer than `ttl`; returns how many.
    pub(crate) fn expire_sessions(&mut self, now: Instant, ttl: Duration) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| {
            s.connection.is_some() || s.detached_at.is_none_or(|t| now.duration_since(t) <= ttl)
        });
        before - self.sessions.len()
    }
}

/// How much the server holds now: what a long run must bring back down (see
/// [`FakeGateway::state_counts`](crate::FakeGateway::state_counts)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StateCounts {
    /// Connections open now (websocket and HTTP).
    pub open_connections: usize,
    /// Control channels of live connections.
    pub controls: usize,
    /// Sessions known, resumable or live.
    pub sessions: usize,
    /// Connections remembered (bounded by [`GatewayConfig::history_limit`](crate::GatewayConfig::history_limit)).
    pub connection_history: usize,
    /// Payloads recorded (bounded by [`GatewayConfig::history_limit`](crate::GatewayConfig::history_limit)).
    pub recorded: usize,
    /// Faults queued for next connections.
    pub queued_faults: usize,
    /// Connection tasks that panicked (always 0, unless the testkit has a bug).
    pub task_failures: u64,
}

/// A read-only view of the server's state, handed to
/// [`FakeGateway::wait_for`](crate::FakeGateway::wait_for) predicates.
#[derive(Debug)]
pub struct View<'a> {
    state: &'a State,
}

impl<'a> View<'a> {
    pub(crate) fn new(state: &'a State) -> Self {
        Self { state }
    }
    /// The counters.
    pub fn stats(&self) -> Stats {
        self.state.stats
    }

    /// Every payload clients sent, in order.
    pub fn recorded(&self) -> &[Recorded] {
        &self.state.recorded
    }

    /// Every connection, in accept order.
    pub fn connections(&self) -> &[ConnectionInfo] {
        &self.state.connections
    }
}
