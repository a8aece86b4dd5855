//! The demo bot: one shard, events printed one line each, a summary at the end.
//!
//! ```sh
//! cargo run --example bot                 # against an embedded fake gateway (no token needed)
//! DISCORD_TOKEN=… cargo run --example bot # against Discord
//! GATEWAY_URL=ws://… DISCORD_TOKEN=… cargo run --example bot   # against any v10 gateway
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway_codec::Compression;
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::{Reconnect, Shard, ShardConfig, ShardEvent};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, WorldConfig};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

/// A demo bot on one shard.
#[derive(Debug, Parser)]
struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long = "for", value_name = "SECONDS")]
    run_for: Option<u64>,
    /// Transport compression: zlib, zstd or none.
    #[arg(long, default_value = "zlib")]
    compression: String,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
}

struct Summary {
    started: Instant,
    ready: bool,
    events: BTreeMap<String, u64>,
    reconnects: u64,
    resumes: u64,
    latencies: Vec<Duration>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let compression = match args.compression.as_str() {
        "zlib" | "zlib-stream" => Compression::ZlibStream,
        "zstd" | "zstd-stream" => Compression::ZstdStream,
        "none" => Compression::None,
        other => return Err(format!("unknown compression {other:?}: zlib, zstd or none").into()),
    };
    let token = std::env::var("DISCORD_TOKEN").ok();
    let url = std::env::var("GATEWAY_URL").ok();
    // Without a token and a URL: an embedded fake gateway with a seeded world and live traffic.
    let fake = match (&token, &url) {
        (None, None) => Some(Arc::new(start_fake_gateway().await?)),
        _ => None,
    };
    let (gateway_url, token) = match (&fake, url, token) {
        (Some(f), _, _) => (f.url().to_owned(), f.config().token.clone()),
        (None, Some(url), token) => (url, token.unwrap_or_else(|| "testkit-token".to_owned())),
        (None, None, Some(token)) => (gateway_shard::DISCORD_GATEWAY.to_owned(), token),
        (None, None, None) => unreachable!(),
    };
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::GUILD_MESSAGE_TYPING;
    println!(
        "connecting to {gateway_url} ({compression}){}",
        if fake.is_some() {
            ", the embedded fake gateway"
        } else {
            ""
        }
    );
    let config = ShardConfig::new(Token::new(token), intents)
        .with_gateway_url(gateway_url)
        .with_compression(compression);
    let started = Instant::now();
    let (shard, mut events) = match Shard::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("the shard could not start: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "shard 0 ready in {:.0?} as user {}",
        started.elapsed(),
        shard.user_id().map_or("?".into(), |u| u.to_string())
    );
    if let Some(f) = &fake {
        tokio::spawn(traffic(Arc::clone(f)));
    }
    let mut summary = Summary {
        started,
        ready: true,
        events: BTreeMap::new(),
        reconnects: 0,
        resumes: 0,
        latencies: Vec::new(),
    };
    let deadline = args
        .run_for
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    loop {
        let stop = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = stop => break,
            event = events.next() => match event {
                Some(event) => record(&mut summary, &event, args.quiet),
                None => break,
            },
        }
    }
    shard.close(false).await;
    if let Err(e) = shard.join().await {
        println!("the shard stopped with an error: {e}");
    }
    print_summary(&summary, shard.heartbeat_latency());
    Ok(())
}

async fn start_fake_gateway() -> std::io::Result<FakeGateway> {
    let config = GatewayConfig {
        heartbeat_interval: Duration::from_secs(5),
        world: WorldConfig::mixed(7, 6, 200),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await
}

/// Live traffic for the demo: messages, presences and typing, and once a RECONNECT to show a resume.
async fn traffic(gateway: Arc<FakeGateway>) {
    let world = gateway.world();
    let guilds = world.guilds();
    let mut n = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let Some(conn) = gateway.shard_connection(0) else {
            continue;
        };
        let g = &guilds[n as usize % guilds.len()];
        let (name, data) = match n % 3 {
            0 => ("MESSAGE_CREATE", world.message_create_json(g, n, 60)),
            1 => ("PRESENCE_UPDATE", world.presence_update_json(g, n as usize)),
            _ => ("TYPING_START", world.typing_start_json(g, n as usize)),
        };
        conn.dispatch(name, data);
        if n == 8 {
            conn.inject(Fault::Reconnect);
        }
        n += 1;
    }
}

