//! `cargo xtask sim`: seeded runs of the whole stack on virtual time (see `gateway-sim`), with
//! the virtual time simulated per wall-clock second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gateway_sim::{
    ClusterConfig, ClusterReport, ProxySimConfig, ProxySimReport, Report, SimConfig, run,
    run_cluster, run_proxy,
};

/// Options of `cargo xtask sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Shards per run.
    #[arg(long, default_value_t = 50)]
    shards: u32,
    /// Virtual minutes per run (faults throughout; a quiet settling time follows).
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// How many seeds to run, from --first-seed.
    #[arg(long, default_value_t = 50)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay one seed (with the settings it failed with) and print its report or failure.
    #[arg(long)]
    seed: Option<u64>,
    /// Faults per shard per virtual hour (with --cluster: node faults per node per hour).
    #[arg(long)]
    faults: Option<f64>,
    /// Run the cluster simulation instead: nodes sharing the shards through an in-memory Redis,
    /// under node faults (kill, pause past the lease, partition from Redis, Redis latency,
    /// rolling restart).
    #[arg(long)]
    cluster: bool,
    /// Nodes per cluster run.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Run the proxy simulation instead: gateway-proxy's core with clients that lag, drop and
    /// resume, flood and fall silent (with --faults: client faults per client per minute).
    #[arg(long)]
    proxy: bool,
    /// Clients per proxy run.
    #[arg(long, default_value_t = 6)]
    clients: usize,
}

impl Options {
    fn config(&self, seed: u64) -> SimConfig {
        let mut config = SimConfig::new(seed, self.shards, Duration::from_secs(self.minutes * 60));
        if let Some(faults) = self.faults {
            config.faults_per_shard_hour = faults;
        }
        config
    }
}

/// Runs the seeds; false if one broke an invariant.
pub(crate) fn run_seeds(options: &Options) -> bool {
    if options.cluster {
        return run_cluster_seeds(options);
    }
    if options.proxy {
        return run_proxy_seeds(options);
    }
    if let Some(seed) = options.seed {
        let mut config = options.config(seed);
        config.trace = 200;
        return match run(config) {
            Ok(report) => {
                println!("{report:#?}");
                true
            }
            Err(failure) => {
                println!("{failure}");
                false
            }
        };
    }
    println!(
        "[sim] {} seeds from {} × {} shards × {} virtual minutes (+ settling)",
        options.seeds, options.first_seed, options.shards, options.minutes
    );
    let started = Instant::now();
    let mut reports: Vec<(Report, Duration)> = Vec::new();
    for seed in options.first_seed..options.first_seed + options.seeds {
        let wall = Instant::now();
        match run(options.config(seed)) {
            Ok(report) => reports.push((report, wall.elapsed())),
            Err(failure) => {
                println!("\nFAILED {failure}\n");
                println!(
                    "replay: cargo xtask sim --seed {seed} --shards {} --minutes {}",
                    options.shards, options.minutes
                );
                return false;
            }
        }
    }
    summarize(&reports, started.elapsed());
    true
}

fn summarize(reports: &[(Report, Duration)], wall: Duration) {
    let simulated: Duration = reports.iter().map(|(r, _)| r.simulated).sum();
    let run_wall: Duration = reports.iter().map(|(_, w)| *w).sum();
    let events: u64 = reports.iter().map(|(r, _)| r.events).sum();
    let sum = |f: fn(&Report) -> u64| reports.iter().map(|(r, _)| f(r)).sum::<u64>();
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for (r, _) in reports {
        for (k, v) in &r.faults {
            *faults.entry(k).or_default() += v;
        }
    }
    let shard_seconds: f64 = reports
        .iter()
        .map(|(r, _)| r.simulated.as_secs_f64() * f64::from(r.shards))
        .sum();
    println!(
        "{} seeds passed every invariant in {wall:.1?}",
        reports.len()
    );
    println!(
        "virtual time: {:.0} s simulated in {:.1} s of runs = {:.0}× real time ({:.0} shard-seconds per wall second)",
        simulated.as_secs_f64(),
        run_wall.as_secs_f64(),
        simulated.as_secs_f64() / run_wall.as_secs_f64().max(1e-9),
        shard_seconds / run_wall.as_secs_f64().max(1e-9)
    );
    println!(
        "events: {events} ({:.0} per wall second); dispatches delivered {}; READYs {}; RESUMEDs {}; IDENTIFYs {}",
        events as f64 / run_wall.as_secs_f64().max(1e-9),
        sum(|r| r.dispatches),
        sum(|r| r.readies),
        sum(|r| r.resumes),
        sum(|r| r.identifies),
    );
    let restarts = reports.iter().filter(|(r, _)| r.restarted).count();
    println!("gateway restarts: {restarts}");
    let faults: Vec<String> = faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("faults: {}", faults.join(", "));
    let peak = |f: fn(&Report) -> usize| reports.iter().map(|(r, _)| f(r)).max().unwrap_or(0);
    println!(
        "peaks: agenda {} events, gateway sessions {}, open member requests {}",
        peak(|r| r.peak_agenda),
        peak(|r| r.peak_server_sessions),
        peak(|r| r.peak_open_requests)
    );
}

