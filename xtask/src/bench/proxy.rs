//! `--only proxy`: the proxy's core, in this process on one thread, as its driver runs it.
//!
//! - CPU per event per client: one upstream shard, 1 and 10 clients, each compression; every
//!   dispatch goes through the core (cache, routing, the log, each client's envelope and
//!   encoder) and every frame is taken at once (`handle_sent`), as sockets that keep up would.
//!   Sockets and the loop's channels are not in it.
//! - Cache memory: the heap the guild cache holds for the fake gateway's guilds, against the
//!   bytes of their GUILD_CREATEs.

use gateway_model::{Intents, Token};
use gateway_proxy::cache::{CacheConfig, GuildCache};
use gateway_proxy::{ProxyConfig, ProxyCore, ProxyOutput, UpstreamReady};
use gateway_server::{Frame, Transmit};
use gateway_testkit::{World, WorldConfig};
use serde::Serialize;

use super::{Target, alloc, sys};

/// One proxy figure.
#[derive(Debug, Serialize)]
pub(crate) struct ProxyFigure {
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) detail: String,
}

const TOKEN: &str = "bench-token";

/// Runs the proxy figures (`events` dispatches per CPU run).
pub(crate) fn run(quick: bool) -> Result<Vec<ProxyFigure>, String> {
    let events = if quick { 5_000 } else { 50_000 };
    let world = World::new(WorldConfig::mixed(11, if quick { 20 } else { 100 }, 300));
    let mut figures = Vec::new();
    for clients in [1, 10] {
        for compression in ["none", "zlib-stream", "zlib-stream level 1", "zstd-stream"] {
            eprintln!("[bench] proxy: {events} events to {clients} client(s), {compression}…");
            figures.push(cpu(&world, events, clients, compression)?);
        }
    }
    eprintln!("[bench] proxy: cache memory…");
    figures.push(cache_memory(&world)?);
    Ok(figures)
}

#[allow(clippy::disallowed_methods)] // the bench reads the clock for the core, as a driver does
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn cpu(world: &World, events: u64, clients: u64, label: &str) -> Result<ProxyFigure, String> {
    let compression = label;
    let mut config = ProxyConfig::new(Token::new(TOKEN), 1, Intents::all(), "ws://127.0.0.1:1");
    let (compression, level) = match compression.split_once(" level ") {
        Some((c, level)) => (c, level.parse().map_err(|_| "a level")?),
        None => (compression, config.connection.zlib_level),
    };
    config.connection.zlib_level = level;
    let mut core = ProxyCore::new(config);
    let guilds: Vec<_> = world.guilds_of_shard(0, 1).cloned().collect();
    let ready = r#"{"v":10,"user":{"id":"1","username":"bench"},"guilds":[],"session_id":"s","resume_gateway_url":"wss://x","shard":[0,1],"application":{"id":"1","flags":0}}"#.to_owned();
    core.handle_upstream_ready(now(), 0, UpstreamReady { data: ready });
    for g in &guilds {
        core.handle_upstream_dispatch(
            now(),
            0,
            "GUILD_CREATE",
            &world.guild_create_json(g, Intents::all(), 250),
        );
    }
    let query = match compression {
        "none" => "v=10&encoding=json".to_owned(),
        c => format!("v=10&encoding=json&compress={c}"),
    };
    for client in 0..clients {
        core.handle_open(now(), client, &query);
        let identify = format!(
            r#"{{"op":2,"d":{{"token":"{TOKEN}","properties":{{}},"intents":{},"shard":[0,1]}}}}"#,
            Intents::all().bits()
        );
        core.handle_frame(now(), client, Frame::Text(identify));
    }
    drain(&mut core);
    let messages: Vec<String> = (0..256u64)
        .map(|n| world.message_create_json(&guilds[n as usize % guilds.len()], n, 80))
        .collect();
    let mut bytes = 0;
    let start = sys::thread_cpu().ok_or("no thread CPU clock")?;
    for n in 0..events {
        let message = &messages[n as usize % messages.len()];
        core.handle_upstream_dispatch(now(), 0, "MESSAGE_CREATE", message);
        bytes += drain(&mut core);
    }
    let spent = sys::thread_cpu().ok_or("no thread CPU clock")? - start;
    let per = spent.as_secs_f64() * 1e6 / (events * clients) as f64;
    Ok(ProxyFigure {
        name: format!("core CPU per event per client, {clients} client(s), {label}"),
        value: per,
        unit: "µs",
        detail: format!(
            "{events} MESSAGE_CREATEs (~{} B) through one shard, {:.1} MB out; no sockets",
            messages[0].len(),
            bytes as f64 / 1e6
        ),
    })
}

