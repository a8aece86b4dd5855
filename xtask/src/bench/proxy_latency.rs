//! `--only proxy`, over sockets: the latency the proxy adds, from the upstream's write to the
//! client's read, and the proxy process's CPU per event per client.
//!
//! The fake gateway runs in this process on its own runtime thread; `gateway-proxy` (release)
//! runs as its own process with the fake gateway as its upstream; the clients are our shards, on
//! a current-thread runtime on the bench's main thread. A pacer thread hands MESSAGE_CREATEs to
//! the fake gateway at a fixed rate, each tagged with its index, and notes when; a client that
//! reads one notes the difference. The baseline is one shard connected straight to the fake
//! gateway, with the same compression and rate, in the same run: the added latency is the
//! proxied percentile minus the direct one.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gateway_codec::Compression;
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::identify::LocalIdentifyQueue;
use gateway_shard::{Shard, ShardConfig, ShardEvent};
use gateway_testkit::{FakeGateway, World, WorldConfig};

use super::proxy::ProxyFigure;
use super::rig::Rig;
use super::{peer, sys};

/// Dispatches per second the upstream sends (the load).
const RATE: u64 = 10_000;
/// The tag each timed dispatch starts with.
const TAG: &str = "\"bench_n\":";

/// One measured path: the latencies every client saw, and the proxy's CPU over the run.
struct Sample {
    /// Microseconds from the pacer's hand-off to the client's read, every client's, sorted.
    latencies_us: Vec<u64>,
    /// The proxy process's CPU during the run (`None` for the direct path).
    proxy_cpu: Option<Duration>,
    events: u64,
}

impl Sample {
    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies_us.len() as f64 * p) as usize)
            .min(self.latencies_us.len().saturating_sub(1));
        self.latencies_us.get(i).copied().unwrap_or(0) as f64
    }
}

/// The latency and socket CPU figures, for 1 and 10 clients and each compression.
pub(crate) fn run(root: &Path, quick: bool) -> Result<Vec<ProxyFigure>, String> {
    let binary = peer::proxy_binary(root)?;
    let events = if quick { RATE } else { 3 * RATE };
    let rig = Rig::new()?;
    let clients_rt = &rig.clients;
    let mut figures = Vec::new();
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        let gateway = rig.gateway(WorldConfig::uniform(3, 4, 100))?;
        eprintln!("[bench] proxy latency: {events} events at {RATE}/s, direct, {compression}…");
        let direct = Route::Direct;
        let direct = clients_rt.block_on(measure(&gateway, direct, 1, compression, events))?;
        let proxy = ProxyProcess::start(&binary, &gateway)?;
        for clients in [1, 10] {
            eprintln!(
                "[bench] proxy latency: {events} events at {RATE}/s, {clients} client(s) through the proxy, {compression}…"
            );
            let via = Route::Proxy(&proxy);
            let sample =
                clients_rt.block_on(measure(&gateway, via, clients, compression, events))?;
            figures.extend(latency_figures(&direct, &sample, clients, compression));
        }
        drop(proxy);
        gateway.shutdown();
    }
    Ok(figures)
}

/// The figures of one proxied run against its direct baseline.
fn latency_figures(
    direct: &Sample,
    proxied: &Sample,
    clients: u64,
    compression: Compression,
) -> Vec<ProxyFigure> {
    let mut out = Vec::new();
    for (label, p) in [("p50", 0.50), ("p99", 0.99)] {
        let (d, v) = (direct.percentile(p), proxied.percentile(p));
        out.push(ProxyFigure {
            name: format!("added latency {label}, {clients} client(s), {compression}"),
            value: (v - d) / 1e3,
            unit: "ms",
            detail: format!(
                "{label} {:.3} ms through the proxy against {:.3} ms straight from the gateway; {} events at {RATE}/s, {} samples",
                v / 1e3,
                d / 1e3,
                proxied.events,
                proxied.latencies_us.len()
            ),
        });
    }
    if let Some(cpu) = proxied.proxy_cpu {
        let per = cpu.as_secs_f64() * 1e6 / (proxied.events * clients) as f64;
        out.push(ProxyFigure {
            name: format!("proxy process CPU per event per client, {clients} client(s), {compression}"),
            value: per,
            unit: "µs",
            detail: format!(
                "every thread of the process: upstream websocket and decode, core, encoders, client sockets; {:.2} s CPU over the run",
                cpu.as_secs_f64()
            ),
        });
    }
    out
}

/// Where the clients connect.
#[derive(Clone, Copy)]
enum Route<'a> {
    /// Straight to the fake gateway.
    Direct,
    /// Through the proxy.
    Proxy(&'a ProxyProcess),
}

