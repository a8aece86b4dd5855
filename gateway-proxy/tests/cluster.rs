//! Two `gateway-proxy` processes on one real redis-server, against the fake gateway: each
//! serves every shard from the shards' Redis streams, wherever a node holds them; a client's
//! command reaches the shard through Redis; and a SIGTERM of the process whose node holds the
//! shards hands them to the other's node with no IDENTIFY, its clients seeing no gap; a rolling
//! restart of both proxies resumes every bot on the other, and so does a SIGKILL of one, on
//! one redis-server and on a Redis Cluster whose primary fails over meanwhile; Redis away past
//! the lease TTL, and Redis restarted empty.

// Tests are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../gateway-testkit/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Client;
use gateway_codec::Compression;
use gateway_model::{Intents, ShardId};
use gateway_testkit::{FakeGateway, GatewayConfig, RedisCluster, RedisServer, Relay, WorldConfig};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

const LIMIT: Duration = Duration::from_secs(30);

/// A proxy process, killed when dropped.
struct ProxyProcess {
    child: Child,
    url: String,
}

impl ProxyProcess {
    fn start(redis: &str, gateway: &FakeGateway, node: &str) -> Self {
        Self::start_with(redis, gateway, node, &[])
    }

    /// With more flags.
    fn start_with(redis: &str, gateway: &FakeGateway, node: &str, flags: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway-proxy"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--app",
                "proxied",
            ])
            .args(["--redis", redis, "--node", node])
            .args(["--heartbeat-interval-ms", "60000", "--metrics", "false"])
            .args(flags)
            .env("GATEWAY_URL", gateway.url())
            .env("DISCORD_TOKEN", &gateway.config().token)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let url = BufReader::new(stdout).lines().next().unwrap().unwrap();
        assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
        Self { child, url }
    }

    /// SIGKILL: it leaves no word.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the process to end by itself.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + LIMIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("killing the proxy: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("reaping the proxy: {e}");
        }
    }
}

