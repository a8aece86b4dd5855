//! `--only proxy`, on Redis: two `gateway-proxy --redis` processes (release) on one
//! redis-server, the fake gateway upstream (in this process, on its own runtime thread), with
//! 1,000 upstream shards and 2,000 clients (100 and 200 with `--quick`), half on each proxy,
//! two per shard.
//!
//! - Memory: each proxy process's resident set once it serves every shard (A's node holds
//!   them; B serves them from their streams), per upstream shard; then with its clients, per
//!   client.
//! - CPU per event per client: every shard gets a burst of MESSAGE_CREATEs; both processes'
//!   CPU over the run, over the dispatches their clients read.
//! - Handoff: SIGTERM to A until B's node has resumed every shard.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gateway_model::{Intents, ShardId, Token};
use gateway_shard::identify::LocalIdentifyQueue;
use gateway_shard::{Shard, ShardConfig, ShardEvent};
use gateway_testkit::{FakeGateway, GatewayConfig, RedisServer, WorldConfig};

use super::proxy::ProxyFigure;
use super::proxy_latency::stop;
use super::rig::Rig;
use super::{peer, sys};

/// MESSAGE_CREATEs each shard gets in the CPU run.
const EVENTS_PER_SHARD: u64 = 20;
/// How long any one step may take.
const STEP: Duration = Duration::from_secs(180);

/// The cluster figures of the proxy.
pub(crate) fn run(root: &Path, quick: bool) -> Result<Vec<ProxyFigure>, String> {
    let (shards, clients) = if quick { (100, 200) } else { (1_000, 2_000) };
    let binary = peer::proxy_binary(root)?;
    let rig = Rig::new()?;
    let redis = (rig.server)
        .block_on(RedisServer::start())
        .map_err(|e| format!("redis-server: {e}"))?;
    let config = GatewayConfig {
        world: WorldConfig::uniform(5, shards as usize, 20),
        identify_window: Duration::ZERO,
        // A bucket per shard: the shards start at once (the node waits Discord's 5 s between
        // identifies of one bucket), as a large bot's do at its max_concurrency.
        max_concurrency: shards,
        recommended_shards: shards,
        ..GatewayConfig::default()
    };
    let gateway = (rig.server)
        .block_on(FakeGateway::start_with(config, 0))
        .map_err(|e| e.to_string())?;
    let mut figures = Vec::new();

    eprintln!("[bench] proxy on Redis: {shards} shards, proxy a's node identifies them…");
    let mut a = ProxyProcess::start(&binary, &gateway, redis.url(), "a", shards)?;
    wait(&format!("{shards} READY"), || {
        gateway.stats().readies >= u64::from(shards)
    })?;
    let b = ProxyProcess::start(&binary, &gateway, redis.url(), "b", shards)?;
    b.wait_healthy()?;
    a.wait_healthy()?;
    std::thread::sleep(Duration::from_secs(1));
    let (a_bare, b_bare) = (a.rss(), b.rss());
    for (who, rss) in [
        ("holding them (its node)", a_bare),
        ("from their streams", b_bare),
    ] {
        figures.push(ProxyFigure {
            name: format!("proxy memory per upstream shard, {who}"),
            value: rss as f64 / 1024.0 / f64::from(shards),
            unit: "KiB",
            detail: format!(
                "resident set of the process over {shards} shards (its base included): {:.1} MiB",
                rss as f64 / 1_048_576.0
            ),
        });
    }

    eprintln!("[bench] proxy on Redis: {clients} clients, half on each proxy…");
    let read = Arc::new(AtomicU64::new(0));
    let connected = (rig.clients).block_on(connect(&gateway, [&a, &b], shards, clients, &read))?;
    std::thread::sleep(Duration::from_secs(2));
    let per_proxy = f64::from(clients / 2);
    for (who, proxy, bare) in [("a", &a, a_bare), ("b", &b, b_bare)] {
        let grown = proxy.rss().saturating_sub(bare);
        figures.push(ProxyFigure {
            name: format!("proxy memory per client, proxy {who}"),
            value: grown as f64 / 1024.0 / per_proxy,
            unit: "KiB",
            detail: format!(
                "resident set grown by {:.1} MiB with {} clients (zlib-stream, READY, their guilds' GUILD_CREATEs)",
                grown as f64 / 1_048_576.0,
                clients / 2
            ),
        });
    }

    figures.push(cpu_run(&rig, &gateway, [&a, &b], shards, clients, &read)?);
    (rig.clients).block_on(async {
        for shard in connected {
            shard.close(false).await;
        }
    });

    eprintln!(
        "[bench] proxy on Redis: SIGTERM to proxy a, until b's node resumed {shards} shards…"
    );
    let resumed = gateway.stats().resumed;
    let started = Instant::now();
    a.terminate()?;
    wait(&format!("{shards} RESUMED"), || {
        gateway.stats().resumed >= resumed + u64::from(shards)
    })?;
    let handoff = started.elapsed();
    figures.push(ProxyFigure {
        name: format!("handoff of {shards} shards across proxy processes"),
        value: handoff.as_secs_f64() * 1e3,
        unit: "ms",
        detail: format!(
            "SIGTERM to the process holding every shard until the other's node resumed them all (release notices); {} IDENTIFY in all",
            gateway.stats().identifies
        ),
    });
    drop(b);
    gateway.shutdown();
    drop(redis);
    Ok(figures)
}

