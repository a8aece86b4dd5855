//! The node's sans-IO core: every lease, renewal, stop-by deadline, session save, publish and
//! handoff decision of a [`ClusterNode`](crate::ClusterNode), with no Redis, no tokio and no
//! clock. Time is an input, Redis's answers are inputs, the shards' events are inputs; what to do
//! is polled. The tokio driver (`node.rs`) runs it over Redis; `gateway-sim` runs the same core
//! over an in-memory Redis on virtual time, under faults.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use gateway_cluster::core::{
//!     Acquired, CoreConfig, NodeCore, NodeEvent, NodeOutput, UpkeepDone,
//! };
//! use gateway_cluster::Lease;
//!
//! let t0 = Instant::now();
//! let mut core = NodeCore::new(CoreConfig::new("node-a", 4), t0);
//! // The first round of upkeep is due at once: nothing to renew, four shards to try.
//! core.handle_timeout(t0);
//! let Some(NodeOutput::Upkeep(round)) = core.poll_output(t0) else { panic!() };
//! assert_eq!(round.candidates.len(), 4);
//! // Redis gave shard 2's lease (token 1), with no stored session: start it fresh.
//! let lease = Lease::new("node-a", 2, 1, t0);
//! core.handle_upkeep(t0, UpkeepDone {
//!     renewed: vec![],
//!     acquired: vec![Acquired { lease, session: Ok(None) }],
//! });
//! // The operator hears of it, and the driver starts the shard.
//! assert!(matches!(core.poll_output(t0), Some(NodeOutput::Event(NodeEvent::Took { shard: 2, .. }))));
//! assert!(matches!(core.poll_output(t0), Some(NodeOutput::Start { resuming: None, .. })));
//! // Unless a renewal succeeds, the shard must stop by TTL less margin from the take.
//! let deadline = core.poll_timeout().unwrap();
//! assert!(deadline <= t0 + Duration::from_secs(10));
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_model::DispatchEvent;
use gateway_shard::{ResumeInfo, ShardEvent};

use crate::entry::Entry;
use crate::lease::Lease;

mod event;
#[cfg(test)]
mod tests;

pub use event::NodeEvent;

/// The core's settings: the parts of [`NodeConfig`](crate::NodeConfig) that decide anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// This node's name (unique among the application's nodes).
    pub node: String,
    /// The bot's shard count.
    pub total: u32,
    /// The most shards this node runs.
    pub max_shards: u32,
    /// How long a lease lives without renewal; renewed every third of it.
    pub lease_ttl: Duration,
    /// How much earlier than the TTL a node that could not renew stops its shard.
    pub lease_margin: Duration,
    /// How often each shard's session is stored while it runs (a new session's first write
    /// is stored at once).
    pub save_every: Duration,
}

impl CoreConfig {
    /// Node `node` of a bot of `total` shards, with the defaults (10 s leases, 2 s margin, a save
    /// a second, every shard if it can).
    pub fn new(node: impl Into<String>, total: u32) -> Self {
        Self {
            node: node.into(),
            total: total.max(1),
            max_shards: total.max(1),
            lease_ttl: Duration::from_secs(10),
            lease_margin: Duration::from_secs(2),
            save_every: Duration::from_secs(1),
        }
    }

    /// How often leases are renewed and free ones looked for.
    pub fn upkeep_every(&self) -> Duration {
        (self.lease_ttl / 3).max(Duration::from_millis(20))
    }

