//! What the probes print, one JSON line each: shared file for file by xtask (which reads it),
//! `xtask/shard-probe` and `xtask/twilight-probe` (which write it).

use serde::{Deserialize, Serialize};

/// One memory scenario's figures for one client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemoryFigure {
    /// `ours`, or the peer measured beside us (set by the bench, not the probe).
    #[serde(default)]
    pub(crate) client: String,
    pub(crate) compression: String,
    pub(crate) shards: usize,
    /// Set by the bench, not the probe.
    #[serde(default)]
    pub(crate) scenario: String,
    /// GUILD_CREATE bytes (JSON) each shard received on average.
    pub(crate) received_per_shard: u64,
    pub(crate) rss_per_shard_kib: f64,
    pub(crate) rust_heap_per_shard_kib: f64,
    /// C malloc's bytes in use per shard (Rust's heap included; glibc only).
    pub(crate) malloc_in_use_per_shard_kib: Option<f64>,
    /// What malloc holds from the system per shard (arenas and mmapped chunks; glibc only).
    pub(crate) malloc_committed_per_shard_kib: Option<f64>,
    /// Allocated through C malloc but not through Rust (libzstd's state, for one): in use minus
    /// the Rust heap.
    pub(crate) c_only_per_shard_kib: Option<f64>,
}

/// Memory figures per shard from two snapshots, `(resident, Rust heap, malloc)` before and
/// after, over `shards` shards.
pub(crate) fn memory_figure(
    compression: &str,
    shards: usize,
    received: u64,
    before: (u64, u64, Option<super::sys::Malloc>),
    after: (u64, u64, Option<super::sys::Malloc>),
) -> MemoryFigure {
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / shards.max(1) as f64 / 1024.0;
    let malloc = before.2.zip(after.2);
    let rust_heap = per(before.1, after.1);
    let malloc_in_use = malloc.map(|(a, b)| per(a.in_use, b.in_use));
    MemoryFigure {
        client: String::new(),
        compression: compression.to_owned(),
        shards,
        scenario: String::new(),
        received_per_shard: received / shards.max(1) as u64,
        rss_per_shard_kib: per(before.0, after.0),
        rust_heap_per_shard_kib: rust_heap,
        malloc_in_use_per_shard_kib: malloc_in_use,
        malloc_committed_per_shard_kib: malloc.map(|(a, b)| per(a.committed, b.committed)),
        c_only_per_shard_kib: malloc_in_use.map(|m| (m - rust_heap).max(0.0)),
    }
}

/// One client's end-to-end run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ClientRun {
    pub(crate) events: usize,
    /// The process's CPU time (every thread) from `ready` to the last dispatch.
    pub(crate) cpu_ns: u64,
    pub(crate) wall_ns: u64,
    /// Rust allocations over the same span (the counting allocator).
    #[serde(default)]
    pub(crate) allocations: u64,
}

/// Parses `--name value` from a probe's arguments.
pub(crate) fn flag(args: &[String], name: &str) -> Result<String, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| format!("missing {name}"))
}

/// Parses `--name N`.
pub(crate) fn number(args: &[String], name: &str) -> Result<usize, String> {
    flag(args, name)?
        .parse()
        .map_err(|e| format!("{name}: {e}"))
}

/// A probe's end: its JSON line on stdout and success, or the error on stderr and failure.
pub(crate) fn finish(probe: &str, result: Result<String, String>) -> std::process::ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{probe}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One client's run through a numbered backlog (`{"i": N, …}` dispatches queued at once): what
/// reached the user's loop, counted as it arrived.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BacklogRun {
    /// Dispatches queued.
    pub(crate) queued: u64,
    /// Backlog dispatches the user's loop saw, repeats included.
    pub(crate) received: u64,
    /// The longest prefix of the backlog seen whole and in order.
    pub(crate) in_order: u64,
    /// Dispatches seen again.
    pub(crate) repeats: u64,
    /// Dispatches skipped (a later one came first, and they never did).
    pub(crate) missing: u64,
    /// Whether the last dispatch arrived before the probe gave up.
    pub(crate) finished: bool,
    /// From `ready` to the last dispatch, or to giving up.
    pub(crate) wall_ms: u64,
    /// The number after the highest seen.
    #[serde(skip)]
    next: u64,
}

impl BacklogRun {
    /// A run of `queued` dispatches, none seen yet.
    pub(crate) fn new(queued: u64) -> Self {
        Self {
            queued,
            ..Self::default()
        }
    }

    /// Counts the dispatch numbered `n`.
    pub(crate) fn see(&mut self, n: u64) {
        self.received += 1;
        if n < self.next {
            self.repeats += 1;
            return;
        }
        if n > self.next {
            self.missing += n - self.next;
        } else if self.missing == 0 {
            self.in_order += 1;
        }
        self.next = n + 1;
        self.finished = self.next >= self.queued;
    }

    /// Whether every dispatch arrived once and in order.
    pub(crate) fn whole(&self) -> bool {
        self.finished && self.in_order == self.queued && self.repeats == 0 && self.missing == 0
    }
}

/// A backlog probe's arguments: `--events N --pause-ms P --work-us W --give-up-ms G`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BacklogArgs {
    /// Dispatches queued.
    pub(crate) events: u64,
    /// How long the user's loop leaves its events unread after `ready`.
    pub(crate) pause: std::time::Duration,
    /// CPU time the user's loop spends on each backlog dispatch.
    pub(crate) work: std::time::Duration,
    /// How long after `ready` the probe gives up.
    pub(crate) give_up: std::time::Duration,
}

impl BacklogArgs {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let ms = |name| number(args, name).map(|n| std::time::Duration::from_millis(n as u64));
        Ok(Self {
            events: number(args, "--events")? as u64,
            pause: ms("--pause-ms")?,
            work: std::time::Duration::from_micros(number(args, "--work-us")? as u64),
            give_up: ms("--give-up-ms")?,
        })
    }
}

/// The number of a backlog dispatch: the `i` that opens its `d` (in a whole payload or in `d`).
pub(crate) fn backlog_number(text: &str) -> Option<u64> {
    let at = text.find("{\"i\":")? + 5;
    let digits = text[at..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// Spends `work` of CPU time on this thread (a handler that takes time), without yielding.
pub(crate) fn spin(work: std::time::Duration) {
    if work.is_zero() {
        return;
    }
    let start = std::time::Instant::now();
    while start.elapsed() < work {
        std::hint::spin_loop();
    }
}