impl Options {
    fn cluster_config(&self, seed: u64) -> ClusterConfig {
        let duration = Duration::from_secs(self.minutes * 60);
        let mut config = ClusterConfig::new(seed, self.nodes, self.shards, duration);
        if let Some(faults) = self.faults {
            config.faults_per_node_hour = faults;
        }
        config
    }
}

/// Runs the cluster seeds; false if one broke an invariant.
fn run_cluster_seeds(options: &Options) -> bool {
    let seeds = match options.seed {
        Some(seed) => seed..seed + 1,
        None => options.first_seed..options.first_seed + options.seeds,
    };
    println!(
        "[sim --cluster] {} seeds from {} × {} nodes × {} shards × {} virtual minutes (+ settling)",
        seeds.end - seeds.start,
        seeds.start,
        options.nodes,
        options.shards,
        options.minutes
    );
    let started = Instant::now();
    let mut reports: Vec<ClusterReport> = Vec::new();
    for seed in seeds {
        let mut config = options.cluster_config(seed);
        if options.seed.is_some() {
            config.trace = 200;
        }
        match run_cluster(config) {
            Ok(report) => reports.push(report),
            Err(failure) => {
                println!("\nFAILED {failure}\n");
                println!(
                    "replay: cargo xtask sim --cluster --seed {seed} --nodes {} --shards {} --minutes {}",
                    options.nodes, options.shards, options.minutes
                );
                return false;
            }
        }
    }
    let wall = started.elapsed();
    let sum = |f: fn(&ClusterReport) -> u64| reports.iter().map(f).sum::<u64>();
    let simulated: Duration = reports.iter().map(|r| r.simulated).sum();
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut changes: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &reports {
        tally(&mut faults, &r.faults);
        tally(&mut changes, &r.lease_changes);
    }
    print_pace(reports.len(), wall, simulated);
    println!(
        "dispatches sent {}; stream entries {} ({} repeats skipped and {} fenced entries refused by the stream); IDENTIFYs {}; RESUMEs {}",
        sum(|r| r.dispatches),
        sum(|r| r.entries),
        sum(|r| r.repeats),
        sum(|r| r.fenced),
        sum(|r| r.identifies),
        sum(|r| r.resumes),
    );
    println!("node faults: {}", join(&faults));
    println!("leases: {}", join(&changes));
    true
}

/// Runs the proxy seeds; false if one broke an invariant.
fn run_proxy_seeds(options: &Options) -> bool {
    let seeds = match options.seed {
        Some(seed) => seed..seed + 1,
        None => options.first_seed..options.first_seed + options.seeds,
    };
    println!(
        "[sim --proxy] {} seeds from {} × {} clients × {} virtual minutes (+ settling)",
        seeds.end - seeds.start,
        seeds.start,
        options.clients,
        options.minutes
    );
    let started = Instant::now();
    let mut reports: Vec<ProxySimReport> = Vec::new();
    for seed in seeds {
        let duration = Duration::from_secs(options.minutes * 60);
        let mut config = ProxySimConfig::new(seed, options.clients, duration);
        if let Some(faults) = options.faults {
            config.faults_per_client_minute = faults;
        }
        if options.seed.is_some() {
            config.trace = 200;
        }
        match run_proxy(config) {
            Ok(report) => reports.push(report),
            Err(failure) => {
                println!("\nFAILED {failure}\n");
                println!(
                    "replay: cargo xtask sim --proxy --seed {seed} --clients {} --minutes {}",
                    options.clients, options.minutes
                );
                return false;
            }
        }
    }
    let wall = started.elapsed();
    let sum = |f: fn(&ProxySimReport) -> u64| reports.iter().map(f).sum::<u64>();
    let simulated: Duration = reports.iter().map(|r| r.simulated).sum();
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut closes: BTreeMap<u16, u64> = BTreeMap::new();
    for r in &reports {
        tally(&mut faults, &r.faults);
        tally(&mut closes, &r.closes);
    }
    print_pace(reports.len(), wall, simulated);
    println!(
        "upstream dispatches {}; delivered to clients {}; RESUMEs {}; new IDENTIFYs to the proxy {}",
        sum(|r| r.upstream),
        sum(|r| r.delivered),
        sum(|r| r.resumes),
        sum(|r| r.reidentifies),
    );
    println!("client faults: {}", join(&faults));
    println!("closes by the proxy: {}", join(&closes));
    true
}

/// Adds `from`'s counts into `into`.
fn tally<K: Ord + Copy>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(*k).or_default() += v;
    }
}

/// `k v, k v, …`.
fn join<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first lines of a sweep's summary: seeds passed, and virtual time against the wall's.
fn print_pace(seeds: usize, wall: Duration, simulated: Duration) {
    println!("{seeds} seeds passed every invariant in {wall:.1?}");
    println!(
        "virtual time: {:.0} s simulated = {:.0}× real time",
        simulated.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9)
    );
}
