//! A consumer process: reads every shard's events from Redis Streams in a consumer group and
//! shows, per shard, the session, the last sequence number, and whether any is missing.
//!
//! ```sh
//! cargo run -p gateway-cluster --example consumer
//! ```

// Examples and tests read the clock; the core does not (see clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway_cluster::{Consumer, ConsumerConfig};
use gateway_shard::RedisTarget;

#[derive(Debug, Parser)]
struct Args {
    /// Redis.
    /// Redis: a URL, or a Redis Cluster's node URLs, comma-separated.
    /// (Read after the flags, so that a bad value's error hides its password.)
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// The application.
    #[arg(long, default_value = "demo")]
    app: String,
    /// The bot's shard count.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// This consumer's name in the group.
    #[arg(long, default_value = "c1")]
    name: String,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long = "for")]
    run_for: Option<u64>,
}

#[derive(Default)]
struct Stream {
    session: String,
    last: u64,
    events: u64,
    missing: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut config = ConsumerConfig::new(&args.app, "demo-consumers", &args.name, 0..args.shards);
    config.block = Duration::from_millis(500);
    config.claim_idle = Duration::from_secs(10);
    let redis: RedisTarget = args.redis.parse()?;
    let mut consumer = Consumer::connect(&redis, config).await?;
    let started = Instant::now();
    let mut streams: BTreeMap<u32, Stream> = BTreeMap::new();
    let mut last_report = Instant::now();
    println!(
        "reading {} shards of {}; a gap in any shard's sequence is shown as MISSING",
        args.shards, args.app
    );
    loop {
        if args
            .run_for
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        let batch = tokio::select! {
            batch = consumer.next() => batch?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for d in &batch {
            let s = streams.entry(d.shard).or_default();
            if d.session != s.session {
                println!(
                    "[{:>6.1}s] shard {}: session {} ({} at #{})",
                    started.elapsed().as_secs_f64(),
                    d.shard,
                    d.session,
                    d.name,
                    d.seq
                );
                s.session.clone_from(&d.session);
            } else if d.seq != s.last + 1 {
                s.missing += d.seq.saturating_sub(s.last + 1);
                println!(
                    "[{:>6.1}s] shard {}: MISSING #{}..#{}",
                    started.elapsed().as_secs_f64(),
                    d.shard,
                    s.last + 1,
                    d.seq - 1
                );
            }
            s.last = d.seq;
            s.events += 1;
        }
        consumer.ack(&batch).await?;
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            let line: Vec<String> = streams
                .iter()
                .map(|(shard, s)| {
                    format!(
                        "{shard}: #{} ({} events, {} missing)",
                        s.last, s.events, s.missing
                    )
                })
                .collect();
            println!(
                "[{:>6.1}s] {} | repeats dropped {}",
                started.elapsed().as_secs_f64(),
                line.join("  "),
                consumer.repeats
            );
        }
    }
    let missing: u64 = streams.values().map(|s| s.missing).sum();
    println!(
        "done: {} shards, {missing} missing, {} repeats dropped",
        streams.len(),
        consumer.repeats
    );
    Ok(())
}
