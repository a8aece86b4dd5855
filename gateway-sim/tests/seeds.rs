//! Seeded runs of the whole stack on virtual time. Every seed that ever found a bug stays in
//! `FOUND`, with what it found.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
use std::time::Duration;

use gateway_sim::{
    ClusterConfig, ClusterReport, ProxySimConfig, ProxySimReport, SimConfig, run, run_cluster,
    run_proxy,
};

/// Seeds that found bugs: seed, shards, virtual seconds, and what they found (kept so that the
/// bugs stay fixed).
const FOUND: &[(u64, u32, u64, &str)] = &[
    (
        3,
        20,
        600,
        "an unreadable plain-JSON dispatch was skipped and lost for good: a sequence gap now resumes",
    ),
    (
        107,
        50,
        1800,
        "a corrupted READY was skipped and GUILD_CREATEs came before any READY: READY lost now re-identifies",
    ),
    (
        18,
        50,
        600,
        "the last dispatch before a quiet spell was unreadable and skipped: nothing brought it back; an unreadable payload now resumes",
    ),
];

fn check(config: SimConfig) {
    match run(config) {
        Ok(report) => assert!(report.readies >= u64::from(report.shards)),
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn seeds_that_found_bugs_stay_fixed() {
    for &(seed, shards, seconds, _) in FOUND {
        check(SimConfig::new(seed, shards, Duration::from_secs(seconds)));
    }
}

#[test]
fn a_quick_set_of_seeds_holds_every_invariant() {
    for seed in 0..8 {
        check(SimConfig::new(seed, 20, Duration::from_secs(600)));
    }
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::new(42, 10, Duration::from_secs(300));
    let first = run(config.clone());
    let second = run(config);
    assert_eq!(first, second);
}

/// Cluster seeds that found bugs: `(seed, nodes, shards, seconds, what it found)`.
const CLUSTER_FOUND: &[(u64, usize, u32, u64, &str)] = &[];

fn check_cluster(config: ClusterConfig) -> ClusterReport {
    match run_cluster(config) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn cluster_seeds_that_found_bugs_stay_fixed() {
    for &(seed, nodes, shards, seconds, _) in CLUSTER_FOUND {
        check_cluster(ClusterConfig::new(
            seed,
            nodes,
            shards,
            Duration::from_secs(seconds),
        ));
    }
}

#[test]
fn a_quick_set_of_cluster_seeds_holds_every_invariant_under_node_faults() {
    let mut faults = std::collections::BTreeMap::new();
    for seed in 0..40 {
        let report = check_cluster(ClusterConfig::new(seed, 3, 6, Duration::from_secs(600)));
        assert!(report.dispatches > 0 && report.entries >= report.dispatches);
        for (kind, n) in report.faults {
            *faults.entry(kind).or_insert(0) += n;
        }
    }
    // Every kind of node fault was met.
    for kind in [
        "kill",
        "pause past the lease",
        "partition",
        "rolling restart",
        "redis slow",
    ] {
        assert!(
            faults.get(kind).is_some_and(|n| *n > 0),
            "{kind}: {faults:?}"
        );
    }
}

#[test]
fn a_cluster_seed_replays_exactly() {
    let config = ClusterConfig::new(42, 3, 4, Duration::from_secs(300));
    assert_eq!(run_cluster(config.clone()), run_cluster(config));
}

/// Seeds of the proxy simulation that found bugs; each must hold every invariant now.
const PROXY_FOUND: &[u64] = &[];

fn check_proxy(config: ProxySimConfig) -> ProxySimReport {
    match run_proxy(config) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn proxy_seeds_that_found_bugs_stay_fixed() {
    for &seed in PROXY_FOUND {
        check_proxy(ProxySimConfig::new(seed, 6, Duration::from_secs(600)));
    }
}

#[test]
fn a_quick_set_of_proxy_seeds_holds_every_invariant_under_client_faults() {
    let mut faults = std::collections::BTreeMap::new();
    let mut closes = std::collections::BTreeMap::new();
    for seed in 0..20 {
        let report = check_proxy(ProxySimConfig::new(seed, 6, Duration::from_secs(600)));
        assert!(report.upstream > 0 && report.delivered > 0);
        for (kind, n) in report.faults {
            *faults.entry(kind).or_insert(0) += n;
        }
        for (code, n) in report.closes {
            *closes.entry(code).or_insert(0) += n;
        }
    }
    for kind in ["drop", "lag", "flood", "silent", "close 1000"] {
        assert!(
            faults.get(kind).is_some_and(|n| *n > 0),
            "{kind}: {faults:?}"
        );
    }
    // Floods, silences, stalls, and resumes from outside the log were each met and closed.
    for code in [4000, 4007, 4008, 4009] {
        assert!(
            closes.get(&code).is_some_and(|n| *n > 0),
            "{code}: {closes:?}"
        );
    }
}

#[test]
fn a_proxy_seed_replays_exactly() {
    let config = ProxySimConfig::new(7, 4, Duration::from_secs(300));
    assert_eq!(run_proxy(config.clone()), run_proxy(config));
}