/// Drains the core, taking every frame at once; the bytes sent.
fn drain(core: &mut ProxyCore) -> usize {
    let mut bytes = 0;
    let mut taken = Vec::new();
    loop {
        while let Some(output) = core.poll_output(now()) {
            if let ProxyOutput::Client {
                client,
                transmit: Transmit::Frames(frames),
            } = output
            {
                let n: usize = frames.iter().map(Frame::len).sum();
                bytes += n;
                taken.push((client, n));
            }
        }
        if taken.is_empty() {
            return bytes;
        }
        for (client, n) in taken.drain(..) {
            core.handle_sent(now(), client, n);
        }
    }
}

fn cache_memory(world: &World) -> Result<ProxyFigure, String> {
    let jsons: Vec<String> = world
        .guilds()
        .iter()
        .map(|g| world.guild_create_json(g, Intents::all(), 250))
        .collect();
    let json_bytes: usize = jsons.iter().map(String::len).sum();
    let before = (alloc::live_bytes(), sys::malloc());
    let mut cache = GuildCache::new(CacheConfig::default());
    for json in &jsons {
        cache
            .apply("GUILD_CREATE", json)
            .map_err(|e| e.to_string())?;
    }
    let held = alloc::live_bytes().saturating_sub(before.0);
    // What malloc itself counts in use (its chunk headers and rounding included), where the C
    // library says.
    let in_use = match (before.1, sys::malloc()) {
        (Some(a), Some(b)) => {
            let used = b.in_use.saturating_sub(a.in_use) as f64;
            format!(
                ", {:.1} MB ({:.2}×) by malloc's count",
                used / 1e6,
                used / json_bytes.max(1) as f64
            )
        }
        _ => String::new(),
    };
    let ratio = held as f64 / json_bytes.max(1) as f64;
    drop(cache);
    Ok(ProxyFigure {
        name: "cache heap / GUILD_CREATE bytes".to_owned(),
        value: ratio,
        unit: "×",
        detail: format!(
            "{} guilds, {:.1} MB of GUILD_CREATE JSON, {:.1} MB of heap asked for{in_use}",
            jsons.len(),
            json_bytes as f64 / 1e6,
            held as f64 / 1e6
        ),
    })
}

/// The issue's goals for these figures.
pub(crate) fn targets(figures: &[ProxyFigure]) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(f) = figures
        .iter()
        .find(|f| f.name.contains("1 client(s), none"))
    {
        out.push(Target {
            name: "proxy CPU per event per uncompressed client (core, no sockets)".to_owned(),
            goal: "< 2 µs".to_owned(),
            measured: format!("{:.2} µs", f.value),
            met: f.value < 2.0,
        });
    }
    for clients in [1, 10] {
        let name = format!("added latency p99, {clients} client(s), none");
        if let Some(f) = figures.iter().find(|f| f.name == name) {
            out.push(Target {
                name: format!(
                    "p99 added latency at 10,000 events/s, {clients} uncompressed client(s)"
                ),
                goal: "< 1 ms".to_owned(),
                measured: format!("{:.2} ms", f.value),
                met: f.value < 1.0,
            });
        }
    }
    if let Some(f) = figures.iter().find(|f| f.unit == "×") {
        out.push(Target {
            name: "cache memory against the JSON it holds".to_owned(),
            goal: "< 1.2×".to_owned(),
            measured: format!("{:.2}×", f.value),
            met: f.value < 1.2,
        });
    }
    out
}
