//! A deterministic simulator for the whole stack: N shard [`Session`](gateway_shard::Session)s,
//! the member chunk [`Tracker`](gateway_chunking::Tracker), the identify schedule and the fake
//! gateway's [`GatewayCore`](gateway_testkit::core::GatewayCore), wired through an in-memory
//! network on virtual time, with faults drawn from one seed. Every state machine here is the
//! same sans-IO code the tokio drivers run; only the drivers differ.
//!
//! | module | holds |
//! |---|---|
//! | [`SimConfig`] | how many shards, for how long, how hostile |
//! | `net` | the agenda (events by virtual time) and in-order links |
//! | `faults` | faults and traffic, drawn from the seed |
//! | `check` | the invariants |
//! | [`Report`], [`Failure`] | what a run found |
//! | [`run_cluster`], [`ClusterConfig`] | the cluster nodes' core against an in-memory Redis, under node faults |
//!
//! Every run checks, as it goes and at the end:
//! - each shard's user gets every dispatch of its session exactly once and in order across
//!   resumes, with new sessions marked by READY; and once the world settles, up to the last
//!   dispatch the gateway sent in the session;
//! - no shard is ever closed with 4008 (rate limited);
//! - the gateway never receives two IDENTIFYs in one bucket within the identify window;
//! - every member request resolves exactly once; "shard finished chunking" comes once per
//!   READY, and "finished chunking" once;
//! - every shard is connected after the settling time, and the agenda stays bounded.
//!
//! A failure carries its seed and the last events before it; the same seed and settings
//! reproduce it exactly.
//!
//! ```
//! use std::time::Duration;
//! use gateway_sim::{SimConfig, run};
//!
//! let report = run(SimConfig::new(7, 4, Duration::from_secs(120))).expect("the invariants hold");
//! assert_eq!(report.shards, 4);
//! assert!(report.readies >= 4);
//! ```

// Tests read the clock to build inputs; the library itself does not (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
mod check;
mod client;
mod cluster;
mod config;
mod faults;
mod net;
mod proxy;
mod report;
mod sim;

pub use cluster::{ClusterConfig, ClusterReport, run_cluster};
pub use config::SimConfig;
pub use proxy::{ProxySimConfig, ProxySimReport, run_proxy};
pub use report::{Failure, Report};

/// Runs one simulation to the end.
pub fn run(config: SimConfig) -> Result<Report, Failure> {
    sim::Sim::new(config).run()
}
