//! `cargo xtask bench`'s probe of our shard against `gateway-testkit serve`, measured as
//! `xtask/twilight-probe` measures twilight-gateway, and printed as one JSON line on stdout.
//!
//! * `shard-probe memory --url URL --compression C --shards N --guilds G [--then M]`: a
//!   `ShardGroup` of N shards in this process (a tokio runtime with two workers); once every shard
//!   is READY and G GUILD_CREATEs arrived in all, it prints `ready` and waits for M more
//!   dispatches if asked (the bench then asks the gateway for them); 2 s later it prints the
//!   memory per shard.
//! * `shard-probe e2e --url URL --compression C --guilds G --events N`: one `Shard` on a
//!   current-thread runtime, its driver and the user's loop on one thread. Once it is READY with
//!   its G guilds it prints `ready` and counts N dispatches off `ShardEvents`; then it prints the
//!   process's CPU time over them.
//!
//! * `shard-probe backlog --url URL --compression C --events N --pause-ms P --work-us W
//!   --give-up-ms G`: one `Shard` reading raw dispatches. Once it is READY it prints `ready` (the
//!   bench then queues N numbered MESSAGE_CREATEs at once), leaves its events unread for P ms,
//!   then counts the backlog as it arrives, spending W µs of CPU on each (a handler that takes
//!   time), for at most G ms after `ready`, and prints what it saw.
//!
//! xtask builds this package on its own, so gateway-shard has its default features, as a bot
//! gets it.

// The bench's counting allocator, system figures and probe output, shared file for file.
#[path = "../../src/bench/alloc.rs"]
#[allow(dead_code)]
mod alloc;
#[path = "../../src/bench/figures.rs"]
#[allow(dead_code)]
mod figures;
#[path = "../../src/bench/sys.rs"]
#[allow(dead_code)]
mod sys;

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_codec::Compression;
use gateway_model::{DispatchEvent, EventTypes, Intents, Token};
use gateway_shard::identify::LocalIdentifyQueue;
use gateway_shard::{Shard, ShardConfig, ShardEvent, ShardEvents, ShardGroup, ShardGroupConfig};

use figures::{BacklogArgs, BacklogRun, ClientRun, MemoryFigure, backlog_number, flag, number};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// The testkit's token (`gateway-testkit serve` without `--token`).
const TOKEN: &str = "testkit-token";

fn intents() -> Intents {
    Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES
}

async fn memory(
    url: &str,
    compression: Compression,
    shards: usize,
    guilds: usize,
    then: usize,
) -> Result<MemoryFigure, String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = (sys::rss_bytes(), alloc::live_bytes(), sys::malloc());
    let shard = ShardConfig::new(Token::new(TOKEN), intents())
        .with_gateway_url(url)
        .with_compression(compression)
        .with_seed(1);
    let queue = Arc::new(LocalIdentifyQueue::with_window(Duration::ZERO));
    let total = u32::try_from(shards).map_err(|e| e.to_string())?;
    let mut config = ShardGroupConfig::new(shard, total, 16).with_identify_queue(queue);
    config.reconnect_concurrency = 64;
    let (group, mut events) = ShardGroup::spawn(config).map_err(|e| e.to_string())?;
    let (mut ready, mut created, mut received) = (0, 0, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while ready < shards || created < guilds {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| format!("{ready} READY, {created} GUILD_CREATE in 300 s"))?;
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
                .map_err(|_| format!("{dispatched} of {then} dispatches in 300 s"))?;
            match event {
                Some((_, ShardEvent::Dispatch(d))) => {
                    black_box(&d);
                    dispatched += 1;
                }
                Some(_) => {}
                None => return Err("events ended".into()),
            }
        }
    }
    // Let the shards settle (their heartbeats go on), then measure.
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(_)) = tokio::time::timeout_at(settle, events.next()).await {}
    let after = (sys::rss_bytes(), alloc::live_bytes(), sys::malloc());
    group.close(false).await;
    let name = compression.to_string();
    Ok(figures::memory_figure(
        &name, shards, received, before, after,
    ))
}

/// Waits for the next event (bounded: a stalled run is an error, not a hang).
async fn next(events: &mut ShardEvents) -> Result<ShardEvent, String> {
    match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err("the shard's events ended".into()),
        Err(_) => Err("no event for 60 s".into()),
    }
}

