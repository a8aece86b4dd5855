//! The demo bot: a group of shards with the chunk tracker, events printed one line each, a
//! summary at the end.
//!
//! ```sh
//! cargo run --example bot                 # against an embedded fake gateway (no token needed)
//! DISCORD_TOKEN=… cargo run --example bot # against Discord
//! GATEWAY_URL=ws://… DISCORD_TOKEN=… cargo run --example bot   # against any v10 gateway
//! ```

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway_chunking::{ChunkEvent, ChunkTracker, TrackedEvent, TrackerConfig};
use gateway_codec::Compression;
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::{
    Reconnect, SessionState, Shard, ShardConfig, ShardError, ShardEvent, ShardGroup,
    ShardGroupConfig, StartProgress,
};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, WorldConfig};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

/// A demo bot: a group of shards against the embedded fake gateway, Discord, or any v10 gateway.
#[derive(Debug, Parser)]
struct Args {
    /// How many shards to run (identified in buckets of --max-concurrency, 5 s apart). Default:
    /// 1 against a fake gateway; on Discord, what `GET /gateway/bot` recommends.
    #[arg(long)]
    shards: Option<u32>,
    /// The bot's max_concurrency (identify buckets). Default: 4 against the fake gateway, else 1.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long = "for", value_name = "SECONDS")]
    run_for: Option<u64>,
    /// Transport compression: zlib, zstd or none.
    #[arg(long, default_value = "zlib")]
    compression: String,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
    /// Request the member lists of large guilds (needs GUILD_MEMBERS; on by default against the
    /// embedded fake gateway).
    #[arg(long)]
    chunk: bool,
}

struct Summary {
    started: Instant,
    shards: u32,
    ready: u32,
    ready_order: Vec<(u32, Duration)>,
    events: BTreeMap<String, u64>,
    reconnects: u64,
    resumes: u64,
    latencies: Vec<Duration>,
    chunking: Vec<String>,
    /// Complete, incomplete, missed guilds over all shards.
    chunk_totals: [usize; 3],
    requests_complete: usize,
}

