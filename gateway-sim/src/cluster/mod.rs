//! The cluster simulation: several nodes, each the same [`NodeCore`] the tokio node runs, against
//! an in-memory Redis (`redis`) and a gateway that keeps each shard's session and replays it on
//! RESUME, on virtual time, under node faults drawn from one seed: Redis latency and timeouts, a
//! node partitioned from Redis, a node killed, a node paused past its lease, a rolling restart.
//!
//! Each run checks, as it goes and at the end:
//! - never two running nodes connected for one shard at the same instant;
//! - after a graceful handoff, no IDENTIFY for the shard while its session lives;
//! - every dispatch reaches the shard's stream exactly once, in order per session: the stream
//!   (its APPEND script refusing older leases and skipping what it has) holds no gap and no
//!   repeat;
//! - once settled, every shard is held by one node, connected, and its stream holds everything
//!   the gateway sent in its session.
//!
//! Here a shard is a model of a session (a sequence log with replay), not the `Session` the
//! other simulation runs: this one is about the node's decisions.

mod redis;
mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Failure;

/// One cluster simulation's settings. Everything else is drawn from the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The seed.
    pub seed: u64,
    /// Node processes.
    pub nodes: usize,
    /// Shards of the bot.
    pub shards: u32,
    /// Virtual time with faults.
    pub duration: Duration,
    /// Quiet virtual time after it.
    pub settle: Duration,
    /// Node faults per node per virtual hour, on average.
    pub faults_per_node_hour: f64,
    /// Dispatches per shard per virtual minute.
    pub dispatches_per_shard_minute: f64,
    /// The lease TTL (the margin is a fifth of it).
    pub lease_ttl: Duration,
    /// The last events kept for a failure report.
    pub trace: usize,
}

impl ClusterConfig {
    /// `nodes` nodes sharing `shards` shards for `duration` under the default fault mix.
    pub fn new(seed: u64, nodes: usize, shards: u32, duration: Duration) -> Self {
        Self {
            seed,
            nodes: nodes.max(1),
            shards: shards.max(1),
            duration,
            settle: Duration::from_secs(120),
            faults_per_node_hour: 40.0,
            dispatches_per_shard_minute: 60.0,
            lease_ttl: Duration::from_secs(10),
            trace: 40,
        }
    }
}

/// A cluster run in which every invariant held.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClusterReport {
    /// The seed.
    pub seed: u64,
    /// Virtual time simulated, settling included.
    pub simulated: Duration,
    /// Dispatches the gateway sent.
    pub dispatches: u64,
    /// Stream entries written.
    pub entries: u64,
    /// Entries the stream skipped as there already (a resume's replay after a crash).
    pub repeats: u64,
    /// Entries the stream refused: published under an older lease than its last entry's.
    pub fenced: u64,
    /// IDENTIFYs and RESUMEs the gateway received.
    pub identifies: u64,
    /// RESUMEs.
    pub resumes: u64,
    /// Leases taken, lost and handed over.
    pub lease_changes: BTreeMap<&'static str, u64>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
}

/// Runs one cluster simulation to the end.
pub fn run_cluster(config: ClusterConfig) -> Result<ClusterReport, Failure> {
    world::World::new(config).run()
}
