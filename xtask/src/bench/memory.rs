//! Memory per connected shard: N shards in this process, the testkit server in another, over
//! loopback, heartbeating.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gateway_codec::Compression;
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::identify::LocalIdentifyQueue;
use gateway_shard::{ShardConfig, ShardEvent, ShardGroup, ShardGroupConfig};
use serde::{Deserialize, Serialize};

use super::alloc;
use super::sys::{self, rss_bytes};

/// Members per guild: a GUILD_CREATE of about 100 KB with presences.
const MEMBERS: usize = 250;

/// The scenario after one GUILD_CREATE of about 100 KB per shard.
pub(crate) const AFTER_100_KB: &str = "after 100 KB";
/// The scenario after ten GUILD_CREATEs, about 1 MB, per shard.
pub(crate) const AFTER_1_MB: &str = "after 1 MB";

/// One scenario's figures.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MemoryFigure {
    pub(crate) compression: String,
    pub(crate) shards: usize,
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

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn testkit_binary(root: &std::path::Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "gateway-testkit",
            "--bin",
            "gateway-testkit",
        ])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("building the testkit failed".into());
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release").join("gateway-testkit"))
}

fn serve(
    binary: &std::path::Path,
    guilds: usize,
    shards: usize,
) -> Result<(Server, String), String> {
    let mut child = Command::new(binary)
        .args(["serve", "--port", "0", "--uniform", "--seed", "1"])
        .args([
            "--guilds",
            &guilds.to_string(),
            "--members",
            &MEMBERS.to_string(),
            "--shards",
            &shards.to_string(),
        ])
        .args(["--max-concurrency", "16", "--identify-window-ms", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let server = Server(child);
    let url = BufReader::new(stdout)
        .lines()
        .next()
        .ok_or("no URL")?
        .map_err(|e| e.to_string())?;
    Ok((server, url))
}

/// The hidden `cargo xtask memory-probe` subcommand: one scenario in a fresh process.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeOptions {
    /// The fake gateway's URL.
    #[arg(long)]
    url: String,
    /// zlib-stream or zstd-stream.
    #[arg(long)]
    compression: String,
    /// Shards to connect.
    #[arg(long)]
    shards: usize,
    /// GUILD_CREATEs to wait for, over all shards.
    #[arg(long)]
    guilds: usize,
}

/// Runs one scenario and prints its figure as one JSON line.
pub(crate) fn probe(options: &ProbeOptions) -> Result<(), String> {
    let compression = match options.compression.as_str() {
        "none" => Compression::None,
        other => Compression::from_query_value(other)
            .ok_or_else(|| format!("unknown compression {other}"))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let figure = runtime.block_on(measure(
        &options.url,
        compression,
        options.shards,
        options.guilds,
    ))?;
    println!(
        "{}",
        serde_json::to_string(&figure).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Connects `shards` shards and measures, for each compression, idle and after traffic. Each
/// scenario runs in a fresh process (`cargo xtask memory-probe`): memory freed by an earlier
/// scenario would otherwise be reused without showing in the resident-memory delta.
pub(crate) fn run(root: &std::path::Path, shards: usize) -> Result<Vec<MemoryFigure>, String> {
    let binary = testkit_binary(root)?;
    let probe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut figures = Vec::new();
    for (compression, scenario, guilds_per_shard) in [
        // No compression: the connection, session and channels alone, a baseline for the others.
        (Compression::None, "idle", 0),
        (Compression::ZlibStream, "idle", 0),
        (Compression::ZlibStream, AFTER_100_KB, 1),
        (Compression::ZstdStream, "idle", 0),
        (Compression::ZstdStream, AFTER_100_KB, 1),
        (Compression::ZstdStream, AFTER_1_MB, 10),
    ] {
        eprintln!("[bench] memory: {shards} shards, {compression}, {scenario}…");
        let guilds = guilds_per_shard * shards;
        let (_server, url) = serve(&binary, guilds, shards)?;
        let output = Command::new(&probe)
            .args(["memory-probe", "--url", &url, "--compression"])
            .arg(compression.to_string())
            .args(["--shards", &shards.to_string()])
            .args(["--guilds", &guilds.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("{}: {e}", probe.display()))?;
        if !output.status.success() {
            return Err(format!("memory probe failed ({compression}, {scenario})"));
        }
        let figure: MemoryFigure =
            serde_json::from_slice(&output.stdout).map_err(|e| format!("memory probe: {e}"))?;
        figures.push(MemoryFigure {
            scenario: scenario.to_owned(),
            ..figure
        });
    }
    Ok(figures)
}

async fn measure(
    url: &str,
    compression: Compression,
    shards: usize,
    guilds: usize,
) -> Result<MemoryFigure, String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss0, heap0, malloc0) = (rss_bytes(), alloc::live_bytes(), sys::malloc());
    let intents = Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES;
    let shard = ShardConfig::new(Token::new("testkit-token"), intents)
        .with_gateway_url(url)
        .with_compression(compression)
        .with_seed(1);
    let queue = Arc::new(LocalIdentifyQueue::with_window(Duration::ZERO));
    let mut config = ShardGroupConfig::new(shard, shards as u32, 16).with_identify_queue(queue);
    config.reconnect_concurrency = 64;
    let (group, mut events) = ShardGroup::spawn(config).map_err(|e| e.to_string())?;
    let (mut ready, mut created, mut received) = (0, 0, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while ready < shards || created < guilds {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| "shards not ready in 300 s")?;
        match event {
            Some((_, ShardEvent::Ready(_))) => ready += 1,
            Some((_, ShardEvent::Dispatch(d))) => {
                if let DispatchEvent::GuildCreate(g) = &d.event {
                    created += 1;
                    received += g.raw.get().len() as u64;
                }
            }
            Some(_) => {}
            None => return Err("events ended".into()),
        }
    }
    // Let the shards settle (their heartbeats go on), then measure.
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::timeout_at(settle, events.next()).await.is_ok() {}
    let (rss1, heap1, malloc1) = (rss_bytes(), alloc::live_bytes(), sys::malloc());
    group.close(false).await;
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / shards as f64 / 1024.0;
    let malloc = malloc0.zip(malloc1);
    let rust_heap = per(heap0, heap1);
    let malloc_in_use = malloc.map(|(a, b)| per(a.in_use, b.in_use));
    Ok(MemoryFigure {
        malloc_in_use_per_shard_kib: malloc_in_use,
        malloc_committed_per_shard_kib: malloc.map(|(a, b)| per(a.committed, b.committed)),
        c_only_per_shard_kib: malloc_in_use.map(|m| (m - rust_heap).max(0.0)),
        compression: compression.to_string(),
        shards,
        scenario: String::new(),
        received_per_shard: received / shards as u64,
        rss_per_shard_kib: per(rss0, rss1),
        rust_heap_per_shard_kib: rust_heap,
    })
}
