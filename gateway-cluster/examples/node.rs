//! One shard process of a bot split across processes on Redis. Start two, kill one, and watch
//! the other take its shards over and resume them; stop one with Ctrl-C (or SIGTERM) and watch
//! it hand its shards over without an IDENTIFY.
//!
//! ```sh
//! cargo run -p gateway-cluster --example node -- --gateway ws://127.0.0.1:PORT --name a
//! ```

// Examples and tests read the clock; the core does not (see clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use clap::Parser;
use gateway_cluster::{ClusterNode, NodeConfig, NodeEvent};
use gateway_model::{Intents, Token};
use gateway_shard::{RedisTarget, ShardConfig, ShardEvent};

#[derive(Debug, Parser)]
struct Args {
    /// Redis.
    /// Redis: a URL, or a Redis Cluster's node URLs, comma-separated.
    /// (Read after the flags, so that a bad value's error hides its password.)
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// The gateway (the fake one's URL, or wss://gateway.discord.gg with DISCORD_TOKEN).
    #[arg(long)]
    gateway: String,
    /// The application (every Redis key starts with {app}:).
    #[arg(long, default_value = "demo")]
    app: String,
    /// This process's name (unique among the application's processes).
    #[arg(long)]
    name: String,
    /// The bot's shard count.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// The most shards this process runs.
    #[arg(long, default_value_t = 4)]
    max_shards: u32,
    /// The bot's max_concurrency.
    #[arg(long, default_value_t = 4)]
    max_concurrency: u32,
    /// Identify window in milliseconds (the fake gateway's --identify-window-ms).
    #[arg(long, default_value_t = 5000)]
    identify_window_ms: u64,
    /// Serve metrics to Prometheus at this address, e.g. 127.0.0.1:9100.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(addr) = args.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()?;
        println!("metrics at http://{addr}/metrics");
    }
    let token = std::env::var("DISCORD_TOKEN").unwrap_or_else(|_| "testkit-token".to_owned());
    let shard =
        ShardConfig::new(Token::new(token), Intents::GUILDS).with_gateway_url(&args.gateway);
    let mut config = NodeConfig::new(
        args.redis.parse::<RedisTarget>()?,
        &args.app,
        &args.name,
        shard,
        args.shards,
    );
    config.max_shards = args.max_shards;
    config.max_concurrency = args.max_concurrency;
    config.identify_window = Duration::from_millis(args.identify_window_ms);
    let started = Instant::now();
    let (node, mut events) = ClusterNode::start(config).await?;
    println!("[{:>6.1}s] {} started", 0.0, args.name);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            event = events.next() => match event {
                Some(event) => say(started, &event),
                None => break,
            },
        }
    }
    println!(
        "[{:>6.1}s] shutting down: handing the shards over",
        started.elapsed().as_secs_f64()
    );
    let shutdown = node.shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            done = &mut shutdown => {
                done?;
                break;
            }
            Some(event) = events.next() => say(started, &event),
        }
    }
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(10), events.next()).await
    {
        say(started, &event);
    }
    println!("[{:>6.1}s] stopped", started.elapsed().as_secs_f64());
    Ok(())
}

fn say(started: Instant, event: &NodeEvent) {
    let at = started.elapsed().as_secs_f64();
    let line = match event {
        NodeEvent::Took {
            shard,
            token,
            resuming: Some(r),
        } => {
            format!(
                "shard {shard}: lease taken (token {token}); resuming session {} from #{}",
                r.session_id, r.sequence
            )
        }
        NodeEvent::Took {
            shard,
            token,
            resuming: None,
        } => {
            format!("shard {shard}: lease taken (token {token}); no stored session: identifying")
        }
        NodeEvent::Lost { shard, reason } => {
            format!("shard {shard}: lease lost ({reason}); stopped")
        }
        NodeEvent::Released { shard, session } => match session {
            Some(s) => format!(
                "shard {shard}: handed over: session {} at #{} stored, lease released",
                s.session_id, s.sequence
            ),
            None => format!("shard {shard}: lease released"),
        },
        NodeEvent::Shard(shard, ShardEvent::Ready(ready)) => {
            format!("shard {shard}: READY, session {}", ready.session_id)
        }
        NodeEvent::Shard(shard, ShardEvent::Resumed { replayed, seq }) => {
            format!("shard {shard}: RESUMED at #{seq} ({replayed} replayed)")
        }
        NodeEvent::Shard(shard, ShardEvent::Disconnected { code, reason, .. }) => {
            format!("shard {shard}: disconnected ({code:?}, {reason})")
        }
        NodeEvent::Shard(_, _) => return,
        other => format!("{other:?}"),
    };
    println!("[{at:>6.1}s] {line}");
}
