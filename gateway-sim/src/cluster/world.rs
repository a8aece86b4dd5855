//! The cluster's world: nodes (each a `NodeCore` with the driver's side played here), Redis, the
//! gateway's sessions, and the agenda.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_cluster::core::{
    Acquired, CoreConfig, NodeCore, NodeEvent, NodeOutput, Renewal, Renewed, UpkeepDone,
    UpkeepRequest,
};
use gateway_cluster::{Entry, Lease};
use gateway_model::{
    Dispatch, DispatchEvent, PartialApplication, RawDispatch, RawJson, Ready, Snowflake, User,
};
use gateway_shard::{ResumeInfo, ShardEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::redis::{Redis, StreamCheck, StreamEntry};
use super::{ClusterConfig, ClusterReport};
use crate::Failure;
use crate::faults::exponential;
use crate::net::Agenda;

/// A call to Redis, as it arrives.
#[derive(Debug)]
enum Op {
    Upkeep(UpkeepRequest, Instant),
    Save(Vec<(Lease, ResumeInfo)>),
    Release(Lease),
    Publish(Entry),
    Flush,
    Handoff(Vec<(Lease, Option<ResumeInfo>)>),
}

/// An answer to a node.
#[derive(Debug)]
enum Reply {
    Upkeep(UpkeepDone),
    Saved(Vec<(u32, u64, bool)>),
    Written(u32, Arc<str>, u64),
    Flushed,
    HandedOff,
}

#[derive(Debug)]
enum Ev {
    NodeTimer {
        node: usize,
        life: u64,
        generation: u64,
    },
    /// A call reaches Redis; `answer` unless it timed out.
    Apply {
        node: usize,
        life: u64,
        op: Op,
        answer: bool,
    },
    Reply {
        node: usize,
        life: u64,
        reply: Reply,
    },
    /// A shard's connection opens at the gateway.
    Connected {
        node: usize,
        life: u64,
        shard: u32,
        conn: u64,
    },
    Deliver {
        node: usize,
        life: u64,
        shard: u32,
        conn: u64,
        event: ShardEvent,
    },
    Traffic,
    Fault,
    Wake {
        node: usize,
    },
    Restart {
        node: usize,
    },
}

impl Ev {
    /// The node whose process handles it (deferred while that node is paused).
    fn node(&self) -> Option<(usize, u64)> {
        match self {
            Self::NodeTimer { node, life, .. }
            | Self::Reply { node, life, .. }
            | Self::Connected { node, life, .. }
            | Self::Deliver { node, life, .. } => Some((*node, *life)),
            _ => None,
        }
    }
}

/// A shard a node runs: its connection and where its session stands.
#[derive(Debug)]
struct Slot {
    conn: u64,
    session: Option<String>,
    seq: u64,
}

#[derive(Debug)]
struct Node {
    name: String,
    core: Option<NodeCore>,
    /// Each start of the process; events of an earlier one are dropped.
    life: u64,
    timer: (Option<Instant>, u64),
    paused_until: Option<Instant>,
    deferred: Vec<Ev>,
    partitioned_until: Option<Instant>,
    slots: BTreeMap<u32, Slot>,
}

/// The gateway's view of one shard.
#[derive(Debug, Default)]
struct GatewayShard {
    session: Option<String>,
    /// The last sequence number sent in the session.
    log: u64,
    /// The connection the session is on: `(node, conn)`.
    holder: Option<(usize, u64)>,
    sessions: u64,
}

pub(super) struct World {
    config: ClusterConfig,
    rng: ChaCha8Rng,
    agenda: Agenda<Ev>,
    nodes: Vec<Node>,
    redis: Redis,
    gateway: Vec<GatewayShard>,
    /// Open connections at the gateway: conn → (node, shard).
    conns: BTreeMap<u64, (usize, u32)>,
    next_conn: u64,
    streams: Vec<StreamCheck>,
    /// The session each shard was last handed over in, gracefully.
    handed: BTreeMap<u32, String>,
    slow_until: Option<Instant>,
    dirty: Vec<usize>,
    trace: VecDeque<String>,
    report: ClusterReport,
}

/// Link ids of a node's two Redis connections (calls and the publisher), apart from any
/// websocket.
fn link(node: usize, publisher: bool) -> u64 {
    u64::MAX - 2 * node as u64 - u64::from(publisher)
}

impl World {
    pub(super) fn new(config: ClusterConfig) -> Self {
        #[allow(clippy::disallowed_methods)] // the virtual clock's origin; nothing is timed by it
        let start = Instant::now();
        let nodes = (0..config.nodes)
            .map(|i| Node {
                name: format!("node-{i}"),
                core: None,
                life: 0,
                timer: (None, 0),
                paused_until: None,
                deferred: Vec::new(),
                partitioned_until: None,
                slots: BTreeMap::new(),
            })
            .collect();
        let report = ClusterReport {
            seed: config.seed,
            simulated: Duration::ZERO,
            dispatches: 0,
            entries: 0,
            repeats: 0,
            identifies: 0,
            resumes: 0,
            lease_changes: BTreeMap::new(),
            faults: BTreeMap::new(),
        };
        Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            agenda: Agenda::new(start),
            nodes,
            redis: Redis::default(),
            gateway: (0..config.shards)
                .map(|_| GatewayShard::default())
                .collect(),
            conns: BTreeMap::new(),
            next_conn: 0,
            streams: (0..config.shards).map(|_| StreamCheck::default()).collect(),
            handed: BTreeMap::new(),
            slow_until: None,
            dirty: Vec::new(),
            trace: VecDeque::new(),
            report,
            config,
        }
    }

    fn core_config(&self, node: usize) -> CoreConfig {
        let mut core = CoreConfig::new(self.nodes[node].name.clone(), self.config.shards);
        // Enough room that the others cover for one node that is down.
        let others = self.config.nodes.saturating_sub(1).max(1) as u32;
        core.max_shards = self.config.shards.div_ceil(others);
        core.lease_ttl = self.config.lease_ttl;
        core.lease_margin = self.config.lease_ttl / 5;
        core
    }

    pub(super) fn run(mut self) -> Result<ClusterReport, Failure> {
        let start = self.agenda.now();
        let faults_end = start + self.config.duration;
        let end = faults_end + self.config.settle;
        for node in 0..self.config.nodes {
            self.start_node(node);
        }
        let traffic = self.traffic_mean();
        self.agenda.after(traffic, Ev::Traffic);
        let fault = self.fault_mean();
        self.agenda.after(fault, Ev::Fault);
        while let Some(ev) = self.agenda.pop(end) {
            let now = self.agenda.now();
            if let Some((node, life)) = ev.node() {
                if self.nodes[node].life != life {
                    continue;
                }
                if self.nodes[node].paused_until.is_some() {
                    self.nodes[node].deferred.push(ev);
                    continue;
                }
            }
            self.handle(ev, now < faults_end)?;
            while let Some(node) = self.dirty.pop() {
                self.drain(node)?;
            }
        }
        self.finish()
    }

    fn traffic_mean(&self) -> Duration {
        let per_minute = self.config.dispatches_per_shard_minute * f64::from(self.config.shards);
        Duration::from_secs_f64(60.0 / per_minute.max(1e-6))
    }

    fn fault_mean(&self) -> Duration {
        let per_hour = self.config.faults_per_node_hour * self.config.nodes as f64;
        Duration::from_secs_f64(3600.0 / per_hour.max(1e-6))
    }

    fn handle(&mut self, ev: Ev, injecting: bool) -> Result<(), Failure> {
        let now = self.agenda.now();
        match ev {
            Ev::NodeTimer {
                node, generation, ..
            } => {
                if self.nodes[node].timer.1 == generation {
                    self.nodes[node].timer.0 = None;
                    self.with_core(node, |core| core.handle_timeout(now));
                }
            }
            Ev::Apply {
                node,
                life,
                op,
                answer,
            } => self.apply(node, life, op, answer)?,
            Ev::Reply { node, reply, .. } => self.reply(node, reply),
            Ev::Connected {
                node, shard, conn, ..
            } => self.connected(node, shard, conn)?,
            Ev::Deliver {
                node,
                shard,
                conn,
                event,
                ..
            } => self.deliver(node, shard, conn, event),
            Ev::Traffic => {
                if injecting {
                    self.traffic();
                }
                let mean = self.traffic_mean();
                let wait = exponential(&mut self.rng, mean);
                self.agenda.after(wait, Ev::Traffic);
            }
            Ev::Fault => {
                if injecting {
                    self.fault();
                }
                let mean = self.fault_mean();
                let wait = exponential(&mut self.rng, mean);
                self.agenda.after(wait, Ev::Fault);
            }
            Ev::Wake { node } => self.wake(node),
            Ev::Restart { node } => {
                if self.nodes[node].core.is_none() {
                    self.start_node(node);
                }
            }
        }
        Ok(())
    }

    fn with_core(&mut self, node: usize, f: impl FnOnce(&mut NodeCore)) {
        if let Some(core) = self.nodes[node].core.as_mut() {
            f(core);
            self.dirty.push(node);
        }
    }

    fn start_node(&mut self, node: usize) {
        let now = self.agenda.now();
        let core = NodeCore::new(self.core_config(node), now);
        let n = &mut self.nodes[node];
        n.life += 1;
        n.core = Some(core);
        n.timer = (None, n.timer.1 + 1);
        self.trace(format!("{} starts", self.nodes[node].name));
        self.dirty.push(node);
    }

    /// The process dies: its connections drop, its Redis calls in flight still land.
    fn kill(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.core = None;
        n.life += 1;
        n.paused_until = None;
        n.deferred.clear();
        let slots = std::mem::take(&mut n.slots);
        for (shard, slot) in slots {
            self.hang_up(shard, slot.conn);
        }
        self.trace(format!("{} is killed", self.nodes[node].name));
    }

    fn wake(&mut self, node: usize) {
        let now = self.agenda.now();
        if self.nodes[node].paused_until.take().is_none() {
            return;
        }
        self.trace(format!("{} wakes", self.nodes[node].name));
        let n = &mut self.nodes[node];
        // The timer first: overdue leases stop before anything else is read (the driver's
        // select is biased so).
        if let Some(core) = n.core.as_mut()
            && core.poll_timeout().is_some_and(|t| t <= now)
        {
            core.handle_timeout(now);
        }
        for ev in std::mem::take(&mut n.deferred) {
            self.agenda.at(now, ev);
        }
        self.dirty.push(node);
    }

    /// The gateway forgets a connection.
    fn hang_up(&mut self, shard: u32, conn: u64) {
        self.conns.remove(&conn);
        let g = &mut self.gateway[shard as usize];
        if g.holder.is_some_and(|(_, c)| c == conn) {
            g.holder = None;
        }
    }

    fn latency(&mut self) -> Duration {
        let now = self.agenda.now();
        if self.slow_until.is_some_and(|t| t > now) {
            Duration::from_millis(self.rng.random_range(200..4_000))
        } else {
            Duration::from_millis(self.rng.random_range(1..20))
        }
    }

    /// Sends a call to Redis; it fails at the call limit if it cannot make the round trip.
    fn call(&mut self, node: usize, op: Op) {
        let now = self.agenda.now();
        let life = self.nodes[node].life;
        let publisher = matches!(op, Op::Publish(_) | Op::Flush);
        let (up, down) = (self.latency(), self.latency());
        let limit = self.core_config(node).call_limit();
        let partitioned = self.nodes[node].partitioned_until.filter(|t| *t > now);
        if publisher {
            // The publisher retries until it is written: after the partition, in order.
            let at = partitioned.unwrap_or(now) + up;
            let ev = Ev::Apply {
                node,
                life,
                op,
                answer: true,
            };
            self.agenda.send(link(node, true), true, at - now, ev);
            return;
        }
        let answer = partitioned.is_none() && up + down <= limit;
        if !answer {
            let reply = match &op {
                Op::Upkeep(request, sent) => Some(Reply::Upkeep(failed_upkeep(request, *sent))),
                Op::Save(saves) => Some(Reply::Saved(
                    saves
                        .iter()
                        .map(|(l, i)| (l.shard, i.sequence, false))
                        .collect(),
                )),
                Op::Handoff(_) => Some(Reply::HandedOff),
                _ => None,
            };
            if let Some(reply) = reply {
                self.agenda.after(limit, Ev::Reply { node, life, reply });
            }
        }
        if partitioned.is_none() {
            let ev = Ev::Apply {
                node,
                life,
                op,
                answer,
            };
            self.agenda.send(link(node, false), true, up, ev);
        }
    }

    fn answer(&mut self, node: usize, life: u64, reply: Reply, publisher: bool) {
        let down = self.latency();
        let ev = Ev::Reply { node, life, reply };
        self.agenda.send(link(node, publisher), false, down, ev);
    }
}

