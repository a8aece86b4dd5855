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
use serde::Serialize;

use super::alloc;

/// Members per guild: a GUILD_CREATE of about 100 KB with presences.
const MEMBERS: usize = 250;

/// One scenario's figures.
#[derive(Debug, Serialize)]
pub(crate) struct MemoryFigure {
    pub(crate) compression: String,
    pub(crate) shards: usize,
    pub(crate) scenario: String,
    /// GUILD_CREATE bytes (JSON) each shard received on average.
    pub(crate) received_per_shard: u64,
    pub(crate) rss_per_shard_kib: f64,
    pub(crate) rust_heap_per_shard_kib: f64,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
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

/// Connects `shards` shards and measures, for each compression, idle and after the traffic.
pub(crate) fn run(root: &std::path::Path, shards: usize) -> Result<Vec<MemoryFigure>, String> {
    let binary = testkit_binary(root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut figures = Vec::new();
    for (compression, guilds_per_shard) in
        [(Compression::ZlibStream, 1), (Compression::ZstdStream, 10)]
    {
        for (scenario, guilds) in [("idle", 0), ("after traffic", guilds_per_shard * shards)] {
            eprintln!("[bench] memory: {shards} shards, {compression}, {scenario}…");
            let (_server, url) = serve(&binary, guilds, shards)?;
            let figure = runtime.block_on(measure(&url, compression, shards, guilds))?;
            figures.push(MemoryFigure {
                scenario: scenario.to_owned(),
                ..figure
            });
        }
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
    let (rss0, heap0) = (rss_bytes(), alloc::live_bytes());
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
    let (rss1, heap1) = (rss_bytes(), alloc::live_bytes());
    group.close(false).await;
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / shards as f64 / 1024.0;
    Ok(MemoryFigure {
        compression: compression.to_string(),
        shards,
        scenario: String::new(),
        received_per_shard: received / shards as u64,
        rss_per_shard_kib: per(rss0, rss1),
        rust_heap_per_shard_kib: per(heap0, heap1),
    })
}