/// Connects `clients` shards of ours, client `i` on shard `i % shards` through proxy `i %
/// 2`, each counting the dispatches it reads into `read`; returns them once every one is READY.
async fn connect(
    gateway: &FakeGateway,
    proxies: [&ProxyProcess; 2],
    shards: u32,
    clients: u32,
    read: &Arc<AtomicU64>,
) -> Result<Vec<Shard>, String> {
    let token = Token::new(gateway.config().token.clone());
    let queue = Arc::new(LocalIdentifyQueue::with_window(Duration::ZERO));
    let mut out = Vec::new();
    for i in 0..clients {
        let shard = ShardId::new(i % shards, shards).map_err(|e| e.to_string())?;
        let config = ShardConfig::new(token.clone(), Intents::GUILDS | Intents::GUILD_MESSAGES)
            .with_gateway_url(proxies[(i % 2) as usize].url.clone())
            .with_shard(shard)
            .with_seed(u64::from(i))
            .with_identify_queue(queue.clone(), 1);
        let (shard, mut events) = Shard::start(config).await.map_err(|e| e.to_string())?;
        loop {
            let event = tokio::time::timeout(STEP, events.next()).await;
            match event {
                Ok(Some(ShardEvent::Ready(_))) => break,
                Ok(Some(ShardEvent::Disconnected { reason, .. })) => return Err(reason.to_string()),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Err(format!("client {i}: no READY")),
            }
        }
        let read = Arc::clone(read);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let ShardEvent::Dispatch(_) = event {
                    read.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        out.push(shard);
    }
    Ok(out)
}

/// Every shard gets [`EVENTS_PER_SHARD`] MESSAGE_CREATEs at once; both proxies' CPU until every
/// client read its share, per dispatch read.
fn cpu_run(
    rig: &Rig,
    gateway: &FakeGateway,
    proxies: [&ProxyProcess; 2],
    shards: u32,
    clients: u32,
    read: &Arc<AtomicU64>,
) -> Result<ProxyFigure, String> {
    eprintln!("[bench] proxy on Redis: {EVENTS_PER_SHARD} events on each shard…");
    let world = gateway.world();
    let cpu = || -> Option<Duration> {
        Some(
            sys::process_cpu_of(proxies[0].child.id())?
                + sys::process_cpu_of(proxies[1].child.id())?,
        )
    };
    let from = cpu().ok_or("no CPU figures from /proc")?;
    let before = read.load(Ordering::Relaxed);
    let expected = u64::from(clients) * EVENTS_PER_SHARD;
    for shard in 0..shards {
        let connection = gateway
            .shard_connection(shard)
            .ok_or_else(|| format!("shard {shard} has no connection upstream"))?;
        let guild = world
            .guilds_of_shard(shard, shards)
            .next()
            .or_else(|| world.guilds().first())
            .cloned()
            .ok_or("a guild")?;
        let events = (0..EVENTS_PER_SHARD)
            .map(|n| ("MESSAGE_CREATE", world.message_create_json(&guild, n, 80)));
        connection.dispatch_all(events);
    }
    // The clients read on their runtime, driven meanwhile.
    rig.clients.block_on(async {
        let deadline = tokio::time::Instant::now() + STEP;
        while read.load(Ordering::Relaxed) < before + expected {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the clients read {} of {expected} dispatches",
                    read.load(Ordering::Relaxed) - before
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })?;
    let spent = cpu()
        .ok_or("no CPU figures from /proc")?
        .saturating_sub(from);
    Ok(ProxyFigure {
        name: format!(
            "proxy CPU per event per client, {shards} shards, {clients} clients on 2 processes"
        ),
        value: spent.as_secs_f64() * 1e6 / expected as f64,
        unit: "µs",
        detail: format!(
            "both processes, every thread (stream reads, core, encoders, sockets): {:.2} s CPU for {expected} dispatches read",
            spent.as_secs_f64()
        ),
    })
}

/// Polls `done` every 50 ms for at most [`STEP`].
fn wait(what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + STEP;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("waited {}s for {what}", STEP.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `gateway-proxy --redis` as its own process; killed when dropped.
struct ProxyProcess {
    child: Child,
    url: String,
}

impl ProxyProcess {
    fn start(
        binary: &Path,
        gateway: &FakeGateway,
        redis: &str,
        node: &str,
        shards: u32,
    ) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--shards", &shards.to_string()])
            .args(["--redis", redis, "--app", "bench", "--node", node])
            .args([
                "--max-concurrency",
                &shards.to_string(),
                "--metrics",
                "false",
            ])
            .env("GATEWAY_URL", gateway.url())
            .env("DISCORD_TOKEN", &gateway.config().token)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("the proxy has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let Some(Ok(url)) = lines.next() else {
            stop(&mut child);
            return Err("the proxy printed no URL".into());
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, url })
    }

    /// Waits for `/healthz` to say it serves every shard.
    fn wait_healthy(&self) -> Result<(), String> {
        wait("the proxy's /healthz", || {
            peer::get(&self.url, "/healthz").is_ok()
        })
    }

    fn rss(&self) -> u64 {
        sys::rss_of(self.child.id())
    }

    /// SIGTERM, then waits for the process to exit.
    fn terminate(&mut self) -> Result<(), String> {
        crate::interop::process::terminate(&mut self.child, STEP)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
