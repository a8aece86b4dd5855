//! `cargo xtask interop --rolling`: real bots in other languages through two `gateway-proxy`
//! processes on one redis-server, across a rolling restart of both proxies.
//!
//! The fake gateway (`gateway-testkit serve`, two shards) sends a steady `TESTKIT_EVENT` to each
//! shard, its counter `n` going 1, 2, 3… per shard. The proxies serve both shards from Redis,
//! their nodes holding them, and advertise one front address: a TCP front that hands each new
//! connection to a live proxy in turn, as a load balancer would. Each bot (`interop/<client>/
//! rolling.*`) runs every shard of the bot through the front. Then proxy A gets SIGTERM and starts
//! again, and proxy B the same. Every bot must see, per shard, one READY, at least one RESUMED,
//! and every counter once, in order; the fake gateway must count no IDENTIFY after the first two.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::process::{Server, TOKEN, create};
use super::setup::{self, Probe};
use super::{Client, Layout};

/// The clients a rolling run can start (the Rust side is `gateway-proxy/tests/cluster.rs`).
pub(crate) const CLIENTS: [Client; 2] = [Client::Discordjs, Client::Hikari];
/// Shards of the bot, served by both proxies.
const SHARDS: u32 = 2;
/// How long any one step may take.
const STEP: Duration = Duration::from_secs(60);
/// Counters each shard of each bot must see between two steps.
const EVENTS_PER_STEP: usize = 40;

/// What one bot saw, shard by shard.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// READY lines.
    readies: u32,
    /// RESUMED lines.
    resumes: u32,
    /// The counters, in arrival order.
    counters: Vec<u64>,
}

/// A bot process and the lines it printed.
struct Bot {
    client: Client,
    child: Child,
    shards: Arc<Mutex<BTreeMap<u32, Seen>>>,
}

impl Bot {
    fn start(layout: &Layout, probe: &Probe, client: Client, rest: &str) -> Result<Self, String> {
        let script = match client {
            Client::Hikari => "rolling.py",
            _ => "rolling.mjs",
        };
        let log = layout.logs().join(format!("rolling-{}.log", client.name()));
        let mut command = probe.script(script)?;
        command
            .args(["--rest", rest, "--token", TOKEN])
            .env("PYTHONUNBUFFERED", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(create(&log)?);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the {} bot: {e}", client.name()))?;
        let shards: Arc<Mutex<BTreeMap<u32, Seen>>> = Arc::default();
        let stdout = child.stdout.take().ok_or("the bot's stdout")?;
        let into = Arc::clone(&shards);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut shards = into.lock().unwrap_or_else(PoisonError::into_inner);
                record(&mut shards, &line);
            }
        });
        Ok(Self {
            client,
            child,
            shards,
        })
    }

    fn seen(&self) -> BTreeMap<u32, Seen> {
        self.shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Closes its stdin (it closes its shards and exits), killing it after 10 s.
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        if super::process::wait(&mut self.child, Duration::from_secs(10)).is_none() {
            eprintln!(
                "[interop] the {} bot did not exit: killed",
                self.client.name()
            );
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        // Gone already when stopped; either way it is gone afterwards.
        if let Err(e) = self.child.kill().and_then(|()| self.child.wait().map(drop)) {
            eprintln!("[interop] stopping a bot: {e}");
        }
    }
}

/// Adds one line of a bot's stdout to what it saw.
fn record(shards: &mut BTreeMap<u32, Seen>, line: &str) {
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(Ok(shard))) = (parts.next(), parts.next().map(str::parse::<u32>)) else {
        return;
    };
    let seen = shards.entry(shard).or_default();
    match (kind, parts.next().map(str::parse::<u64>)) {
        ("READY", _) => seen.readies += 1,
        ("RESUMED", _) => seen.resumes += 1,
        ("EVENT", Some(Ok(n))) => seen.counters.push(n),
        _ => {}
    }
}