async fn gateway() -> FakeGateway {
    let config = GatewayConfig {
        identify_window: Duration::ZERO,
        max_concurrency: 16,
        recommended_shards: 2,
        world: WorldConfig::uniform(6, 4, 10),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await.unwrap()
}

/// Sends `n` TEST_EVENTs on shard 0's live upstream connection (waiting for one).
async fn traffic(gw: &FakeGateway, from: u64, n: u64) {
    let connection = tokio::time::timeout(LIMIT, async {
        loop {
            if let Some(c) = gw.shard_connection(0) {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("shard 0 up");
    for i in from..from + n {
        assert!(connection.dispatch("TEST_EVENT", format!(r#"{{"i":{i}}}"#)));
    }
}

/// Reads TEST_EVENTs `from..from + n`, each once, in order, with the sequence numbers after
/// `seq`; returns the last one.
async fn expect_events(client: &mut Client, from: u64, n: u64, mut seq: u64) -> u64 {
    for i in from..from + n {
        let got = client.expect_op(0, Some("TEST_EVENT")).await;
        assert_eq!(got.d_value()["i"].as_u64(), Some(i), "in order, none lost");
        let s = got.s.unwrap();
        assert!(s > seq, "sequence numbers grow");
        seq = s;
    }
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxy_processes_serve_the_shards_and_a_sigterm_hands_them_over_with_no_identify() {
    let redis = RedisServer::start().await.unwrap();
    let gw = gateway().await;
    let mut a = ProxyProcess::start(redis.url(), &gw, "a");
    tokio::time::timeout(LIMIT, gw.wait_for_readies(2))
        .await
        .expect("a's node identified both shards");
    let b = ProxyProcess::start(redis.url(), &gw, "b");

    // B holds no shard, and serves shard 0 from its stream: READY, then every GUILD_CREATE.
    let mut client = Client::connect(&b.url, Compression::ZlibStream).await;
    let ready = client
        .start(Intents::all(), ShardId::new(0, 2).unwrap())
        .await;
    let guilds = ready.d_value()["guilds"].as_array().unwrap().len();
    assert!(guilds > 0);
    for _ in 0..guilds {
        client.expect_op(0, Some("GUILD_CREATE")).await;
    }
    traffic(&gw, 0, 10).await;
    let seq = expect_events(&mut client, 0, 10, 0).await;

    // A command from B's client reaches shard 0, held by A's node.
    client
        .send_text(r#"{"op":3,"d":{"since":null,"activities":[],"status":"dnd","afk":false}}"#)
        .await;
    tokio::time::timeout(
        LIMIT,
        gw.wait_for(|v| {
            v.recorded()
                .iter()
                .any(|r| matches!(r.command(), Some(gateway_model::Command::UpdatePresence(_))))
        }),
    )
    .await
    .expect("the presence update reached the gateway");

    // A goes: its node hands both shards to B's, which resumes them.
    a.terminate();
    tokio::time::timeout(LIMIT, gw.wait_for_resumed(2))
        .await
        .expect("b's node resumed both shards");
    traffic(&gw, 10, 10).await;
    expect_events(&mut client, 10, 10, seq).await;
    assert_eq!(
        gw.stats().identifies,
        2,
        "handed over, not identified again"
    );
    drop(b);
}

/// A bot's connection through the proxies: its session, and the last sequence number it read.
struct Bot {
    client: Client,
    session: String,
    seq: u64,
}

impl Bot {
    /// Identifies on shard 0 through `url`, and reads READY and every GUILD_CREATE.
    async fn start(url: &str) -> Self {
        let mut client = Client::connect(url, Compression::ZlibStream).await;
        let ready = client
            .start(Intents::all(), ShardId::new(0, 2).unwrap())
            .await;
        let d = ready.d_value();
        let guilds = d["guilds"].as_array().unwrap().len();
        let mut seq = ready.s.unwrap();
        for _ in 0..guilds {
            seq = client.expect_op(0, Some("GUILD_CREATE")).await.s.unwrap();
        }
        Self {
            client,
            session: d["session_id"].as_str().unwrap().to_owned(),
            seq,
        }
    }

    async fn events(&mut self, from: u64, n: u64) {
        self.seq = expect_events(&mut self.client, from, n, self.seq).await;
    }

    /// Its proxy stops: it reads to the close, which must be 4000 (resume).
    async fn closed_to_resume(&mut self) {
        match self.client.expect_end().await {
            common::End::Closed(code) => assert_eq!(code, Some(4000)),
            end => panic!("ended without a close: {end:?}"),
        }
    }

    /// Its proxy died: the connection ends with no close from it.
    async fn dropped(&mut self) {
        match self.client.expect_end().await {
            common::End::Dropped | common::End::Closed(None | Some(1006)) => {}
            end => panic!("ended otherwise: {end:?}"),
        }
    }

    /// Resumes on `url`: HELLO, RESUME with the last sequence number read.
    async fn resume(&mut self, url: &str) {
        self.client = Client::connect(url, Compression::ZlibStream).await;
        assert_eq!(self.client.expect().await.op, 10);
        self.client.resume(&self.session, self.seq).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_both_proxies_resumes_every_bot_on_the_other_with_nothing_lost() {
    let redis = RedisServer::start().await.unwrap();
    rolling_restart(redis.url(), async || {}).await;
}

/// The rolling restart on a Redis Cluster of 3 primaries (one replica each), the primary that
/// holds the application's keys failing over (planned, as in a rolling upgrade of Redis) while
/// the first proxy is away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_on_a_redis_cluster_with_a_failover_loses_nothing() {
    let cluster = RedisCluster::start(3, 1).await.expect("a Redis Cluster");
    rolling_restart(&cluster.url(), async || {
        cluster
            .fail_over("{proxied}:sessions")
            .await
            .expect("the failover");
    })
    .await;
}

/// Two proxies A and B, a bot on each; A stops (SIGTERM) and its bot resumes on B; `meanwhile`
/// runs; a new A starts and B stops: both bots resume on the new A. Every bot gets every
/// dispatch once, in order, and the gateway sees no IDENTIFY after the first node's two.
async fn rolling_restart(redis: &str, meanwhile: impl AsyncFnOnce()) {
    let gw = gateway().await;
    let mut a = ProxyProcess::start(redis, &gw, "a");
    tokio::time::timeout(LIMIT, gw.wait_for_readies(2))
        .await
        .expect("a's node identified both shards");
    let mut b = ProxyProcess::start(redis, &gw, "b");
    let mut on_a = Bot::start(&a.url).await;
    let mut on_b = Bot::start(&b.url).await;
    traffic(&gw, 0, 10).await;
    on_a.events(0, 10).await;
    on_b.events(0, 10).await;

    // A stops: its bot is closed to resume and resumes on B, which replays what followed.
    a.terminate();
    on_a.closed_to_resume().await;
    tokio::time::timeout(LIMIT, gw.wait_for_resumed(2))
        .await
        .expect("b's node resumed both shards");
    meanwhile().await;
    traffic(&gw, 10, 10).await;
    on_a.resume(&b.url).await;
    on_a.events(10, 10).await;
    on_b.events(10, 10).await;

    // A comes back; B stops: both bots resume on the new A.
    let a = ProxyProcess::start(redis, &gw, "a2");
    b.terminate();
    on_a.closed_to_resume().await;
    on_b.closed_to_resume().await;
    tokio::time::timeout(LIMIT, gw.wait_for_resumed(4))
        .await
        .expect("a2's node resumed both shards");
    traffic(&gw, 20, 10).await;
    on_a.resume(&a.url).await;
    on_b.resume(&a.url).await;
    on_a.events(20, 10).await;
    on_b.events(20, 10).await;
    assert_eq!(gw.stats().identifies, 2, "no IDENTIFY after the first two");
    drop(a);
}

/// A proxy process killed with SIGKILL writes nothing as it goes. Its bot's session was
/// written down while it ran (once its start settled), so the bot RESUMEs on the other proxy,
/// which walks its own log forward from the record to the bot's sequence number; the other
/// node takes the shards once the leases run out and resumes them, the gateway replaying what
/// the dead node had not stored (at least once), and the streams keep each dispatch once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_with_sigkill_leaves_its_bots_to_resume_on_the_other_with_nothing_lost() {
    let redis = RedisServer::start().await.unwrap();
    killed(redis.url(), async || {}).await;
}

/// The same on a Redis Cluster of 3 primaries, the primary that holds the application's keys
/// failing over (planned) while the dead proxy's leases run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_on_a_redis_cluster_with_a_failover_loses_nothing() {
    let cluster = RedisCluster::start(3, 1).await.expect("a Redis Cluster");
    killed(&cluster.url(), async || {
        cluster
            .fail_over("{proxied}:sessions")
            .await
            .expect("the failover");
    })
    .await;
}

/// Proxies A and B, a bot on each; A is killed with SIGKILL and `meanwhile` runs; A's bot
/// resumes on B; both get every dispatch once, in order, with no IDENTIFY after the first two.
async fn killed(redis: &str, meanwhile: impl AsyncFnOnce()) {
    let gw = gateway().await;
    let lease = ["--lease-ttl-ms", "1500"];
    let mut a = ProxyProcess::start_with(redis, &gw, "a", &lease);
    tokio::time::timeout(LIMIT, gw.wait_for_readies(2))
        .await
        .expect("a's node identified both shards");
    let b = ProxyProcess::start_with(redis, &gw, "b", &lease);
    let mut on_a = Bot::start(&a.url).await;
    let mut on_b = Bot::start(&b.url).await;
    traffic(&gw, 0, 10).await;
    on_a.events(0, 10).await;
    on_b.events(0, 10).await;
    // The bots' sessions are written 100 ms after their starts, the upstream sessions as soon
    // as their READY is in the stream (then every second).
    tokio::time::sleep(Duration::from_millis(400)).await;
    traffic(&gw, 10, 5).await;
    on_a.events(10, 5).await;
    on_b.events(10, 5).await;

    a.kill();
    on_a.dropped().await;
    meanwhile().await;
    tokio::time::timeout(LIMIT, gw.wait_for_resumed(2))
        .await
        .expect("b's node resumed both shards after the leases ran out");
    traffic(&gw, 15, 10).await;
    on_a.resume(&b.url).await;
    on_a.events(15, 10).await;
    on_b.events(15, 10).await;
    assert_eq!(gw.stats().identifies, 2, "no IDENTIFY after the first two");
    drop(b);
}

/// Redis away for every process for twice the lease TTL: each node stops its shards before
/// their leases could be taken over, so that no shard ever has two upstream connections at
/// once (from the fake gateway's connection times); the bots stay on their proxies, hearing
/// nothing meanwhile; once Redis is back the shards resume (no IDENTIFY), and every bot gets
/// what followed once, in order, on the connection it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_past_the_lease_ttl_stops_the_shards_and_they_come_back_with_nothing_lost() {
    let redis = RedisServer::start().await.unwrap();
    let relay = Relay::start(redis.url()).await.unwrap();
    let gw = gateway().await;
    let lease = ["--lease-ttl-ms", "1500"];
    let a = ProxyProcess::start_with(&relay.redis_url(), &gw, "a", &lease);
    tokio::time::timeout(LIMIT, gw.wait_for_readies(2))
        .await
        .expect("a's node identified both shards");
    let b = ProxyProcess::start_with(&relay.redis_url(), &gw, "b", &lease);
    let mut on_a = Bot::start(&a.url).await;
    let mut on_b = Bot::start(&b.url).await;
    traffic(&gw, 0, 10).await;
    on_a.events(0, 10).await;
    on_b.events(0, 10).await;
    // The upstream sessions are stored (every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    relay.cut();
    tokio::time::timeout(LIMIT, async {
        while gw.shard_connection(0).is_some() || gw.shard_connection(1).is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every shard stopped without Redis");
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.join();

    tokio::time::timeout(LIMIT, gw.wait_for_resumed(2))
        .await
        .expect("both shards resumed once Redis was back");
    traffic(&gw, 10, 10).await;
    on_a.events(10, 10).await;
    on_b.events(10, 10).await;
    assert_eq!(gw.stats().identifies, 2, "resumed, not identified again");
    for shard in 0..2 {
        let spans = gw.shard_connections(shard);
        assert!(spans.len() >= 2, "shard {shard} came back: {spans:?}");
        let overlap = gw.overlapping_connections(shard);
        assert!(overlap.is_none(), "shard {shard}: two at once: {overlap:?}");
    }
    drop((a, b));
}

/// Redis restarted empty under a proxy: its node loses its leases and stored sessions, takes
/// the shards again and identifies them (within the identify budget, which starts again too);
/// the proxy follows the shards' new streams from their start, and its bot, still connected,
/// gets what followed, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_the_shards_identify_again_and_the_bots_go_on() {
    let mut redis = RedisServer::start().await.unwrap();
    let gw = gateway().await;
    let a = ProxyProcess::start_with(redis.url(), &gw, "a", &["--lease-ttl-ms", "1500"]);
    tokio::time::timeout(LIMIT, gw.wait_for_readies(2))
        .await
        .expect("a's node identified both shards");
    let mut bot = Bot::start(&a.url).await;
    traffic(&gw, 0, 10).await;
    bot.events(0, 10).await;

    redis.restart_empty().await.unwrap();
    tokio::time::timeout(LIMIT, gw.wait_for_readies(4))
        .await
        .expect("both shards identified again");
    traffic(&gw, 10, 10).await;
    bot.events(10, 10).await;
    assert_eq!(gw.stats().identifies, 4, "one IDENTIFY more per shard");
    drop(a);
}