    /// How long a Redis call may take before it counts as failed.
    pub fn call_limit(&self) -> Duration {
        (self.lease_ttl / 4).max(Duration::from_millis(50))
    }
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeOutput {
    /// Renew these leases (all at once), then take free ones among `candidates`, in order, up to
    /// `room`, loading each one's stored session; answer with [`NodeCore::handle_upkeep`].
    Upkeep(UpkeepRequest),
    /// Start this shard on this lease, resuming the session if one is given.
    Start {
        /// The lease.
        lease: Lease,
        /// The stored session to resume.
        resuming: Option<ResumeInfo>,
    },
    /// Stop this shard now, resumably: its lease is (or may soon be) another node's.
    Stop {
        /// The shard.
        shard: u32,
    },
    /// Let this lease go (compare-and-delete); nothing answers.
    Release(Lease),
    /// Store these sessions, each only if its lease still holds; answer with
    /// [`NodeCore::handle_saved`].
    Save(Vec<(Lease, ResumeInfo)>),
    /// Append this entry to its shard's stream; report what was written with
    /// [`NodeCore::handle_written`].
    Publish(Entry),
    /// Shutting down: close these shards resumably, and report each one's session with
    /// [`NodeCore::handle_closed`].
    Close(Vec<u32>),
    /// Shutting down: hand on every event the shards delivered, write everything queued, then
    /// call [`NodeCore::handle_flushed`].
    Flush,
    /// Shutting down: store each session (when there is one), then release each lease, in that
    /// order; then call [`NodeCore::handle_handed_off`].
    Handoff(Vec<(Lease, Option<ResumeInfo>)>),
    /// Something for the operator.
    Event(NodeEvent),
    /// The node is done: every shard handed over. Nothing more comes.
    Stopped,
}

/// One round of lease upkeep for the driver to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpkeepRequest {
    /// Held leases to renew.
    pub renew: Vec<Lease>,
    /// Shards to try, in order.
    pub candidates: Vec<u32>,
    /// The most leases to take.
    pub room: usize,
}

/// What one round of upkeep found in Redis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpkeepDone {
    /// Each renewal, as it went.
    pub renewed: Vec<Renewal>,
    /// Leases taken, each with its stored session (or why it could not be read).
    pub acquired: Vec<Acquired>,
}

/// One lease renewal's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// The shard.
    pub shard: u32,
    /// The lease's fencing token.
    pub token: u64,
    /// When the renewal was sent (the lease counts from there when it held).
    pub sent: Instant,
    /// How it went.
    pub outcome: Renewed,
}

/// How a renewal went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renewed {
    /// The lease is extended.
    Held,
    /// The lease is no longer this node's.
    Lost,
    /// Redis did not answer (in time): the stop-by deadline decides.
    Failed(String),
}

/// A lease taken in a round of upkeep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// The lease.
    pub lease: Lease,
    /// The shard's stored session, or why it could not be read.
    pub session: Result<Option<ResumeInfo>, String>,
}

/// A shard this node holds.
#[derive(Debug)]
struct Held {
    lease: Lease,
    /// The session its events belong to: `(session id, resume URL)`.
    session: Option<(Arc<str>, String)>,
    /// The last sequence stored.
    saved: u64,
}

/// Where the node is in its life.
#[derive(Debug)]
enum Phase {
    Running,
    /// Waiting for these shards to close; the sessions they closed with.
    Closing {
        left: BTreeSet<u32>,
        closed: BTreeMap<u32, ResumeInfo>,
    },
    /// Waiting for every event to be written.
    Flushing {
        closed: BTreeMap<u32, ResumeInfo>,
    },
    /// Waiting for the sessions to be stored and the leases released.
    HandingOff(Vec<(u32, Option<ResumeInfo>)>),
    Stopped,
}

/// One node's decisions (see the [module docs](self)).
#[derive(Debug)]
pub struct NodeCore {
    config: CoreConfig,
    held: BTreeMap<u32, Held>,
    /// The last `(session, seq)` written per shard.
    written: BTreeMap<u32, (Arc<str>, u64)>,
    outputs: VecDeque<NodeOutput>,
    phase: Phase,
    /// When the next round of upkeep is due, unless one is out.
    upkeep_at: Instant,
    upkeep_out: bool,
    save_at: Instant,
    saving: bool,
}