/// What a timed-out round of upkeep tells the core.
fn failed_upkeep(request: &UpkeepRequest, sent: Instant) -> UpkeepDone {
    let renewed = (request.renew.iter())
        .map(|l| Renewal {
            shard: l.shard,
            token: l.token,
            sent,
            outcome: Renewed::Failed("redis did not answer in time (simulated)".into()),
        })
        .collect();
    UpkeepDone {
        renewed,
        acquired: Vec::new(),
    }
}

/// Redis applies a call.
impl World {
    fn apply(&mut self, node: usize, life: u64, op: Op, answer: bool) -> Result<(), Failure> {
        let now = self.agenda.now();
        let ttl = self.config.lease_ttl;
        let name = self.nodes[node].name.clone();
        let reply = match op {
            Op::Upkeep(request, sent) => {
                let renewed = (request.renew.iter())
                    .map(|l| Renewal {
                        shard: l.shard,
                        token: l.token,
                        sent,
                        outcome: if self.redis.renew(now, l.shard, l.value(), ttl) {
                            Renewed::Held
                        } else {
                            Renewed::Lost
                        },
                    })
                    .collect();
                let mut acquired = Vec::new();
                for id in request.candidates {
                    if acquired.len() >= request.room {
                        break;
                    }
                    if let Some(token) = self.redis.acquire(now, &name, id, ttl) {
                        let lease = Lease::new(&name, id, token, sent);
                        let session = Ok(self.redis.load(id));
                        acquired.push(Acquired { lease, session });
                    }
                }
                Some(Reply::Upkeep(UpkeepDone { renewed, acquired }))
            }
            Op::Save(saves) => Some(Reply::Saved(
                (saves.iter())
                    .map(|(l, i)| {
                        (
                            l.shard,
                            i.sequence,
                            self.redis.save(now, l.shard, l.value(), i),
                        )
                    })
                    .collect(),
            )),
            Op::Release(lease) => {
                self.redis.release(now, lease.shard, lease.value());
                None
            }
            Op::Publish(entry) => {
                let seen = StreamEntry {
                    name: entry.name.to_string(),
                    session: entry.session.to_string(),
                    seq: entry.seq,
                };
                let shard = entry.shard;
                if let Err(e) = self.streams[shard as usize].see(&seen) {
                    return Err(self.fail(format!("shard {shard}'s stream: {e}")));
                }
                Some(Reply::Written(shard, entry.session, entry.seq))
            }
            Op::Flush => Some(Reply::Flushed),
            Op::Handoff(handoff) => {
                for (lease, session) in &handoff {
                    if let Some(info) = session {
                        self.redis.save(now, lease.shard, lease.value(), info);
                    }
                    self.redis.release(now, lease.shard, lease.value());
                }
                Some(Reply::HandedOff)
            }
        };
        let publisher = matches!(reply, Some(Reply::Written(..) | Reply::Flushed));
        if let Some(reply) = reply.filter(|_| answer) {
            self.answer(node, life, reply, publisher);
        }
        Ok(())
    }

