//! The cluster on a real redis-server: handoff time between nodes, events through publish and
//! consume per CPU second, and what Redis holds for a million events with trimming.

use std::time::{Duration, Instant};

use gateway_cluster::{
    ClusterNode, Consumer, ConsumerConfig, Entry, Keys, NodeConfig, NodeEvent, PublishConfig,
    Publisher,
};
use gateway_model::{Intents, Token};
use gateway_shard::{RedisConnection, RedisOptions, RedisTarget, ShardConfig};
use gateway_testkit::{FakeGateway, GatewayConfig, RedisCluster, RedisServer, WorldConfig};
use serde::Serialize;

use super::{Target, sys};

/// One cluster figure.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterFigure {
    pub(crate) name: &'static str,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) detail: String,
}

const SHARDS: u32 = 4;

/// The cluster's goals among its figures.
pub(crate) fn targets(figures: &[ClusterFigure]) -> Vec<Target> {
    figures
        .iter()
        .filter(|f| f.name == "handoff across processes")
        .map(|f| Target {
            name: "handoff across processes, with release notices".to_owned(),
            goal: "< 50 ms".to_owned(),
            measured: format!("{:.1} ms", f.value),
            met: f.value < 50.0,
        })
        .collect()
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the cluster figures (`events` published and consumed; a million for the memory figure
/// unless quick).
pub(crate) fn run(quick: bool) -> Result<Vec<ClusterFigure>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    runtime.block_on(async {
        let redis = RedisServer::start().await.map_err(err)?;
        let mut figures = Vec::new();
        let handoffs = if quick { 3 } else { 10 };
        figures.push(handoff(redis.url(), handoffs, "handoff").await?);
        // The same on a Redis Cluster: the keys' slot is on one primary, the client follows it.
        let cluster = RedisCluster::start(3, 1).await.map_err(err)?;
        let on_cluster = "handoff on a Redis Cluster (3 primaries, a replica each)";
        figures.push(handoff(&cluster.url(), handoffs, on_cluster).await?);
        drop(cluster);
        let rounds = if quick { 2 } else { 6 };
        figures.push(handoff_across_processes(redis.url(), rounds, false).await?);
        figures.push(handoff_across_processes(redis.url(), rounds, true).await?);
        figures.extend(throughput(redis.url(), if quick { 20_000 } else { 200_000 }).await?);
        figures.push(memory(redis.url(), if quick { 100_000 } else { 1_000_000 }).await?);
        Ok(figures)
    })
}

/// The fake gateway the handoff figures run against.
async fn gateway() -> Result<FakeGateway, String> {
    let config = GatewayConfig {
        identify_window: Duration::ZERO,
        max_concurrency: 16,
        world: WorldConfig::uniform(5, 8, 20),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await.map_err(err)
}

/// Options of the hidden `cluster-probe` task: one node in a process of its own, shut down
/// gracefully on SIGTERM (the cross-process handoff figure).
#[derive(Debug, clap::Args)]
pub(crate) struct NodeProbeOptions {
    #[arg(long)]
    redis: RedisTarget,
    #[arg(long)]
    gateway: String,
    #[arg(long)]
    token: String,
    #[arg(long)]
    name: String,
    /// The application (its keys' prefix).
    #[arg(long)]
    app: String,
    /// Take released leases only at the next round of upkeep (the figure before notices).
    #[arg(long)]
    no_release_notices: bool,
}

fn node_config(
    redis: &RedisTarget,
    gateway: &str,
    token: &str,
    app: &str,
    name: String,
) -> NodeConfig {
    let shard = ShardConfig::new(Token::new(token), Intents::GUILDS).with_gateway_url(gateway);
    let mut c = NodeConfig::new(redis.clone(), app, name, shard, SHARDS);
    c.max_concurrency = 16;
    c.identify_window = Duration::from_millis(10);
    c.lease_ttl = Duration::from_secs(3);
    c
}

/// Runs one node until SIGTERM, then hands its shards over.
pub(crate) fn node_probe(options: &NodeProbeOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    runtime.block_on(async {
        let config = node_config(
            &options.redis,
            &options.gateway,
            &options.token,
            &options.app,
            options.name.clone(),
        );
        let config = NodeConfig {
            release_notices: !options.no_release_notices,
            ..config
        };
        let (node, _events) = ClusterNode::start(config).await.map_err(err)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(err)?;
        term.recv().await;
        node.shutdown().await.map_err(err)
    })
}

/// From SIGTERM to one node's process to every shard RESUMED under a node in another process
/// (already running, waiting for the leases).
async fn handoff_across_processes(
    redis: &str,
    rounds: usize,
    notices: bool,
) -> Result<ClusterFigure, String> {
    let gw = gateway().await?;
    let exe = std::env::current_exe().map_err(err)?;
    let spawn = |name: String| {
        tokio::process::Command::new(&exe)
            .args([
                "cluster-probe",
                "--redis",
                redis,
                "--gateway",
                gw.url(),
                "--token",
            ])
            .arg(&gw.config().token)
            .args(["--name", &name])
            .args([
                "--app",
                if notices {
                    "bench-xhandoff"
                } else {
                    "bench-xhandoff-upkeep"
                },
            ])
            .args((!notices).then_some("--no-release-notices"))
            .kill_on_drop(true)
            .spawn()
            .map_err(err)
    };
    let mut current = spawn("p0".into())?;
    gw.wait_for_readies(u64::from(SHARDS)).await;
    let mut times = Vec::new();
    for round in 1..=rounds {
        let next = spawn(format!("p{round}"))?;
        // The next process is up and polling for leases before the signal.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let resumed = gw.stats().resumed;
        let pid = current.id().ok_or("the node process is gone")?;
        let started = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(err)?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        gw.wait_for_resumed(resumed + u64::from(SHARDS)).await;
        times.push(started.elapsed());
        current.wait().await.map_err(err)?;
        current = next;
    }
    current.start_kill().map_err(err)?;
    times.sort();
    let median = times[times.len() / 2];
    let how = match notices {
        true => "it takes the leases at the release notice",
        false => {
            "without release notices: it takes the leases at its next upkeep, a third of the 3 s TTL apart"
        }
    };
    Ok(ClusterFigure {
        name: match notices {
            true => "handoff across processes",
            false => "handoff across processes, without release notices",
        },
        value: median.as_secs_f64() * 1e3,
        unit: "ms (median)",
        detail: format!(
            "{SHARDS} shards: SIGTERM to one process until every shard is RESUMED in another, already running ({how}), {rounds} rounds; identifies stayed at {}",
            gw.stats().identifies
        ),
    })
}

/// From a node's shutdown starting to every shard RESUMED under the next node.
async fn handoff(redis: &str, rounds: usize, name: &'static str) -> Result<ClusterFigure, String> {
    let gw = gateway().await?;
    let token = gw.config().token.clone();
    let redis: RedisTarget = redis.parse().map_err(err)?;
    let config = |name: String| node_config(&redis, gw.url(), &token, "bench-handoff", name);
    let (mut node, _) = ClusterNode::start(config("n0".into())).await.map_err(err)?;
    gw.wait_for_readies(u64::from(SHARDS)).await;
    let mut times = Vec::new();
    for round in 1..=rounds {
        let resumed = gw.stats().resumed;
        let started = Instant::now();
        node.shutdown().await.map_err(err)?;
        let (next, mut events) = ClusterNode::start(config(format!("n{round}")))
            .await
            .map_err(err)?;
        node = next;
        gw.wait_for_resumed(resumed + u64::from(SHARDS)).await;
        times.push(started.elapsed());
        // The events are not needed; drain what came.
        while let Ok(Some(event)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
            if let NodeEvent::Lost { .. } = event {
                return Err("a lease was lost during a handoff".into());
            }
        }
    }
    node.shutdown().await.map_err(err)?;
    times.sort();
    let median = times[times.len() / 2];
    Ok(ClusterFigure {
        name,
        value: median.as_secs_f64() * 1e3,
        unit: "ms (median)",
        detail: format!(
            "{SHARDS} shards, shutdown of one node to RESUMED under the next, {rounds} rounds; identifies stayed at {}",
            gw.stats().identifies
        ),
    })
}

fn redis_cpu(info: &str) -> f64 {
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split_once(':')?.1.trim().parse::<f64>().ok())
        .sum()
}

async fn info(connection: &mut RedisConnection, section: &str) -> Result<String, String> {
    redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .map_err(err)
}

/// Every shard's fencing counter at 1, as a node's first lease of each would leave it: the
/// bench publishes its entries under token 1 without running a node.
async fn fenced(connection: &mut RedisConnection, app: &str) -> Result<(), String> {
    let keys = Keys::new(app);
    for shard in 0..SHARDS {
        redis::cmd("SET")
            .arg(keys.fence(shard))
            .arg(1)
            .query_async::<()>(connection)
            .await
            .map_err(err)?;
    }
    Ok(())
}

fn entry(seq: u64, data: &str) -> Entry {
    Entry {
        name: "MESSAGE_CREATE".into(),
        shard: (seq % u64::from(SHARDS)) as u32,
        session: "bench".into(),
        seq,
        fence: 1,
        data: data.into(),
        queued: Instant::now(),
    }
}

/// Events published and consumed (acked) per CPU second: this process, and Redis with it.
async fn throughput(redis: &str, events: u64) -> Result<Vec<ClusterFigure>, String> {
    let target: RedisTarget = redis.parse().map_err(err)?;
    let mut connection = RedisConnection::connect(&target, RedisOptions::default())
        .await
        .map_err(err)?;
    let app = "bench-throughput";
    let mut consumer = Consumer::connect(&target, {
        let mut c = ConsumerConfig::new(app, "bench", "c", 0..SHARDS);
        c.block = Duration::from_millis(50);
        c.count = 1024;
        c
    })
    .await
    .map_err(err)?;
    fenced(&mut connection, app).await?;
    let data = format!(r#"{{"content":"{}","id":"1"}}"#, "x".repeat(300));
    let cpu0 = sys::thread_cpu().unwrap_or_default();
    let redis0 = redis_cpu(&info(&mut connection, "cpu").await?);
    let started = Instant::now();
    let publisher = Publisher::spawn(connection.clone(), Keys::new(app), PublishConfig::default());
    let mut read = 0u64;
    let mut next = 1u64;
    while read < events {
        while next <= events {
            match publisher.try_publish(entry(next, &data)) {
                Ok(()) => next += 1,
                Err(_) => break,
            }
        }
        let batch = consumer.next().await.map_err(err)?;
        consumer.ack(&batch).await.map_err(err)?;
        read += batch.len() as u64;
        if batch.is_empty() && next <= events {
            publisher.ready().await;
        }
    }
    publisher.flush().await;
    let wall = started.elapsed().as_secs_f64();
    let ours = (sys::thread_cpu().unwrap_or_default() - cpu0).as_secs_f64();
    let theirs = redis_cpu(&info(&mut connection, "cpu").await?) - redis0;
    Ok(vec![
        ClusterFigure {
            name: "publish + consume, this process",
            value: events as f64 / ours.max(1e-9),
            unit: "events per CPU second",
            detail: format!(
                "{events} events of ~330 B over {SHARDS} streams; {wall:.2} s wall, one thread"
            ),
        },
        ClusterFigure {
            name: "publish + consume, with Redis",
            value: events as f64 / (ours + theirs).max(1e-9),
            unit: "events per CPU second",
            detail: format!("this process {ours:.2} s + redis-server {theirs:.2} s of CPU"),
        },
    ])
}

/// What Redis holds once `events` were published into one stream trimmed at 100,000 (`MAXLEN ~`).
async fn memory(redis: &str, events: u64) -> Result<ClusterFigure, String> {
    let mut connection = RedisConnection::open(redis, RedisOptions::default())
        .await
        .map_err(err)?;
    let used = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    fenced(&mut connection, "bench-memory").await?;
    let before = used(&info(&mut connection, "memory").await?);
    let publisher = Publisher::spawn(
        connection.clone(),
        Keys::new("bench-memory"),
        PublishConfig {
            maxlen: 100_000,
            ..PublishConfig::default()
        },
    );
    let data = format!(r#"{{"content":"{}","id":"1"}}"#, "x".repeat(300));
    for seq in 1..=events {
        let mut e = entry(seq, &data);
        e.shard = 0;
        while let Err(back) = publisher.try_publish(e) {
            publisher.ready().await;
            e = back;
        }
    }
    publisher.flush().await;
    let after = used(&info(&mut connection, "memory").await?);
    Ok(ClusterFigure {
        name: "Redis memory with trimming",
        value: (after - before) / 1e6,
        unit: "MB held",
        detail: format!("{events} events of ~330 B published into one stream with MAXLEN ~100000"),
    })
}
