//! `cargo xtask bench`'s peer: twilight-gateway 0.18 against `gateway-testkit serve`, measured the
//! way the bench measures our shard, and printed as one JSON line on stdout.
//!
//! * `twilight-probe memory --url URL --shards N --guilds G [--then M]`: N shards in this
//!   process (a tokio runtime with two workers, one task per shard, as a twilight bot runs them);
//!   once every shard is READY and G GUILD_CREATEs arrived in all, it prints `ready` and waits
//!   for M more dispatches if asked; 2 s later it prints the memory per shard.
//! * `twilight-probe e2e --url URL --guilds G --events N`: one shard on a current-thread runtime.
//!   Once it is READY with its G guilds it prints `ready`, and counts N dispatches (whoever
//!   measures asks the gateway to send them); then it prints the process's CPU time over them.
//! * `twilight-probe backlog --url URL --events N --pause-ms P --work-us W --give-up-ms G`: one
//!   shard. Once it is READY it prints `ready` (the bench then queues N numbered MESSAGE_CREATEs
//!   at once), pauses P ms without polling the shard (a twilight shard runs in the user's loop:
//!   its heartbeats go out only while it is polled), then counts the backlog as it arrives,
//!   spending W µs of CPU on each (a handler that takes time), for at most G ms after `ready`,
//!   and prints what it saw.
//!
//! The user's loop reads the shard's raw messages (twilight's `Stream`), the lightest way to use
//! it: twilight has already found `op`, `s` and `t` in each, as our shard has in its raw
//! dispatches. twilight-gateway fixes the transport compression at compile time (features `zlib`,
//! `zstd`), so xtask builds this probe once per compression.

// The bench's own counting allocator and system figures, shared file for file.
#[path = "../../src/bench/alloc.rs"]
#[allow(dead_code)]
mod alloc;
#[path = "../../src/bench/figures.rs"]
#[allow(dead_code)]
mod figures;
#[path = "../../src/bench/sys.rs"]
#[allow(dead_code)]
mod sys;

use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use figures::{BacklogArgs, BacklogRun, ClientRun, MemoryFigure, backlog_number, flag, number};
use futures_core::Stream;

use tokio::sync::{Semaphore, mpsc, oneshot};
use twilight_gateway::queue::Queue;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Message, Shard, ShardId, StreamExt as _,
};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// The compression this binary's twilight-gateway was built with.
const BUILT_COMPRESSION: &str = if cfg!(feature = "zstd") {
    "zstd-stream"
} else if cfg!(feature = "zlib") {
    "zlib-stream"
} else {
    "none"
};

/// The testkit's token (`gateway-testkit serve` without `--token`).
const TOKEN: &str = "testkit-token";

/// An identify queue that lets every shard identify at once: the testkit's identify window is
/// zero in the bench, as it is for our shards (twilight's own queue waits 5 s per bucket).
#[derive(Debug)]
struct Immediate;

impl Queue for Immediate {
    fn enqueue(&self, _id: u32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        // The shard holds the receiver; it cannot have gone yet.
        // The receiver is still ours (returned below): the send cannot fail.
        tx.send(()).unwrap_or(());
        rx
    }
}

/// What the user's loop saw in one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Ready,
    GuildCreate,
    Dispatch,
    Other,
}

/// Names the message's event by its head (the testkit writes `t` first, as Discord does).
fn seen(message: &Message) -> Seen {
    let Message::Text(text) = message else {
        return Seen::Other;
    };
    let head = &text.as_bytes()[..text.len().min(40)];
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if has(br#""t":"READY""#) {
        Seen::Ready
    } else if has(br#""t":"GUILD_CREATE""#) {
        Seen::GuildCreate
    } else if has(br#""op":0"#) || (has(br#""t":""#) && !has(br#""t":null"#)) {
        Seen::Dispatch
    } else {
        Seen::Other
    }
}

/// The next message of `shard`, errors logged and skipped (the shard reconnects by itself).
async fn next(shard: &mut Shard<Immediate>) -> Option<Message> {
    loop {
        let item = std::future::poll_fn(|cx| Pin::new(&mut *shard).poll_next(cx)).await;
        match item {
            Some(Ok(message)) => return Some(message),
            Some(Err(e)) => eprintln!("twilight-probe: shard {}: {e}", shard.id()),
            None => return None,
        }
    }
}