    fn reply(&mut self, node: usize, reply: Reply) {
        let now = self.agenda.now();
        self.with_core(node, |core| match reply {
            Reply::Upkeep(done) => core.handle_upkeep(now, done),
            Reply::Saved(saved) => core.handle_saved(now, saved),
            Reply::Written(shard, session, seq) => core.handle_written(now, shard, session, seq),
            Reply::Flushed => core.handle_flushed(now),
            Reply::HandedOff => core.handle_handed_off(now),
        });
    }
}

/// The node's driver, played here: each output done.
impl World {
    fn drain(&mut self, node: usize) -> Result<(), Failure> {
        let now = self.agenda.now();
        while let Some(output) = self.nodes[node]
            .core
            .as_mut()
            .and_then(|c| c.poll_output(now))
        {
            match output {
                NodeOutput::Upkeep(request) => self.call(node, Op::Upkeep(request, now)),
                NodeOutput::Start { lease, resuming } => {
                    self.start_shard(node, lease.shard, resuming)
                }
                NodeOutput::Stop { shard } => {
                    if let Some(slot) = self.nodes[node].slots.remove(&shard) {
                        self.hang_up(shard, slot.conn);
                    }
                }
                NodeOutput::Release(lease) => self.call(node, Op::Release(lease)),
                NodeOutput::Save(saves) => self.call(node, Op::Save(saves)),
                NodeOutput::Publish(entry) => self.call(node, Op::Publish(entry)),
                NodeOutput::Close(shards) => self.close(node, &shards),
                NodeOutput::Flush => self.call(node, Op::Flush),
                NodeOutput::Handoff(handoff) => self.call(node, Op::Handoff(handoff)),
                NodeOutput::Event(event) => self.node_event(node, event),
                NodeOutput::Stopped => {
                    let n = &mut self.nodes[node];
                    n.core = None;
                    n.life += 1;
                    let wait = Duration::from_millis(self.rng.random_range(500..5_000));
                    self.agenda.after(wait, Ev::Restart { node });
                    self.trace(format!(
                        "{} stopped; restarts in {wait:?}",
                        self.nodes[node].name
                    ));
                    return Ok(());
                }
                _ => return Err(self.fail("an output the simulator does not know".into())),
            }
        }
        let at = self.nodes[node]
            .core
            .as_ref()
            .and_then(NodeCore::poll_timeout);
        let n = &mut self.nodes[node];
        if n.timer.0 != at {
            n.timer.0 = at;
            n.timer.1 += 1;
            if let Some(at) = at {
                let (life, generation) = (n.life, n.timer.1);
                self.agenda.at(
                    at,
                    Ev::NodeTimer {
                        node,
                        life,
                        generation,
                    },
                );
            }
        }
        Ok(())
    }