/// A TCP front for the proxies: each connection goes to the next live backend in turn.
struct Front {
    addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Front {
    fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("the front: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("the front: {e}"))?;
        let backends: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let list = Arc::clone(&backends);
        std::thread::spawn(move || {
            let mut turn = 0usize;
            for client in listener.incoming().map_while(Result::ok) {
                let candidates = list.lock().unwrap_or_else(PoisonError::into_inner).clone();
                turn = turn.wrapping_add(1);
                let backend = (0..candidates.len())
                    .map(|i| candidates[(turn + i) % candidates.len()])
                    .find_map(|a| TcpStream::connect(a).ok());
                match backend {
                    Some(backend) => splice(client, backend),
                    None => eprintln!("[interop] front: no live proxy for a connection"),
                }
            }
        });
        Ok(Self { addr, backends })
    }

    fn set(&self, backends: &[SocketAddr]) {
        *self.backends.lock().unwrap_or_else(PoisonError::into_inner) = backends.to_vec();
    }
}

/// Copies bytes both ways until either side ends, then ends both.
fn splice(a: TcpStream, b: TcpStream) {
    let pipe = |from: &TcpStream, to: &TcpStream| -> std::io::Result<()> {
        let (mut from, mut to) = (from.try_clone()?, to.try_clone()?);
        std::thread::spawn(move || {
            // An error is the end of the connection, as EOF is.
            if let Err(e) = std::io::copy(&mut from, &mut to) {
                eprintln!("[interop] front: {e}");
            }
            for side in [&from, &to] {
                // Already shut or reset: the connection is over either way.
                drop(side.shutdown(Shutdown::Both));
            }
        });
        Ok(())
    };
    if let Err(e) = pipe(&a, &b).and_then(|()| pipe(&b, &a)) {
        eprintln!("[interop] front: {e}");
    }
}

/// A proxy process on the cluster.
struct Proxy {
    server: Server,
    addr: SocketAddr,
}

impl Proxy {
    fn start(
        layout: &Layout,
        binary: &Path,
        upstream: &str,
        redis: &str,
        node: &str,
        front: SocketAddr,
    ) -> Result<Self, String> {
        let log = layout.logs().join(format!("rolling-proxy-{node}.log"));
        // A free port, so that its address is known: its first line is the front's URL.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a port for proxy {node}: {e}"))?;
        let server =
            Server::start_cluster_proxy(binary, &log, upstream, redis, node, [addr, front])?;
        Ok(Self { server, addr })
    }
}

/// What the run came to: a line per bot and shard, and whether all held.
pub(crate) struct Outcome {
    /// Markdown table rows, one per (bot, shard).
    pub(crate) rows: Vec<String>,
    /// IDENTIFYs the fake gateway counted.
    pub(crate) identifies: u64,
    /// Every check held.
    pub(crate) passed: bool,
}

/// Runs the rolling restart with `clients`; `Err` when it could not be set up.
pub(crate) fn run(layout: &Layout, clients: &[Client]) -> Result<Outcome, String> {
    let testkit = setup::build_server(layout)?;
    let proxy = setup::build_proxy(layout)?;
    let probes = clients
        .iter()
        .map(|&c| setup::prepare(layout, c, false).map(|p| (c, p)))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("a runtime: {e}"))?;
    let redis = runtime
        .block_on(gateway_testkit::RedisServer::start())
        .map_err(|e| format!("redis-server: {e}"))?;
    let gateway = Server::start_loaded(
        &testkit,
        &layout.logs().join("rolling-testkit.log"),
        TOKEN,
        SHARDS,
    )?;
    let upstream = gateway.rest.clone();
    let front = Front::start()?;
    let start = |node: &str| Proxy::start(layout, &proxy, &upstream, redis.url(), node, front.addr);

    let a = start("a")?;
    wait_for("proxy a's node to identify both shards", || {
        Ok(identifies(&upstream)? >= u64::from(SHARDS))
    })?;
    let mut b = start("b")?;
    front.set(&[a.addr, b.addr]);
    let rest = format!("http://{}", front.addr);
    let mut bots = probes
        .iter()
        .map(|(client, probe)| Bot::start(layout, probe, *client, &rest))
        .collect::<Result<Vec<_>, _>>()?;
    let none = Vec::new();
    wait_for("every bot's shards to be READY and get events", || {
        Ok(progressed(&bots, &none))
    })?;

