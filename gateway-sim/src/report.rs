//! What a run reports: its counts when every invariant held, or the violation with its seed and
//! the events leading up to it.

use std::collections::BTreeMap;
use std::time::Duration;

/// A run in which every invariant held.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Shards simulated.
    pub shards: u32,
    /// Virtual time simulated, settling included.
    pub simulated: Duration,
    /// Events handled.
    pub events: u64,
    /// Dispatches users received.
    pub dispatches: u64,
    /// Sessions started (READYs) and resumed (RESUMEDs) over all shards.
    pub readies: u64,
    /// RESUMEDs over all shards.
    pub resumes: u64,
    /// IDENTIFYs the gateway received.
    pub identifies: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Member requests sent, and how they ended.
    pub chunk_requests: usize,
    /// Member request outcomes, by name.
    pub chunk_outcomes: BTreeMap<String, u64>,
    /// Whether the server restarted during the run.
    pub restarted: bool,
    /// The most events that waited at once (the network and every timer).
    pub peak_agenda: usize,
    /// The most sessions the gateway held at once.
    pub peak_server_sessions: usize,
    /// The most member requests the tracker held open at once.
    pub peak_open_requests: usize,
}

/// An invariant broke. Running the same seed with the same settings breaks it the same way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("seed {seed}: {violation} (at {at:?} of virtual time)\nthe last events:\n{}", trace.join("\n"))]
#[non_exhaustive]
pub struct Failure {
    /// The seed that found it.
    pub seed: u64,
    /// Virtual time when it broke.
    pub at: Duration,
    /// What broke.
    pub violation: String,
    /// The last events before it, oldest first.
    pub trace: Vec<String>,
}