    fn node_event(&mut self, node: usize, event: NodeEvent) {
        let name = &self.nodes[node].name;
        let (change, line) = match &event {
            NodeEvent::Took {
                shard,
                token,
                resuming,
            } => (
                "taken",
                format!(
                    "{name} takes shard {shard} (token {token}), resuming {:?}",
                    resuming.as_ref().map(|r| (&r.session_id, r.sequence))
                ),
            ),
            NodeEvent::Lost { shard, reason } => {
                ("lost", format!("{name} loses shard {shard}: {reason}"))
            }
            NodeEvent::Released { shard, session } => {
                if let Some(s) = session {
                    self.handed.insert(*shard, s.session_id.clone());
                }
                (
                    "released",
                    format!(
                        "{name} hands shard {shard} over at {:?}",
                        session.as_ref().map(|s| s.sequence)
                    ),
                )
            }
            _ => return,
        };
        *self.report.lease_changes.entry(change).or_default() += 1;
        self.trace(line);
    }

    fn start_shard(&mut self, node: usize, shard: u32, resuming: Option<ResumeInfo>) {
        self.next_conn += 1;
        let conn = self.next_conn;
        let slot = Slot {
            conn,
            session: resuming.as_ref().map(|r| r.session_id.clone()),
            seq: resuming.map_or(0, |r| r.sequence),
        };
        let n = &mut self.nodes[node];
        if let Some(old) = n.slots.insert(shard, slot) {
            self.hang_up(shard, old.conn);
        }
        let life = self.nodes[node].life;
        let handshake = self.latency() * 2 + Duration::from_millis(50);
        let ev = Ev::Connected {
            node,
            life,
            shard,
            conn,
        };
        self.agenda.after(handshake, ev);
    }