    let mut a = a;
    for node in ["a", "b"] {
        let (stopping, staying) = match node {
            "a" => (&mut a, &b),
            _ => (&mut b, &a),
        };
        front.set(&[staying.addr]);
        eprintln!("[interop] rolling: SIGTERM to proxy {node}");
        stopping.server.terminate(STEP)?;
        *stopping = start(&format!("{node}2"))?;
        front.set(&[a.addr, b.addr]);
        let mark: Vec<_> = bots.iter().map(Bot::seen).collect();
        wait_for(
            &format!("every bot to go on after proxy {node} restarted"),
            || Ok(progressed(&bots, &mark)),
        )?;
    }
    for bot in &mut bots {
        bot.stop();
    }
    let identifies = identifies(&upstream)?;
    let mut outcome = judge(&bots);
    outcome.identifies = identifies;
    outcome.passed &= identifies == u64::from(SHARDS);
    drop(redis);
    Ok(outcome)
}

/// Every bot has each shard READY and [`EVENTS_PER_STEP`] counters more than at `mark` (what
/// each bot had seen when the step began; empty for none).
fn progressed(bots: &[Bot], mark: &[BTreeMap<u32, Seen>]) -> bool {
    bots.iter().enumerate().all(|(i, bot)| {
        let seen = bot.seen();
        (0..SHARDS).all(|shard| {
            let before = mark
                .get(i)
                .and_then(|m| m.get(&shard))
                .map_or(0, |s| s.counters.len());
            seen.get(&shard)
                .is_some_and(|s| s.readies >= 1 && s.counters.len() >= before + EVENTS_PER_STEP)
        })
    })
}

/// The table rows and the verdict of each (bot, shard).
fn judge(bots: &[Bot]) -> Outcome {
    let mut rows = Vec::new();
    let mut passed = true;
    for bot in bots {
        for shard in 0..SHARDS {
            let seen = bot.seen().remove(&shard).unwrap_or_default();
            let gaps = seen
                .counters
                .windows(2)
                .filter(|w| w[1] != w[0] + 1)
                .count();
            let ok =
                seen.readies == 1 && seen.resumes >= 1 && gaps == 0 && !seen.counters.is_empty();
            passed &= ok;
            rows.push(format!(
                "| {} | {shard} | {} | {} | {} ({}..={}) | {gaps} | {} |",
                bot.client.name(),
                seen.readies,
                seen.resumes,
                seen.counters.len(),
                seen.counters.first().copied().unwrap_or(0),
                seen.counters.last().copied().unwrap_or(0),
                if ok { "PASS" } else { "FAIL" },
            ));
        }
    }
    Outcome {
        rows,
        identifies: 0,
        passed,
    }
}

/// The fake gateway's IDENTIFY count.
fn identifies(upstream: &str) -> Result<u64, String> {
    let url = upstream.replacen("http://", "ws://", 1);
    let body = crate::bench::peer::get(&url, "/testkit/stats")?;
    let stats: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/testkit/stats: {e}"))?;
    stats["identifies"]
        .as_u64()
        .ok_or_else(|| format!("/testkit/stats has no identifies: {body}"))
}

/// Polls `done` every 50 ms for at most [`STEP`].
fn wait_for(what: &str, mut done: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + STEP;
    while !done()? {
        if Instant::now() > deadline {
            return Err(format!("waited {}s for {what}", STEP.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::record;

    #[test]
    fn bot_lines_are_counted_per_shard() {
        let mut shards = BTreeMap::new();
        for line in [
            "READY 0 abc",
            "EVENT 0 1",
            "EVENT 1 7",
            "RESUMED 1",
            "EVENT 0 x",
            "noise",
        ] {
            record(&mut shards, line);
        }
        assert_eq!(shards[&0].readies, 1);
        assert_eq!(shards[&0].counters, vec![1]);
        assert_eq!(shards[&1].resumes, 1);
        assert_eq!(shards[&1].counters, vec![7]);
    }
}
