//! The proxy simulation: the same [`ProxyCore`](gateway_proxy::ProxyCore) the `gateway-proxy`
//! binary runs, fed an upstream shard's dispatches and driven by clients that identify with
//! their own intents, read as a socket would (or stop reading), drop and resume, flood, and
//! stop heartbeating, on virtual time, all drawn from one seed.
//!
//! Each run checks, as it goes:
//! - every client's sequence numbers are contiguous within its session, across resumes;
//! - every client gets each upstream dispatch its intents ask for, exactly once and in order,
//!   from the point its session started, across resumes (a session the proxy gave up on with
//!   op 9 starts again with a new IDENTIFY, which must cost nothing upstream);
//! - only the client that misbehaved is closed, with the code Discord would use;
//! - no client's data sits in the proxy past its send window.

mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Failure;

/// One proxy simulation's settings. Everything else is drawn from the seed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProxySimConfig {
    /// The seed.
    pub seed: u64,
    /// Clients on the shard.
    pub clients: usize,
    /// Virtual time with faults.
    pub duration: Duration,
    /// Quiet virtual time after it.
    pub settle: Duration,
    /// Upstream dispatches per virtual second.
    pub dispatches_per_second: f64,
    /// Client faults per client per virtual minute, on average.
    pub faults_per_client_minute: f64,
    /// The last events kept for a failure report.
    pub trace: usize,
}

impl ProxySimConfig {
    /// `clients` clients for `duration` under the default fault mix.
    pub fn new(seed: u64, clients: usize, duration: Duration) -> Self {
        Self {
            seed,
            clients: clients.max(1),
            duration,
            // Longer than a client stays away (two minutes) and a resume.
            settle: Duration::from_secs(180),
            dispatches_per_second: 20.0,
            faults_per_client_minute: 2.0,
            trace: 40,
        }
    }
}

/// A proxy run in which every invariant held.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ProxySimReport {
    /// The seed.
    pub seed: u64,
    /// Virtual time simulated, settling included.
    pub simulated: Duration,
    /// Dispatches the upstream sent.
    pub upstream: u64,
    /// Dispatches clients received from the log (replays included, synthetic ones not).
    pub delivered: u64,
    /// RESUMEs that replayed, and new sessions after op 9.
    pub resumes: u64,
    /// New IDENTIFYs after the first of each client.
    pub reidentifies: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Closes the proxy sent, by code.
    pub closes: BTreeMap<u16, u64>,
}

/// Runs one proxy simulation to the end.
pub fn run_proxy(config: ProxySimConfig) -> Result<ProxySimReport, Failure> {
    world::World::new(config).run()
}