    /// Shutting down: each shard closes resumably where its session stands.
    fn close(&mut self, node: usize, shards: &[u32]) {
        let now = self.agenda.now();
        for &shard in shards {
            let slot = self.nodes[node].slots.remove(&shard);
            let info = slot.and_then(|slot| {
                self.hang_up(shard, slot.conn);
                Some(ResumeInfo {
                    session_id: slot.session?,
                    sequence: slot.seq,
                    resume_url: "ws://gateway.sim".into(),
                })
            });
            self.with_core(node, |core| core.handle_closed(now, shard, info));
        }
    }
}

/// The gateway's side.
impl World {
    fn connected(&mut self, node: usize, shard: u32, conn: u64) -> Result<(), Failure> {
        let Some(slot) = self.nodes[node]
            .slots
            .get(&shard)
            .filter(|s| s.conn == conn)
        else {
            return Ok(());
        };
        let resuming = slot.session.clone();
        let from = slot.seq;
        if let Some((other, _)) = (self.conns.iter())
            .map(|(_, (n, s))| (*n, *s))
            .find(|(n, s)| *s == shard && *n != node && self.is_running(*n))
        {
            let name = &self.nodes[other].name;
            return Err(self.fail(format!(
                "shard {shard}: {} connects while {name} is connected",
                self.nodes[node].name
            )));
        }
        self.conns.insert(conn, (node, shard));
        let g = &mut self.gateway[shard as usize];
        // A RESUME moves the session to this connection; the old one is closed.
        if let Some((_, old)) = g.holder.replace((node, conn)) {
            self.conns.remove(&old);
        }
        let life = self.nodes[node].life;
        let g = &mut self.gateway[shard as usize];
        if resuming.is_some() && resuming == g.session {
            self.report.resumes += 1;
            g.log += 1;
            let (log, replayed) = (g.log, g.log - 1 - from.min(g.log - 1));
            for seq in from + 1..log {
                let event = dispatch(seq);
                self.send(node, life, shard, conn, event);
            }
            let event = ShardEvent::Resumed { replayed, seq: log };
            self.send(node, life, shard, conn, event);
        } else {
            if let Some(handed) = self.handed.get(&shard)
                && g.session.as_ref() == Some(handed)
            {
                return Err(self.fail(format!(
                    "shard {shard}: IDENTIFY after a graceful handoff of live session {handed}"
                )));
            }
            self.report.identifies += 1;
            g.sessions += 1;
            let session = format!("s{shard}-{}", g.sessions);
            g.session = Some(session.clone());
            g.log = 1;
            self.send(node, life, shard, conn, ready(&session));
        }
        Ok(())
    }