fn record(summary: &mut Summary, event: &ShardEvent, quiet: bool) {
    let line = match event {
        ShardEvent::Connected { resuming } => {
            format!(
                "[shard 0] connected ({})",
                if *resuming { "resuming" } else { "identifying" }
            )
        }
        ShardEvent::Ready(r) => {
            summary.ready = true;
            format!(
                "[shard 0] #1 READY as {} with {} guilds",
                r.user.username,
                r.guilds.len()
            )
        }
        ShardEvent::Resumed { replayed } => {
            summary.resumes += 1;
            format!("[shard 0] RESUMED, {replayed} events replayed")
        }
        ShardEvent::Disconnected { code, reason, next } => {
            if *next != Reconnect::Stop {
                summary.reconnects += 1;
            }
            format!(
                "[shard 0] disconnected ({}): {reason}; next: {next:?}",
                code.map_or("no code".into(), |c| c.to_string())
            )
        }
        ShardEvent::HeartbeatAck { latency } => {
            summary.latencies.push(*latency);
            format!("[shard 0] heartbeat ACK in {latency:.1?}")
        }
        ShardEvent::Dispatch(d) => {
            *summary.events.entry(d.event.name().to_owned()).or_default() += 1;
            format!(
                "[shard 0] #{} {:<20} {}",
                d.seq,
                d.event.name(),
                describe(&d.event)
            )
        }
        other => format!("[shard 0] {other:?}"),
    };
    if !quiet {
        println!("{line}");
    }
}

/// A short summary of a dispatch.
fn describe(event: &DispatchEvent) -> String {
    match event {
        DispatchEvent::GuildCreate(g) => {
            let name = g
                .raw
                .deserialize::<sonic_rs::Value>()
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_owned));
            format!(
                "{} ({} members{})",
                name.unwrap_or_default(),
                g.member_count.unwrap_or(0),
                if g.large == Some(true) { ", large" } else { "" }
            )
        }
        DispatchEvent::GuildDelete(g) => format!(
            "guild {} {}",
            g.id,
            if g.is_outage() { "unavailable" } else { "left" }
        ),
        DispatchEvent::GuildMembersChunk(c) => format!(
            "guild {} chunk {}/{}",
            c.guild_id,
            c.chunk_index + 1,
            c.chunk_count
        ),
        DispatchEvent::RateLimited(r) => format!("retry after {} s", r.retry_after),
        DispatchEvent::Other(raw) => {
            let Ok(v) = raw.deserialize::<sonic_rs::Value>() else {
                return String::new();
            };
            match &*raw.name {
                "MESSAGE_CREATE" => {
                    let content = v["content"].as_str().unwrap_or("");
                    let short: String = content.chars().take(40).collect();
                    format!(
                        "{}: {short:?}",
                        v["author"]["username"].as_str().unwrap_or("?")
                    )
                }
                "PRESENCE_UPDATE" => format!(
                    "user {} is {}",
                    v["user"]["id"].as_str().unwrap_or("?"),
                    v["status"].as_str().unwrap_or("?")
                ),
                "TYPING_START" => {
                    format!("user {} is typing", v["user_id"].as_str().unwrap_or("?"))
                }
                _ => v
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .take(3)
                            .map(|(k, _)| k.to_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            }
        }
        _ => String::new(),
    }
}

fn print_summary(summary: &Summary, latency: Option<Duration>) {
    println!();
    println!("── summary after {:.1?} ──", summary.started.elapsed());
    println!("shards ready:     {}/1", u8::from(summary.ready));
    println!(
        "reconnects:       {} ({} resumed)",
        summary.reconnects, summary.resumes
    );
    let average = (!summary.latencies.is_empty())
        .then(|| summary.latencies.iter().sum::<Duration>() / summary.latencies.len() as u32);
    let show = |d: Option<Duration>| d.map_or("–".to_owned(), |d| format!("{d:.1?}"));
    println!(
        "latency:          last {}, average {} over {} ACKs",
        show(latency),
        show(average),
        summary.latencies.len()
    );
    println!("events by type:");
    for (name, count) in &summary.events {
        println!("  {name:<24} {count}");
    }
}