impl NodeCore {
    /// A node that holds nothing yet; its first upkeep is due at `now`.
    pub fn new(config: CoreConfig, now: Instant) -> Self {
        Self {
            save_at: now + config.save_every,
            config,
            held: BTreeMap::new(),
            written: BTreeMap::new(),
            outputs: VecDeque::new(),
            phase: Phase::Running,
            upkeep_at: now,
            upkeep_out: false,
            saving: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The shards held, with their fencing tokens.
    pub fn held(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.held.iter().map(|(id, h)| (*id, h.lease.token))
    }

    /// Whether the node stopped.
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// The next thing to do.
    pub fn poll_output(&mut self, _now: Instant) -> Option<NodeOutput> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_stopped() {
            return None;
        }
        let stop_by = self.held.values().map(|h| self.stop_by(&h.lease)).min();
        let upkeep = (!self.upkeep_out).then_some(self.upkeep_at);
        let save = (!self.saving && matches!(self.phase, Phase::Running)).then_some(self.save_at);
        [stop_by, upkeep, save].into_iter().flatten().min()
    }

    /// Another node released a lease (its release notice): with room for a shard, the next
    /// round of upkeep is due now (or as soon as the one out comes back), not at its interval.
    pub fn handle_release_notice(&mut self, now: Instant) {
        let room = self.held.len() < self.config.max_shards as usize;
        if matches!(self.phase, Phase::Running) && room {
            self.upkeep_at = self.upkeep_at.min(now);
        }
    }

    /// Time passed: stops the shards whose lease could not be renewed in time, and starts the
    /// rounds of upkeep and saves that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_stopped() {
            return;
        }
        let late: Vec<u32> = (self.held.iter())
            .filter(|(_, h)| self.stop_by(&h.lease) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.lose(id, "the lease could not be renewed in time");
        }
        if !self.upkeep_out && self.upkeep_at <= now {
            self.upkeep_out = true;
            self.upkeep_at = now + self.config.upkeep_every();
            let request = self.upkeep_request();
            self.outputs.push_back(NodeOutput::Upkeep(request));
        }
        if !self.saving && matches!(self.phase, Phase::Running) && self.save_at <= now {
            self.save_at = now + self.config.save_every.max(Duration::from_millis(10));
            let saves = self.due_saves();
            if !saves.is_empty() {
                self.saving = true;
                self.outputs.push_back(NodeOutput::Save(saves));
            }
        }
    }

    fn stop_by(&self, lease: &Lease) -> Instant {
        lease.stop_by(self.config.lease_ttl, self.config.lease_margin)
    }

    /// Renew everything held; while running, look for free shards, each node from its own
    /// starting point so that nodes spread out.
    fn upkeep_request(&self) -> UpkeepRequest {
        let renew = self.held.values().map(|h| h.lease.clone()).collect();
        if !matches!(self.phase, Phase::Running) {
            return UpkeepRequest {
                renew,
                candidates: Vec::new(),
                room: 0,
            };
        }
        let total = self.config.total;
        let offset = (self.config.node.bytes())
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let candidates = (0..total)
            .map(|i| offset.wrapping_add(i) % total)
            .filter(|id| !self.held.contains_key(id))
            .collect();
        let room = (self.config.max_shards as usize).saturating_sub(self.held.len());
        UpkeepRequest {
            renew,
            candidates,
            room,
        }
    }

    /// A round of upkeep came back: confirms the renewed leases, stops the shards whose lease is
    /// gone, starts the shards newly leased.
    pub fn handle_upkeep(&mut self, now: Instant, done: UpkeepDone) {
        self.upkeep_out = false;
        for renewal in done.renewed {
            let Some(h) =
                (self.held.get_mut(&renewal.shard)).filter(|h| h.lease.token == renewal.token)
            else {
                continue;
            };
            match renewal.outcome {
                Renewed::Held => h.lease.confirm(renewal.sent),
                Renewed::Lost => self.lose(renewal.shard, "the lease is another node's now"),
                // The deadline decides: a renewal may still succeed in time.
                Renewed::Failed(e) => {
                    tracing::warn!(shard = renewal.shard, error = %e, "lease renewal failed");
                }
            }
        }
        for acquired in done.acquired {
            self.take(acquired);
        }
        // A renewal that came back past the deadline does not save a lease.
        self.handle_timeout(now);
    }

    fn take(&mut self, Acquired { lease, session }: Acquired) {
        let id = lease.shard;
        let resuming = match session {
            Ok(resuming)
                if matches!(self.phase, Phase::Running) && !self.held.contains_key(&id) =>
            {
                resuming
            }
            Ok(_) => {
                // Taken while shutting down, or twice: not this node's to run.
                self.outputs.push_back(NodeOutput::Release(lease));
                return;
            }
            Err(e) => {
                tracing::error!(shard = id, error = %e, "cannot read the stored session; letting the lease go");
                self.outputs.push_back(NodeOutput::Release(lease));
                return;
            }
        };
        let session =
            (resuming.as_ref()).map(|r| (Arc::from(r.session_id.as_str()), r.resume_url.clone()));
        let saved = resuming.as_ref().map_or(0, |r| r.sequence);
        self.outputs.push_back(NodeOutput::Event(NodeEvent::Took {
            shard: id,
            token: lease.token,
            resuming: resuming.clone(),
        }));
        self.outputs.push_back(NodeOutput::Start {
            lease: lease.clone(),
            resuming,
        });
        let held = Held {
            lease,
            session,
            saved,
        };
        self.held.insert(id, held);
    }

    /// The driver could not start `shard` (its configuration was refused): its lease goes back.
    pub fn handle_start_failed(&mut self, _now: Instant, shard: u32, reason: &str) {
        if let Some(h) = self.held.remove(&shard) {
            tracing::error!(shard, %reason, "cannot start the shard; letting the lease go");
            self.outputs.push_back(NodeOutput::Release(h.lease));
            self.outputs.push_back(NodeOutput::Event(NodeEvent::Lost {
                shard,
                reason: format!("it could not start: {reason}"),
            }));
            self.closed(shard, None);
        }
    }

    /// Stops a shard whose lease is (or may be) another node's: at once, still resumable by
    /// that node.
    fn lose(&mut self, shard: u32, reason: &str) {
        if self.held.remove(&shard).is_none() {
            return;
        }
        tracing::warn!(shard, %reason, "lease lost: shard stopped");
        self.written.remove(&shard);
        self.outputs.push_back(NodeOutput::Stop { shard });
        self.outputs.push_back(NodeOutput::Event(NodeEvent::Lost {
            shard,
            reason: reason.to_owned(),
        }));
        // Shutting down, it is not this node's to hand over any more.
        self.closed(shard, None);
    }

    /// One event of a shard this node runs: published if it is a dispatch (or READY or
    /// RESUMED), told to the operator if it is news.
    pub fn handle_shard_event(&mut self, now: Instant, shard: u32, event: ShardEvent) {
        let Some(h) = self.held.get_mut(&shard) else {
            // A shard this node stopped, still closing: its events are not this node's.
            return;
        };
        let fence = h.lease.token;
        let entry = |name: &'static str, session: &Arc<str>, seq, data: Box<str>| Entry {
            name: name.into(),
            shard,
            session: Arc::clone(session),
            seq,
            fence,
            data,
            queued: now,
        };
        let (news, published) = match event {
            ShardEvent::Ready(ready) => {
                let session: Arc<str> = ready.session_id.as_str().into();
                h.session = Some((Arc::clone(&session), ready.resume_gateway_url.clone()));
                h.saved = 0;
                // READY's `d` as the gateway sent it (empty for one built, not read): what a
                // reader of the stream (a proxy) serves its clients from.
                let data = ready
                    .raw
                    .as_ref()
                    .map(|r| r.get().into())
                    .unwrap_or_default();
                let entry = entry("READY", &session, 1, data);
                (Some(ShardEvent::Ready(ready)), Some(entry))
            }
            resumed @ ShardEvent::Resumed { seq, .. } => {
                let entry = (h.session.as_ref()).map(|(s, _)| entry("RESUMED", s, seq, "".into()));
                (Some(resumed), entry)
            }
            ShardEvent::Dispatch(d) => {
                let (name, data) = match d.event {
                    // The raw `d` moves into the entry: relaying copies nothing.
                    DispatchEvent::Other(raw) => (raw.name, raw.data.into_inner()),
                    // Only READY and RESUMED are typed in raw mode, and they come as their own
                    // events.
                    typed => (typed.name().to_owned().into(), "".into()),
                };
                let entry = (h.session.as_ref()).map(|(session, _)| Entry {
                    name,
                    shard,
                    session: Arc::clone(session),
                    seq: d.seq,
                    fence,
                    data,
                    queued: now,
                });
                (None, entry)
            }
            ShardEvent::HeartbeatAck { .. } => (None, None),
            other => (Some(other), None),
        };
        if let Some(event) = news {
            (self.outputs).push_back(NodeOutput::Event(NodeEvent::Shard(shard, event)));
        }
        if let Some(entry) = published {
            self.outputs.push_back(NodeOutput::Publish(entry));
        }
    }

    /// The publisher wrote `shard`'s stream up to `(session, seq)`.
    ///
    /// A session's first write is stored at once rather than at the next round of saves: a
    /// node that dies in a session's first second then leaves it resumable too.
    pub fn handle_written(&mut self, now: Instant, shard: u32, session: Arc<str>, seq: u64) {
        if self.held.contains_key(&shard) {
            let first = self.written.get(&shard).is_none_or(|(s, _)| *s != session);
            if first {
                self.save_at = self.save_at.min(now);
            }
            self.written.insert(shard, (session, seq));
        }
    }

    /// Each shard's session at the last sequence written (never past it: a crash then replays
    /// from there, and nothing published is lost), where that moved since the last save.
    fn due_saves(&self) -> Vec<(Lease, ResumeInfo)> {
        (self.held.iter())
            .filter_map(|(id, h)| {
                let (session, resume_url) = h.session.as_ref()?;
                let (written, seq) = self.written.get(id)?;
                (written == session && *seq > h.saved).then(|| {
                    let info = ResumeInfo {
                        session_id: session.to_string(),
                        sequence: *seq,
                        resume_url: resume_url.clone(),
                    };
                    (h.lease.clone(), info)
                })
            })
            .collect()
    }

    /// A round of saves came back: `(shard, seq, stored)` each.
    pub fn handle_saved(&mut self, _now: Instant, saved: Vec<(u32, u64, bool)>) {
        self.saving = false;
        for (id, seq, stored) in saved {
            if let Some(h) = self.held.get_mut(&id).filter(|_| stored) {
                h.saved = h.saved.max(seq);
            }
        }
    }
}