async fn end_to_end(
    url: &str,
    compression: Compression,
    guilds: usize,
    events: usize,
) -> Result<ClientRun, String> {
    let config = ShardConfig::new(Token::new(TOKEN), intents())
        .with_gateway_url(url)
        .with_compression(compression)
        .with_seed(1);
    let (shard, mut stream) = Shard::start(config).await.map_err(|e| e.to_string())?;
    let (mut ready, mut created) = (false, 0);
    while !ready || created < guilds {
        match next(&mut stream).await? {
            ShardEvent::Ready(_) => ready = true,
            ShardEvent::Dispatch(d) if matches!(d.event, DispatchEvent::GuildCreate(_)) => {
                created += 1;
            }
            _ => {}
        }
    }
    let cpu0 = sys::process_cpu().ok_or("no process CPU time on this system")?;
    let (wall0, allocs0) = (Instant::now(), alloc::allocations());
    // The bench now asks the gateway for the dispatches.
    println!("ready");
    let mut received = 0;
    while received < events {
        match next(&mut stream).await? {
            ShardEvent::Dispatch(d) => {
                black_box(&d);
                received += 1;
            }
            ShardEvent::Disconnected { reason, .. } => {
                return Err(format!("disconnected during the run: {reason}"));
            }
            _ => {}
        }
    }
    let cpu1 = sys::process_cpu().ok_or("no process CPU time on this system")?;
    let wall = wall0.elapsed();
    let allocations = alloc::allocations() - allocs0;
    shard.close(false).await;
    let cpu = cpu1.saturating_sub(cpu0);
    Ok(ClientRun {
        events: received,
        cpu_ns: u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX),
        wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        allocations,
    })
}

async fn backlog(
    url: &str,
    compression: Compression,
    BacklogArgs {
        events,
        pause,
        work,
        give_up,
    }: BacklogArgs,
) -> Result<BacklogRun, String> {
    let config = ShardConfig::new(Token::new(TOKEN), Intents::GUILDS)
        .with_gateway_url(url)
        .with_compression(compression)
        .with_event_types(EventTypes::all())
        .with_raw_dispatches(true)
        .with_seed(1);
    let (shard, mut stream) = Shard::start(config).await.map_err(|e| e.to_string())?;
    while !matches!(next(&mut stream).await?, ShardEvent::Ready(_)) {}
    let started = Instant::now();
    // The bench now queues the backlog; the user's loop pauses before it reads (the driver
    // goes on: heartbeats, and reading the socket until its event channel is full).
    println!("ready");
    tokio::time::sleep(pause).await;
    let deadline = tokio::time::Instant::from_std(started + give_up);
    let mut run = BacklogRun::new(events);
    while !run.finished {
        let Ok(event) = tokio::time::timeout_at(deadline, stream.next()).await else {
            break;
        };
        match event {
            Some(ShardEvent::Dispatch(d)) => {
                if let DispatchEvent::Other(raw) = &d.event
                    && let Some(n) = backlog_number(raw.data.get())
                {
                    run.see(n);
                    figures::spin(work);
                }
            }
            Some(_) => {}
            None => return Err("the shard's events ended".into()),
        }
    }
    run.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    shard.close(false).await;
    Ok(run)
}

fn run(args: &[String]) -> Result<String, String> {
    let url = flag(args, "--url")?;
    let compression = match flag(args, "--compression")?.as_str() {
        "none" => Compression::None,
        other => Compression::from_query_value(other)
            .ok_or_else(|| format!("unknown compression {other}"))?,
    };
    match args.first().map(String::as_str) {
        Some("memory") => {
            let (shards, guilds) = (number(args, "--shards")?, number(args, "--guilds")?);
            let then = number(args, "--then").unwrap_or(0);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let figure = runtime.block_on(memory(&url, compression, shards, guilds, then))?;
            serde_json::to_string(&figure).map_err(|e| e.to_string())
        }
        Some("e2e") => {
            let (guilds, events) = (number(args, "--guilds")?, number(args, "--events")?);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let run = runtime.block_on(end_to_end(&url, compression, guilds, events))?;
            serde_json::to_string(&run).map_err(|e| e.to_string())
        }
        Some("backlog") => {
            let backlog_args = BacklogArgs::parse(args)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let run = runtime.block_on(backlog(&url, compression, backlog_args))?;
            serde_json::to_string(&run).map_err(|e| e.to_string())
        }
        _ => Err("usage: shard-probe memory|e2e|backlog --url URL --compression C …".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    figures::finish("shard-probe", run(&args))
}
