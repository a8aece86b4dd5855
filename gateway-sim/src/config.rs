//! What a simulation runs: how many shards, for how long, and how hostile the world is.

use std::time::Duration;

use gateway_codec::Compression;

/// One simulation's settings. Everything else is drawn from the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed: the same seed and settings give the same run, event for event.
    pub seed: u64,
    /// Shards of the bot, all simulated.
    pub shards: u32,
    /// Virtual time to run, faults included.
    pub duration: Duration,
    /// Quiet virtual time after `duration`, without faults, for everything to settle before the
    /// final checks.
    pub settle: Duration,
    /// The bot's `max_concurrency`.
    pub max_concurrency: u32,
    /// Faults per shard per virtual hour, on average.
    pub faults_per_shard_hour: f64,
    /// Dispatches the server sends each shard per virtual minute, on average.
    pub dispatches_per_shard_minute: f64,
    /// The chance that a run restarts the server (forgetting every session) once.
    pub restart_chance: f64,
    /// The compressions shards use, assigned in turn.
    pub compressions: Vec<Compression>,
    /// Guilds per shard in the world (one in ten large enough to chunk in several pieces).
    pub guilds_per_shard: usize,
    /// Link latency: each connection draws one in this range (milliseconds).
    pub latency_ms: (u64, u64),
    /// The last events kept for a failure report.
    pub trace: usize,
}

impl SimConfig {
    /// `shards` shards for `duration` under the default fault mix.
    pub fn new(seed: u64, shards: u32, duration: Duration) -> Self {
        Self {
            seed,
            shards: shards.max(1),
            duration,
            settle: Duration::from_secs(240),
            max_concurrency: 16,
            faults_per_shard_hour: 6.0,
            dispatches_per_shard_minute: 2.0,
            restart_chance: 0.2,
            compressions: vec![
                Compression::ZlibStream,
                Compression::None,
                Compression::ZstdStream,
            ],
            guilds_per_shard: 2,
            latency_ms: (1, 80),
            trace: 40,
        }
    }
}