/// Connects `clients` shards by `path`, sends `events` paced dispatches through `gateway`, and
/// collects what each client saw.
async fn measure(
    gateway: &FakeGateway,
    path: Route<'_>,
    clients: u64,
    compression: Compression,
    events: u64,
) -> Result<Sample, String> {
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let base = Instant::now();
    let mut readers = Vec::new();
    let mut shards = Vec::new();
    for _ in 0..clients {
        let config = ShardConfig::new(Token::new(gateway.config().token.clone()), Intents::all())
            .with_gateway_url(match path {
                Route::Direct => gateway.url(),
                Route::Proxy(proxy) => &proxy.url,
            })
            .with_compression(compression)
            .with_seed(1)
            .with_identify_queue(Arc::new(LocalIdentifyQueue::with_window(Duration::ZERO)), 1);
        let (shard, mut stream) = Shard::start(config).await.map_err(|e| e.to_string())?;
        loop {
            match next(&mut stream).await? {
                ShardEvent::Ready(_) => break,
                ShardEvent::Disconnected { reason, .. } => return Err(reason.to_string()),
                _ => {}
            }
        }
        let sent = sent.clone();
        readers.push(tokio::spawn(async move {
            read_tagged(&mut stream, &sent, base, events).await
        }));
        shards.push(shard);
    }
    // Let the GUILD_CREATEs after READY drain before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = || match path {
        Route::Direct => None,
        Route::Proxy(proxy) => sys::process_cpu_of(proxy.child.id()),
    };
    let cpu_from = cpu();
    let pacer = pace(gateway, &sent, base, events)?;
    let mut latencies_us = Vec::new();
    for reader in readers {
        latencies_us.extend(reader.await.map_err(|e| e.to_string())??);
    }
    pacer
        .join()
        .map_err(|_| "the pacer thread panicked".to_owned())?;
    let proxy_cpu = cpu().zip(cpu_from).map(|(b, a)| b.saturating_sub(a));
    for shard in shards {
        shard.close(false).await;
    }
    latencies_us.sort_unstable();
    Ok(Sample {
        latencies_us,
        proxy_cpu,
        events,
    })
}

/// Reads until every tagged dispatch came; the latency of each after the first tenth (warm-up).
async fn read_tagged(
    stream: &mut gateway_shard::ShardEvents,
    sent: &[AtomicU64],
    base: Instant,
    events: u64,
) -> Result<Vec<u64>, String> {
    let mut out = Vec::with_capacity(events as usize);
    let mut seen = 0;
    while seen < events {
        let ShardEvent::Dispatch(d) = next(stream).await? else {
            continue;
        };
        let DispatchEvent::Other(raw) = &d.event else {
            continue;
        };
        let Some(n) = tag_of(raw.data.get()) else {
            continue;
        };
        let at = base.elapsed().as_nanos() as u64;
        seen += 1;
        if n >= events / 10 {
            let from = sent[n as usize].load(Ordering::Acquire);
            out.push(at.saturating_sub(from) / 1_000);
        }
    }
    Ok(out)
}

/// The index a timed dispatch's `d` starts with.
fn tag_of(d: &str) -> Option<u64> {
    let rest = d.strip_prefix('{')?.strip_prefix(TAG)?;
    let end = rest.find(',')?;
    rest[..end].parse().ok()
}

/// Starts the pacer: `events` MESSAGE_CREATEs on shard 0, one every `1 / RATE` s, each noted in
/// `sent` (nanoseconds since `base`) as it is handed to the gateway.
fn pace(
    gateway: &FakeGateway,
    sent: &Arc<Vec<AtomicU64>>,
    base: Instant,
    events: u64,
) -> Result<std::thread::JoinHandle<()>, String> {
    let conn = gateway
        .shard_connection(0)
        .ok_or("shard 0 has no connection upstream")?;
    let world: World = gateway.world();
    let guild = world.guilds()[0].clone();
    let payloads: Vec<String> = (0..events)
        .map(|n| {
            let json = world.message_create_json(&guild, n, 80);
            format!("{{{TAG}{n},{}", &json[1..])
        })
        .collect();
    let sent = sent.clone();
    Ok(std::thread::spawn(move || {
        let period = Duration::from_secs(1) / RATE as u32;
        let start = Instant::now();
        for (n, payload) in payloads.into_iter().enumerate() {
            let due = start + period * n as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            sent[n].store(base.elapsed().as_nanos() as u64, Ordering::Release);
            conn.dispatch("MESSAGE_CREATE", payload);
        }
    }))
}

async fn next(stream: &mut gateway_shard::ShardEvents) -> Result<ShardEvent, String> {
    match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err("the shard's events ended".into()),
        Err(_) => Err("no event for 30 s".into()),
    }
}

/// `gateway-proxy` as its own process, the fake gateway its upstream; killed when dropped.
struct ProxyProcess {
    child: Child,
    url: String,
}

impl ProxyProcess {
    fn start(binary: &Path, gateway: &FakeGateway) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--shards", "1"])
            .env("GATEWAY_URL", gateway.url())
            .env("DISCORD_TOKEN", &gateway.config().token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("the proxy has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = match lines.next() {
            Some(Ok(url)) => url,
            _ => {
                stop(&mut child);
                return Err("the proxy printed no URL".into());
            }
        };
        // What it prints later must not fill the pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let proxy = Self { child, url };
        proxy.wait_ready()?;
        Ok(proxy)
    }

    /// Waits for `/healthz` to say every shard is READY.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while peer::get(&self.url, "/healthz").is_err() {
            if Instant::now() > deadline {
                return Err("the proxy's shard was not READY within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Kills a proxy process and reaps it.
pub(super) fn stop(child: &mut Child) {
    if let Err(e) = child.kill() {
        eprintln!("[bench] stopping the proxy: {e}");
    }
    if let Err(e) = child.wait() {
        eprintln!("[bench] stopping the proxy: {e}");
    }
}