impl Summary {
    fn new(started: Instant, shards: u32) -> Self {
        Self {
            started,
            shards,
            ready: 0,
            ready_order: Vec::new(),
            events: BTreeMap::new(),
            reconnects: 0,
            resumes: 0,
            latencies: Vec::new(),
            chunking: Vec::new(),
            chunk_totals: [0; 3],
            requests_complete: 0,
        }
    }
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
    let on_discord = token.is_some() && url.is_none();
    let fake = match (&token, &url) {
        (None, None) => Some(Arc::new(
            start_fake_gateway(
                args.shards.unwrap_or(1).max(1),
                args.max_concurrency.unwrap_or(4),
            )
            .await?,
        )),
        _ => None,
    };
    let (gateway_url, token) = match (&fake, url, token) {
        (Some(f), _, _) => (f.url().to_owned(), f.config().token.clone()),
        (None, Some(url), token) => (url, token.unwrap_or_else(|| "testkit-token".to_owned())),
        (None, None, Some(token)) => (gateway_shard::DISCORD_GATEWAY.to_owned(), token),
        (None, None, None) => unreachable!(),
    };
    let chunk = args.chunk || fake.is_some();
    let mut intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::GUILD_MESSAGE_TYPING;
    if chunk {
        intents |= Intents::GUILD_MEMBERS;
    }
    let mut config = ShardConfig::new(Token::new(token), intents)
        .with_gateway_url(gateway_url)
        .with_compression(compression);
    // On Discord with no --shards: the shard count, max_concurrency, URL and session start
    // budget that GET /gateway/bot gives, as ShardGroupConfig::recommended would.
    let recommended = match args.shards {
        None if on_discord => Some(
            gateway_shard::fetch_gateway_bot(gateway_shard::DISCORD_API, &config.token, &[], None)
                .await?,
        ),
        _ => None,
    };
    let (shards, max_concurrency) = match &recommended {
        Some(info) => (
            info.shards.max(1),
            info.session_start_limit.max_concurrency.max(1),
        ),
        None => (
            args.shards.unwrap_or(1).max(1),
            args.max_concurrency
                .unwrap_or(if fake.is_some() { 4 } else { 1 }),
        ),
    };
    if let Some(info) = &recommended {
        config.gateway_url.clone_from(&info.url);
        let limit = info.session_start_limit;
        println!(
            "GET /gateway/bot: {shards} shard(s), {} of {} session starts left",
            limit.remaining, limit.total
        );
    }
    let gateway_url = config.gateway_url.clone();
    println!(
        "connecting {shards} shard(s) to {gateway_url} ({compression}, max_concurrency {max_concurrency}){}",
        if fake.is_some() {
            ", the embedded fake gateway"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let mut tracker_config = TrackerConfig::new(shards, 0..shards, intents);
    tracker_config.auto_chunk = chunk;
    // `--for` counts from here: it holds while the shards start, too.
    let deadline = args
        .run_for
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let group_config = match &recommended {
        Some(info) => ShardGroupConfig::from_gateway_bot(config, info),
        None => ShardGroupConfig::new(config, shards, max_concurrency),
    };
    let (group, events) = ShardGroup::launch(group_config)
        .await
        .unwrap_or_else(|e| fail(&e));
    let group = Arc::new(group);
    let (_tracker, mut events) = ChunkTracker::spawn(Arc::clone(&group), events, tracker_config);
    let mut summary = Summary::new(started, shards);
    // Events are printed as they come, while the shards start too (each attempt that fails).
    let mut starting = std::pin::pin!(group.wait_ready(progress_printer(started)));
    let mut ready = false;
    let stop = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break "Ctrl-C",
            () = until(deadline) => break "--for",
            result = &mut starting, if !ready => {
                result.unwrap_or_else(|e| fail(&e));
                ready = true;
                println!("all {shards} shard(s) ready in {:.1?}", started.elapsed());
                if let Some(f) = &fake {
                    tokio::spawn(traffic(Arc::clone(f)));
                }
            }
            event = events.next() => match event {
                Some(event) => record(&mut summary, &group, event, args.quiet),
                None => break "the events ended",
            },
        }
    };
    if !ready {
        println!(
            "stopped after {:.1?} while starting ({stop})",
            started.elapsed()
        );
        std::process::exit(1);
    }
    // Drain what was already received, then close.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(1), events.next()).await
    {
        record(&mut summary, &group, event, args.quiet);
    }
    group.close(false).await;
    if let Err(e) = group.join().await {
        println!("a shard stopped with an error: {e}");
    }
    let identify_order = fake.as_ref().map(|f| {
        f.recorded()
            .iter()
            .filter_map(|r| match r.command() {
                Some(gateway_model::Command::Identify(i)) => {
                    Some((i.shard.map_or(0, |s| s.number()), r.at))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    });
    print_summary(&summary, identify_order, max_concurrency);
    Ok(())
}

async fn start_fake_gateway(shards: u32, max_concurrency: u32) -> std::io::Result<FakeGateway> {
    let config = GatewayConfig {
        heartbeat_interval: Duration::from_secs(5),
        max_concurrency,
        // Every tenth guild is large (600 to 3,000 members), so there is something to chunk.
        world: WorldConfig::mixed(7, (10 * shards as usize).max(20), 300),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await
}

/// Live traffic for the demo: messages, presences and typing on every shard, and once a RECONNECT
/// to show a resume.
async fn traffic(gateway: Arc<FakeGateway>) {
    let world = gateway.world();
    let guilds = world.guilds();
    let mut n = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let g = &guilds[n as usize % guilds.len()];
        let total = gateway
            .connections()
            .iter()
            .filter_map(|c| c.shard)
            .map(|s| s.total())
            .max()
            .unwrap_or(1);
        let Some(conn) = gateway.shard_connection(g.id.shard_index(total)) else {
            n += 1;
            continue;
        };
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

fn record(summary: &mut Summary, group: &ShardGroup, event: TrackedEvent, quiet: bool) {
    match event {
        TrackedEvent::Shard(shard, event) => record_shard(summary, group, shard, &event, quiet),
        TrackedEvent::Chunk(event) => record_chunking(summary, &event, quiet),
    }
}

fn record_shard(
    summary: &mut Summary,
    group: &ShardGroup,
    shard: u32,
    event: &ShardEvent,
    quiet: bool,
) {
    let line = match event {
        ShardEvent::Connected { resuming } => {
            format!(
                "[shard {shard}] connected ({})",
                if *resuming { "resuming" } else { "identifying" }
            )
        }
        ShardEvent::Ready(r) => {
            summary.ready += 1;
            summary.ready_order.push((shard, summary.started.elapsed()));
            // READY's own sequence number (Discord's is 1, Spacebar's 0): the event has none.
            let seq = group.shard(shard).and_then(Shard::ready_sequence);
            format!(
                "[shard {shard}] #{} READY as {} with {} guilds",
                seq.map_or("?".to_owned(), |s| s.to_string()),
                r.user.username,
                r.guilds.len()
            )
        }
        ShardEvent::Resumed { replayed, .. } => {
            summary.resumes += 1;
            format!("[shard {shard}] RESUMED, {replayed} events replayed")
        }
        ShardEvent::Disconnected { code, reason, next } => {
            if *next != Reconnect::Stop {
                summary.reconnects += 1;
            }
            let code = code.map_or("no code".into(), |c| c.to_string());
            format!("[shard {shard}] disconnected ({code}): {reason}; next: {next:?}")
        }
        ShardEvent::MemberRequestsDropped { count } => {
            format!("[shard {shard}] {count} member request(s) of the ended session dropped")
        }
        ShardEvent::IdentifyPaused { reason, retry_in } => {
            format!("[shard {shard}] identify paused: {reason}; retrying in {retry_in:.1?}")
        }
        ShardEvent::ConnectFailed { reason, retry_in } => {
            format!("[shard {shard}] could not connect: {reason}; retrying in {retry_in:.1?}")
        }
        ShardEvent::HeartbeatAck { latency } => {
            summary.latencies.push(*latency);
            format!("[shard {shard}] heartbeat ACK in {latency:.1?}")
        }
        ShardEvent::Dispatch(d) => {
            *summary.events.entry(d.event.name().to_owned()).or_default() += 1;
            format!(
                "[shard {shard}] #{} {:<20} {}",
                d.seq,
                d.event.name(),
                describe(&d.event)
            )
        }
        other => format!("[shard {shard}] {other:?}"),
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

fn record_chunking(summary: &mut Summary, event: &ChunkEvent, quiet: bool) {
    let line = match event {
        ChunkEvent::RequestFinished(f) => {
            summary.requests_complete +=
                usize::from(f.outcome == gateway_chunking::Outcome::Complete);
            format!(
                "[chunks ] guild {} on shard {}: {:?}, {} chunk(s){}",
                f.guild_id,
                f.shard,
                f.outcome,
                f.chunk_count.unwrap_or(0),
                if f.missed_chunks.is_empty() {
                    String::new()
                } else {
                    format!(", missed {:?}", f.missed_chunks)
                }
            )
        }
        ChunkEvent::ShardFinishedChunking {
            shard,
            incomplete_guild_ids,
            missed_guild_ids,
            complete_guild_ids,
            took,
        } => {
            let line = format!(
                "shard {shard}: {} complete, {} incomplete, {} missed in {took:.1?}",
                complete_guild_ids.len(),
                incomplete_guild_ids.len(),
                missed_guild_ids.len()
            );
            summary.chunking.push(line.clone());
            summary.chunk_totals[0] += complete_guild_ids.len();
            summary.chunk_totals[1] += incomplete_guild_ids.len();
            summary.chunk_totals[2] += missed_guild_ids.len();
            format!("[chunks ] {line}")
        }
        ChunkEvent::FinishedChunking { took } => {
            let [complete, incomplete, missed] = summary.chunk_totals;
            let line = format!(
                "total: {complete} complete, {incomplete} incomplete, {missed} missed; {} member lists received; all shards finished chunking in {took:.1?}",
                summary.requests_complete
            );
            summary.chunking.push(line.clone());
            format!("[chunks ] {line}")
        }
        other => format!("[chunks ] {other:?}"),
    };
    if !quiet {
        println!("{line}");
    }
}

/// Prints the group's start progress: every shard's state when one changes, and each shard once
/// it is ready. Why a shard is not up yet comes as its events (each failed attempt, a close code
/// and its reason), printed as they come.
fn progress_printer(started: Instant) -> impl FnMut(&StartProgress) {
    let mut announced = BTreeSet::new();
    move |p| {
        let at = started.elapsed().as_secs_f64();
        let line: Vec<String> = p
            .shards
            .iter()
            .map(|(id, state)| format!("{id}:{}", short_state(*state)))
            .collect();
        println!(
            "[{at:>5.1}s] {}/{} ready  {}",
            p.ready,
            p.total,
            line.join(" ")
        );
        for (id, state) in &p.shards {
            if *state == SessionState::Connected && announced.insert(*id) {
                println!("[{at:>5.1}s] shard {id} is ready");
            }
        }
    }
}

/// Ends the demo when the shards cannot start.
fn fail(e: &ShardError) -> ! {
    eprintln!("the shards could not start: {e}");
    std::process::exit(1)
}

fn short_state(state: SessionState) -> &'static str {
    match state {
        SessionState::Disconnected => "down",
        SessionState::Connecting => "connecting",
        SessionState::WaitingToIdentify => "in-queue",
        SessionState::Identifying => "identifying",
        SessionState::Resuming => "resuming",
        SessionState::Connected => "ready",
        _ => "stopped",
    }
}

fn print_summary(
    summary: &Summary,
    identify_order: Option<Vec<(u32, Duration)>>,
    max_concurrency: u32,
) {
    println!();
    println!("── summary after {:.1?} ──", summary.started.elapsed());
    println!(
        "shards ready:     {}/{}",
        summary.ready.min(summary.shards),
        summary.shards
    );
    if let Some(order) = identify_order {
        let first = order.first().map_or(Duration::ZERO, |(_, t)| *t);
        let line: Vec<String> = order
            .iter()
            .map(|(id, at)| {
                format!(
                    "{id}@{:.1}s(b{})",
                    (*at - first).as_secs_f64(),
                    id % max_concurrency
                )
            })
            .collect();
        println!("identify order:   {}", line.join(" "));
    } else {
        let line: Vec<String> = summary
            .ready_order
            .iter()
            .map(|(id, at)| format!("{id}@{:.1}s", at.as_secs_f64()))
            .collect();
        println!("ready order:      {}", line.join(" "));
    }
    println!(
        "reconnects:       {} ({} resumed)",
        summary.reconnects, summary.resumes
    );
    let average = (!summary.latencies.is_empty())
        .then(|| summary.latencies.iter().sum::<Duration>() / summary.latencies.len() as u32);
    let show = |d: Option<Duration>| d.map_or("–".to_owned(), |d| format!("{d:.1?}"));
    println!(
        "latency:          average {} over {} ACKs",
        show(average),
        summary.latencies.len()
    );
    println!("member chunking:");
    for line in &summary.chunking {
        println!("  {line}");
    }
    println!("events by type:");
    for (name, count) in &summary.events {
        println!("  {name:<24} {count}");
    }
}

/// Waits until `deadline`, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