    fn is_running(&self, node: usize) -> bool {
        let n = &self.nodes[node];
        n.core.is_some() && n.paused_until.is_none()
    }

    fn send(&mut self, node: usize, life: u64, shard: u32, conn: u64, event: ShardEvent) {
        let latency = Duration::from_millis(self.rng.random_range(1..60));
        let ev = Ev::Deliver {
            node,
            life,
            shard,
            conn,
            event,
        };
        self.agenda.send(conn, false, latency, ev);
    }

    /// An event reaches a node's shard, and its user: the core.
    fn deliver(&mut self, node: usize, shard: u32, conn: u64, event: ShardEvent) {
        let now = self.agenda.now();
        let Some(slot) = self.nodes[node]
            .slots
            .get_mut(&shard)
            .filter(|s| s.conn == conn)
        else {
            return;
        };
        match &event {
            ShardEvent::Ready(r) => {
                slot.session = Some(r.session_id.clone());
                slot.seq = 1;
            }
            ShardEvent::Resumed { seq, .. } => slot.seq = *seq,
            ShardEvent::Dispatch(d) => slot.seq = d.seq,
            _ => {}
        }
        self.with_core(node, |core| core.handle_shard_event(now, shard, event));
    }

    /// The gateway sends a dispatch in a random shard's session (kept for a RESUME if no one is
    /// connected).
    fn traffic(&mut self) {
        let shard = self.rng.random_range(0..self.config.shards);
        let g = &mut self.gateway[shard as usize];
        if g.session.is_none() {
            return;
        }
        g.log += 1;
        self.report.dispatches += 1;
        let seq = g.log;
        if let Some((node, conn)) = g.holder {
            let life = self.nodes[node].life;
            self.send(node, life, shard, conn, dispatch(seq));
        }
    }
}