fn shard(url: &str, id: ShardId) -> Shard<Immediate> {
    let intents = Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(url.trim_end_matches('/').to_owned())
        // As our shard identifies (twilight's default is 50): the same guilds, the same bytes.
        .large_threshold(250)
        .queue(Immediate)
        .build();
    Shard::with_config(id, config)
}

async fn memory(
    url: String,
    shards: usize,
    guilds: usize,
    then: usize,
) -> Result<MemoryFigure, String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = (sys::rss_bytes(), alloc::live_bytes(), sys::malloc());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let total = u32::try_from(shards).map_err(|e| e.to_string())?;
    // At most 64 shards opening their connection at once, as our group's
    // `reconnect_concurrency` in the bench: a thousand handshakes at once against a gateway busy
    // sending guilds time out and reconnect, which would count against twilight.
    let opening = Arc::new(Semaphore::new(64));
    for number in 0..total {
        let mut shard = shard(&url, ShardId::new(number, total));
        let tx = tx.clone();
        let opening = Arc::clone(&opening);
        tokio::spawn(async move {
            let slot = opening.acquire_owned().await;
            // Polling the shard connects it; its first message (HELLO) means it is open.
            let mut first = next(&mut shard).await;
            drop(slot);
            loop {
                let message = match first.take() {
                    Some(message) => message,
                    None => match next(&mut shard).await {
                        Some(message) => message,
                        None => return,
                    },
                };
                let size = match &message {
                    Message::Text(t) => t.len(),
                    Message::Close(_) => 0,
                };
                let kind = seen(&message);
                drop(message);
                if kind != Seen::Other && tx.send((kind, size)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let (mut ready, mut created, mut received) = (0, 0, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while ready < shards || created < guilds {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((Seen::Ready, _))) => ready += 1,
            Ok(Some((Seen::GuildCreate, size))) => {
                created += 1;
                received += size as u64;
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("every shard stopped".into()),
            Err(_) => return Err(format!("{ready} READY, {created} GUILD_CREATE in 300 s")),
        }
    }
    if then > 0 {
        println!("ready");
        let mut dispatched = 0;
        while dispatched < then {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((Seen::Dispatch, _))) => dispatched += 1,
                Ok(Some(_)) => {}
                Ok(None) => return Err("every shard stopped".into()),
                Err(_) => return Err(format!("{dispatched} of {then} dispatches in 300 s")),
            }
        }
    }
    // Let the shards settle (their heartbeats go on), then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = (sys::rss_bytes(), alloc::live_bytes(), sys::malloc());
    Ok(figures::memory_figure(
        BUILT_COMPRESSION,
        shards,
        received,
        before,
        after,
    ))
}

/// The next event twilight deserialized, errors logged and counted.
async fn next_typed(shard: &mut Shard<Immediate>, errors: &mut usize) -> Option<Event> {
    loop {
        match shard.next_event(EventTypeFlags::all()).await? {
            Ok(event) => return Some(event),
            Err(e) => {
                *errors += 1;
                if *errors <= 3 {
                    eprintln!("twilight-probe: shard {}: {e}", shard.id());
                }
            }
        }
    }
}

/// Whether twilight's event is a dispatch (not a gateway message of its own).
fn is_dispatch(event: &Event) -> bool {
    !matches!(
        event,
        Event::GatewayClose(_)
            | Event::GatewayHeartbeat
            | Event::GatewayHeartbeatAck
            | Event::GatewayHello(_)
            | Event::GatewayInvalidateSession(_)
            | Event::GatewayReconnect
    )
}

/// Reads the shard's messages until READY and `guilds` GUILD_CREATEs came (60 s at most each).
async fn until_ready(shard: &mut Shard<Immediate>, guilds: usize) -> Result<(), String> {
    let (mut ready, mut created) = (false, 0);
    while !ready || created < guilds {
        let message = tokio::time::timeout(Duration::from_secs(60), next(shard))
            .await
            .map_err(|_| "not ready in 60 s")?
            .ok_or("the shard stopped")?;
        match seen(&message) {
            Seen::Ready => ready = true,
            Seen::GuildCreate => created += 1,
            _ => {}
        }
    }
    Ok(())
}

async fn end_to_end(
    url: String,
    guilds: usize,
    events: usize,
    typed: bool,
) -> Result<ClientRun, String> {
    let mut shard = shard(&url, ShardId::ONE);
    until_ready(&mut shard, guilds).await?;
    let cpu0 = sys::process_cpu().ok_or("no process CPU time on this system")?;
    let (wall0, allocs0) = (Instant::now(), alloc::allocations());
    // Whoever measures now asks the gateway for the dispatches.
    println!("ready");
    let (mut received, mut errors) = (0, 0);
    while received + errors < events {
        let late = || format!("{received} of {events} dispatches in 60 s");
        if typed {
            // As most twilight bots read: every event deserialized into twilight-model's types.
            let event =
                tokio::time::timeout(Duration::from_secs(60), next_typed(&mut shard, &mut errors))
                    .await
                    .map_err(|_| late())?
                    .ok_or("the shard stopped")?;
            if is_dispatch(&event) {
                received += 1;
            }
            std::hint::black_box(&event);
        } else {
            let message = tokio::time::timeout(Duration::from_secs(60), next(&mut shard))
                .await
                .map_err(|_| late())?
                .ok_or("the shard stopped")?;
            if seen(&message) == Seen::Dispatch {
                received += 1;
            }
            std::hint::black_box(&message);
        }
    }
    if errors > 0 {
        return Err(format!("{errors} of {events} events failed to deserialize"));
    }
    let cpu1 = sys::process_cpu().ok_or("no process CPU time on this system")?;
    let wall = wall0.elapsed();
    let allocations = alloc::allocations() - allocs0;
    Ok(ClientRun {
        events,
        cpu_ns: u64::try_from(cpu1.saturating_sub(cpu0).as_nanos()).unwrap_or(u64::MAX),
        wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        allocations,
    })
}

async fn backlog(
    url: String,
    BacklogArgs {
        events,
        pause,
        work,
        give_up,
    }: BacklogArgs,
) -> Result<BacklogRun, String> {
    let mut shard = shard(&url, ShardId::ONE);
    until_ready(&mut shard, 0).await?;
    let started = Instant::now();
    // Whoever measures now queues the backlog; the user's loop pauses before it reads.
    println!("ready");
    tokio::time::sleep(pause).await;
    let deadline = tokio::time::Instant::from_std(started + give_up);
    let mut run = BacklogRun::new(events);
    while !run.finished {
        let Ok(message) = tokio::time::timeout_at(deadline, next(&mut shard)).await else {
            break;
        };
        match message {
            Some(Message::Text(text)) => {
                if let Some(n) = backlog_number(&text) {
                    run.see(n);
                    figures::spin(work);
                }
            }
            Some(Message::Close(_)) => {}
            None => return Err("the shard stopped".into()),
        }
    }
    run.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(run)
}

fn run(args: &[String]) -> Result<String, String> {
    let url = flag(args, "--url")?;
    match args.first().map(String::as_str) {
        Some("memory") => {
            let (shards, guilds) = (number(args, "--shards")?, number(args, "--guilds")?);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let then = number(args, "--then").unwrap_or(0);
            let figure = runtime.block_on(memory(url, shards, guilds, then))?;
            serde_json::to_string(&figure).map_err(|e| e.to_string())
        }
        Some("e2e") => {
            let (guilds, events) = (number(args, "--guilds")?, number(args, "--events")?);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let typed = args.iter().any(|a| a == "--typed");
            let run = runtime.block_on(end_to_end(url, guilds, events, typed))?;
            serde_json::to_string(&run).map_err(|e| e.to_string())
        }
        Some("backlog") => {
            let backlog_args = BacklogArgs::parse(args)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let run = runtime.block_on(backlog(url, backlog_args))?;
            serde_json::to_string(&run).map_err(|e| e.to_string())
        }
        _ => Err("usage: twilight-probe memory|e2e|backlog --url URL …".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    figures::finish(&format!("twilight-probe ({BUILT_COMPRESSION})"), run(&args))
}
