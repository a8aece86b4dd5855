//! The cluster's world: nodes (each a `NodeCore` with the driver's side played here), Redis, the
//! gateway's sessions, and the agenda.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use gateway_cluster::core::{CoreConfig, NodeCore, NodeEvent, NodeOutput};
use gateway_shard::{ResumeInfo, ShardEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::redis::{Redis, StreamCheck};
use super::{ClusterConfig, ClusterReport};
use crate::Failure;
use crate::faults::exponential;
use crate::net::Agenda;

mod calls;
mod faults;
mod gateway;

use calls::{Op, Reply};

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
    /// Another node's release notice reaches this one (pub/sub).
    Notice {
        node: usize,
        life: u64,
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
            | Self::Notice { node, life }
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
            fenced: 0,
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
            Ev::Notice { node, .. } => self.with_core(node, |core| core.handle_release_notice(now)),
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
