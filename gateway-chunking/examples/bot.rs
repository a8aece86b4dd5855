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
    let compression = compression(&args.compression)?;
    let target = Target::choose(&args).await?;
    let chunk = args.chunk || target.fake.is_some();
    let mut intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::GUILD_MESSAGE_TYPING;
    if chunk {
        intents |= Intents::GUILD_MEMBERS;
    }
    let config = ShardConfig::new(Token::new(target.token.clone()), intents)
        .with_gateway_url(target.url.clone())
        .with_compression(compression);
    let plan = Plan::make(&args, &target, config).await?;
    let started = Instant::now();
    let mut tracker_config = TrackerConfig::new(plan.shards, 0..plan.shards, intents);
    tracker_config.auto_chunk = chunk;
    // `--for` counts from here: it holds while the shards start, too.
    let deadline = args
        .run_for
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let (group, events) = ShardGroup::launch(plan.group)
        .await
        .unwrap_or_else(|e| fail(&e));
    let group = Arc::new(group);
    let (_tracker, mut events) = ChunkTracker::spawn(Arc::clone(&group), events, tracker_config);
    let mut summary = Summary::new(started, plan.shards);
    let run = Run {
        group: &group,
        fake: target.fake.as_ref(),
        quiet: args.quiet,
        started,
        deadline,
    };
    let (stop, ready) = run.until_stopped(&mut events, &mut summary).await;
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
    let order = target.fake.as_deref().map(identify_order);
    print_summary(&summary, order, plan.max_concurrency);
    Ok(())
}

/// `--compression`'s value.
fn compression(name: &str) -> Result<Compression, String> {
    match name {
        "zlib" | "zlib-stream" => Ok(Compression::ZlibStream),
        "zstd" | "zstd-stream" => Ok(Compression::ZstdStream),
        "none" => Ok(Compression::None),
        other => Err(format!("unknown compression {other:?}: zlib, zstd or none")),
    }
}

/// Where the shards connect, and with which token.
struct Target {
    /// The embedded fake gateway, when there is neither a token nor a URL.
    fake: Option<Arc<FakeGateway>>,
    url: String,
    token: String,
    /// Discord itself: a token and no URL.
    on_discord: bool,
}

impl Target {
    /// From the environment: `DISCORD_TOKEN` and `GATEWAY_URL`, or neither (the fake gateway,
    /// with a seeded world and live traffic).
    async fn choose(args: &Args) -> std::io::Result<Self> {
        let token = std::env::var("DISCORD_TOKEN").ok();
        let url = std::env::var("GATEWAY_URL").ok();
        let on_discord = token.is_some() && url.is_none();
        Ok(match (url, token) {
            (None, None) => {
                let shards = args.shards.unwrap_or(1).max(1);
                let fake = start_fake_gateway(shards, args.max_concurrency.unwrap_or(4)).await?;
                let (url, token) = (fake.url().to_owned(), fake.config().token.clone());
                Self {
                    fake: Some(Arc::new(fake)),
                    url,
                    token,
                    on_discord,
                }
            }
            (Some(url), token) => Self {
                fake: None,
                url,
                token: token.unwrap_or_else(|| "testkit-token".to_owned()),
                on_discord,
            },
            (None, Some(token)) => Self {
                fake: None,
                url: gateway_shard::DISCORD_GATEWAY.to_owned(),
                token,
                on_discord,
            },
        })
    }
}

/// How many shards, in which buckets, configured how.
struct Plan {
    group: ShardGroupConfig,
    shards: u32,
    max_concurrency: u32,
}

impl Plan {
    /// On Discord with no `--shards`: what `GET /gateway/bot` gives (the shard count,
    /// max_concurrency, URL and session start budget), as `ShardGroupConfig::recommended` would;
    /// otherwise the arguments.
    async fn make(
        args: &Args,
        target: &Target,
        mut config: ShardConfig,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let recommended = match args.shards {
            None if target.on_discord => Some(
                gateway_shard::fetch_gateway_bot(
                    gateway_shard::DISCORD_API,
                    &config.token,
                    &[],
                    None,
                )
                .await?,
            ),
            _ => None,
        };
        let fake = target.fake.is_some();
        let plan = match &recommended {
            Some(info) => {
                config.gateway_url.clone_from(&info.url);
                let limit = info.session_start_limit;
                let (shards, buckets) = (info.shards.max(1), limit.max_concurrency.max(1));
                println!(
                    "GET /gateway/bot: {shards} shard(s), {} of {} session starts left",
                    limit.remaining, limit.total
                );
                let group = ShardGroupConfig::from_gateway_bot(config, info);
                Self {
                    group,
                    shards,
                    max_concurrency: buckets,
                }
            }
            None => {
                let shards = args.shards.unwrap_or(1).max(1);
                let buckets = args.max_concurrency.unwrap_or(if fake { 4 } else { 1 });
                let group = ShardGroupConfig::new(config, shards, buckets);
                Self {
                    group,
                    shards,
                    max_concurrency: buckets,
                }
            }
        };
        println!(
            "connecting {} shard(s) to {} ({}, max_concurrency {}){}",
            plan.shards,
            plan.group.shard.gateway_url,
            plan.group.shard.compression,
            plan.max_concurrency,
            if fake {
                ", the embedded fake gateway"
            } else {
                ""
            }
        );
        Ok(plan)
    }
}

/// The running bot: events printed as they come, while the shards start too (each attempt
/// that fails).
struct Run<'a> {
    group: &'a ShardGroup,
    fake: Option<&'a Arc<FakeGateway>>,
    quiet: bool,
    started: Instant,
    deadline: Option<tokio::time::Instant>,
}

impl Run<'_> {
    /// Until Ctrl-C, `--for`, or the end of the events; says why, and whether every shard was
    /// ready by then.
    async fn until_stopped(
        &self,
        events: &mut gateway_chunking::TrackedEvents,
        summary: &mut Summary,
    ) -> (&'static str, bool) {
        let mut starting = std::pin::pin!(self.group.wait_ready(progress_printer(self.started)));
        let mut ready = false;
        let stop = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break "Ctrl-C",
                () = until(self.deadline) => break "--for",
                result = &mut starting, if !ready => {
                    result.unwrap_or_else(|e| fail(&e));
                    ready = true;
                    println!("all {} shard(s) ready in {:.1?}", summary.shards, self.started.elapsed());
                    if let Some(f) = self.fake {
                        tokio::spawn(traffic(Arc::clone(f)));
                    }
                }
                event = events.next() => match event {
                    Some(event) => record(summary, self.group, event, self.quiet),
                    None => break "the events ended",
                },
            }
        };
        (stop, ready)
    }
}

/// Each IDENTIFY the fake gateway received: its shard, and when.
fn identify_order(fake: &FakeGateway) -> Vec<(u32, Duration)> {
    fake.recorded()
        .iter()
        .filter_map(|r| match r.command() {
            Some(gateway_model::Command::Identify(i)) => {
                Some((i.shard.map_or(0, |s| s.number()), r.at))
            }
            _ => None,
        })
        .collect()
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