/// Faults and the end.
impl World {
    fn fault(&mut self) {
        let now = self.agenda.now();
        let node = self.rng.random_range(0..self.config.nodes);
        let ttl = self.config.lease_ttl;
        let alive = self.nodes[node].core.is_some() && self.nodes[node].paused_until.is_none();
        let kind = match self.rng.random_range(0..5u32) {
            0 if alive => {
                self.kill(node);
                let wait = Duration::from_millis(self.rng.random_range(1_000..10_000));
                self.agenda.after(wait, Ev::Restart { node });
                "kill"
            }
            1 if alive => {
                let wait = ttl + Duration::from_millis(self.rng.random_range(0..10_000));
                self.nodes[node].paused_until = Some(now + wait);
                self.agenda.after(wait, Ev::Wake { node });
                self.trace(format!("{} pauses for {wait:?}", self.nodes[node].name));
                "pause past the lease"
            }
            2 => {
                let wait = Duration::from_millis(self.rng.random_range(1_000..15_000));
                self.nodes[node].partitioned_until = Some(now + wait);
                self.trace(format!(
                    "{} is cut off from Redis for {wait:?}",
                    self.nodes[node].name
                ));
                "partition"
            }
            3 if alive => {
                self.trace(format!(
                    "{} shuts down (rolling restart)",
                    self.nodes[node].name
                ));
                self.with_core(node, |core| core.handle_shutdown(now));
                "rolling restart"
            }
            4 => {
                let wait = Duration::from_millis(self.rng.random_range(1_000..10_000));
                self.slow_until = Some(now + wait);
                self.trace(format!("Redis is slow for {wait:?}"));
                "redis slow"
            }
            _ => return,
        };
        *self.report.faults.entry(kind).or_default() += 1;
    }

    fn finish(mut self) -> Result<ClusterReport, Failure> {
        for shard in 0..self.config.shards {
            let holders: Vec<usize> = (0..self.config.nodes)
                .filter(|n| {
                    (self.nodes[*n].core.as_ref())
                        .is_some_and(|c| c.held().any(|(s, _)| s == shard))
                })
                .collect();
            if holders.len() != 1 {
                return Err(self.fail(format!(
                    "shard {shard} is held by {holders:?} after settling"
                )));
            }
            let g = &self.gateway[shard as usize];
            let connected = g.holder.is_some_and(|(n, _)| n == holders[0]);
            let Some(session) = g.session.clone().filter(|_| connected) else {
                return Err(self.fail(format!("shard {shard} is not connected after settling")));
            };
            let (log, last) = (g.log, self.streams[shard as usize].last(&session));
            if last != Some(log) {
                return Err(self.fail(format!(
                    "shard {shard}: the gateway sent up to #{log} in {session}, the stream holds up to {last:?}"
                )));
            }
        }
        self.report.simulated = self.agenda.elapsed();
        self.report.entries = self.streams.iter().map(|s| s.entries).sum();
        self.report.repeats = self.streams.iter().map(|s| s.repeats).sum();
        Ok(self.report)
    }

    fn trace(&mut self, line: String) {
        if self.trace.len() >= self.config.trace.max(1) {
            self.trace.pop_front();
        }
        let at = self.agenda.elapsed();
        self.trace
            .push_back(format!("{:>10.3}s {line}", at.as_secs_f64()));
    }

    fn fail(&self, violation: String) -> Failure {
        Failure {
            seed: self.config.seed,
            at: self.agenda.elapsed(),
            violation,
            trace: self.trace.iter().cloned().collect(),
        }
    }
}

fn dispatch(seq: u64) -> ShardEvent {
    let data = RawJson::from_string(format!(r#"{{"n":{seq}}}"#));
    ShardEvent::Dispatch(Dispatch {
        seq,
        event: DispatchEvent::Other(RawDispatch {
            name: "SIM_EVENT".into(),
            data: data.unwrap_or_else(|_| unreachable!("a number is JSON")),
        }),
    })
}

fn ready(session: &str) -> ShardEvent {
    ShardEvent::Ready(Box::new(Ready {
        v: Some(10),
        user: User {
            id: Snowflake::new(1),
            username: "sim".into(),
            discriminator: None,
            global_name: None,
            avatar: None,
            bot: true,
        },
        guilds: vec![],
        session_id: session.into(),
        resume_gateway_url: "ws://gateway.sim".into(),
        shard: None,
        application: PartialApplication {
            id: Snowflake::new(2),
            flags: 0,
        },
    }))
}
