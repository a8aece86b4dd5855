//! Memory per connected shard, our side: `cargo xtask memory-probe` connects N shards in a fresh
//! process to the testkit server in another, over loopback, heartbeating, and prints its figures
//! (the bench runs it beside twilight's probe, see `versus`).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use gateway_codec::Compression;
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::identify::LocalIdentifyQueue;
use gateway_shard::{ShardConfig, ShardEvent, ShardGroup, ShardGroupConfig};
use serde::{Deserialize, Serialize};

use super::alloc;
use super::sys::{self, rss_bytes};

/// The scenario after one GUILD_CREATE of about 100 KB per shard.
pub(crate) const AFTER_100_KB: &str = "after 100 KB";
/// The scenario after ten GUILD_CREATEs, about 1 MB, per shard.
pub(crate) const AFTER_1_MB: &str = "after 1 MB";

/// One scenario's figures for one client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemoryFigure {
    /// `ours`, or the peer measured beside us (set by the bench, not the probe).
    #[serde(default)]
    pub(crate) client: String,
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

/// A child process killed when dropped (the fake gateway).
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds `gateway-testkit` in release and returns its path.
pub(crate) fn testkit_binary(root: &std::path::Path) -> Result<PathBuf, String> {
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
    /// Once READY and the GUILD_CREATEs came, print `ready` and wait for this many more
    /// dispatches over all shards (the bench then asks the gateway for them).
    #[arg(long, default_value_t = 0)]
    then: usize,
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
        options.then,
    ))?;
    println!(
        "{}",
        serde_json::to_string(&figure).map_err(|e| e.to_string())?
    );
    Ok(())
}

async fn measure(
    url: &str,
    compression: Compression,
    shards: usize,
    guilds: usize,
    then: usize,
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
    if then > 0 {
        println!("ready");
        let mut dispatched = 0;
        while dispatched < then {
            let event = tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| "dispatches not received in 300 s")?;
            match event {
                Some((_, ShardEvent::Dispatch(_))) => dispatched += 1,
                Some(_) => {}
                None => return Err("events ended".into()),
            }
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
        client: String::new(),
        compression: compression.to_string(),
        shards,
        scenario: String::new(),
        received_per_shard: received / shards as u64,
        rss_per_shard_kib: per(rss0, rss1),
        rust_heap_per_shard_kib: rust_heap,
    })
}