/// Shutting down.
impl NodeCore {
    /// Begins the graceful end: every shard closed resumably, everything it delivered
    /// published, its session stored at the last sequence published, its lease released.
    pub fn handle_shutdown(&mut self, _now: Instant) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let left: BTreeSet<u32> = self.held.keys().copied().collect();
        if !left.is_empty() {
            self.outputs
                .push_back(NodeOutput::Close(left.iter().copied().collect()));
        }
        self.phase = Phase::Closing {
            left,
            closed: BTreeMap::new(),
        };
        self.closed_all();
    }

    /// A shard closed on shutdown, with its session (`None` if it had none to keep).
    pub fn handle_closed(&mut self, _now: Instant, shard: u32, session: Option<ResumeInfo>) {
        self.closed(shard, session);
    }

    fn closed(&mut self, shard: u32, session: Option<ResumeInfo>) {
        let Phase::Closing { left, closed } = &mut self.phase else {
            return;
        };
        if left.remove(&shard)
            && let Some(session) = session
        {
            closed.insert(shard, session);
        }
        self.closed_all();
    }

    fn closed_all(&mut self) {
        if let Phase::Closing { left, closed } = &mut self.phase
            && left.is_empty()
        {
            let closed = std::mem::take(closed);
            self.phase = Phase::Flushing { closed };
            self.outputs.push_back(NodeOutput::Flush);
        }
    }

    /// Everything the shards delivered is written (reported with
    /// [`handle_written`](Self::handle_written) first): store each session there and let the
    /// leases go.
    pub fn handle_flushed(&mut self, _now: Instant) {
        let Phase::Flushing { closed } = &mut self.phase else {
            return;
        };
        let mut closed = std::mem::take(closed);
        let mut handoff = Vec::new();
        let mut handed = Vec::new();
        for (id, h) in std::mem::take(&mut self.held) {
            let session = closed.remove(&id).map(|info| match self.written.get(&id) {
                Some((session, seq)) if **session == *info.session_id => ResumeInfo {
                    sequence: *seq,
                    ..info
                },
                _ => info,
            });
            handed.push((id, session.clone()));
            handoff.push((h.lease, session));
        }
        self.phase = Phase::HandingOff(handed);
        self.outputs.push_back(NodeOutput::Handoff(handoff));
    }

    /// The sessions are stored and the leases released: the node is done.
    pub fn handle_handed_off(&mut self, _now: Instant) {
        let Phase::HandingOff(handed) = &mut self.phase else {
            return;
        };
        for (shard, session) in std::mem::take(handed) {
            self.outputs
                .push_back(NodeOutput::Event(NodeEvent::Released { shard, session }));
        }
        self.phase = Phase::Stopped;
        self.outputs.push_back(NodeOutput::Stopped);
    }
}
