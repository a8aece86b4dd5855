//! `gateway-proxy`: holds a bot's shards and serves them to bot processes in any language.
//!
//! With `DISCORD_TOKEN` it connects to Discord; with neither a token nor `GATEWAY_URL` it runs
//! the embedded fake gateway (`gateway-testkit`) upstream, with a seeded world and live
//! traffic, so a bot can be tried against it with no token at all.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use gateway_cluster::{ClusterNode, NodeConfig};
use gateway_model::{Activity, Intents, Status, Token};
use gateway_proxy::cache::{CacheConfig, Kind};
use gateway_proxy::{ClusterUpstream, PresencePolicy, Proxy, ProxyConfig, ServeOptions};
use gateway_shard::{PresenceUpdate, RedisTarget, ShardConfig, ShardGroup, ShardGroupConfig};
use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};
use tokio::net::TcpListener;

/// A Discord gateway proxy: the bot's shards upstream, bots in any language downstream, with a
/// RESUME that replays.
///
/// A bot connects as it would to Discord, with its REST base URL set to this proxy's
/// (`http://LISTEN/api`), or its gateway URL set to `ws://LISTEN`. Its token must be the bot's
/// (or a `--client-secret`), its `[shard_id, num_shards]` one of the proxy's.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen, websockets and HTTP on one port. Only loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// The websocket URL clients reach the proxy at (READY's `resume_gateway_url`, and
    /// `/gateway/bot`'s `url`). Default: `ws://` and the listening address.
    #[arg(long)]
    url: Option<String>,
    /// Upstream shard count. Default: Discord's recommendation with a token, 2 with the
    /// embedded fake gateway.
    #[arg(long)]
    shards: Option<u32>,
    /// Upstream intents (bits). Clients may ask for these or fewer. Default: every
    /// non-privileged intent on Discord, all of them with the fake gateway.
    #[arg(long)]
    intents: Option<u64>,
    /// Upstream max_concurrency (identify buckets). Default: Discord's, or 1.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Another token clients may identify with instead of the bot's (repeatable).
    #[arg(
        long = "client-secret",
        env = "GATEWAY_PROXY_CLIENT_SECRETS",
        value_delimiter = ','
    )]
    client_secrets: Vec<String>,
    /// Where every other `/api/*` request goes, unchanged. Default: https://discord.com (the
    /// fake gateway's own REST routes when it runs).
    #[arg(long)]
    rest: Option<String>,
    /// Bytes of dispatches each shard keeps for RESUME.
    #[arg(long, default_value_t = 64 << 20)]
    log_bytes: usize,
    /// Seconds each shard keeps dispatches for RESUME.
    #[arg(long, default_value_t = 600)]
    log_seconds: u64,
    /// Seconds a client session stays resumable after its connection went.
    #[arg(long, default_value_t = 180)]
    session_ttl: u64,
    /// Commands one client may send upstream per 60 s (its share of the shard's 120).
    #[arg(long, default_value_t = 60)]
    forwarded_per_minute: usize,
    /// Bytes sent to one client that its socket may not have taken yet (the rest waits in the
    /// log).
    #[arg(long, default_value_t = 1 << 20)]
    send_window: usize,
    /// Seconds a client behind may take nothing before it is closed to resume.
    #[arg(long, default_value_t = 30)]
    stall_timeout: u64,
    /// A collection not to cache (repeatable): channels, threads, roles, members, presences,
    /// voice_states, emojis, stickers, stage_instances, guild_scheduled_events,
    /// soundboard_sounds. Clients get it as an empty list.
    #[arg(long = "no-cache", value_parser = kind)]
    no_cache: Vec<Kind>,
    /// zlib-stream's deflate level for clients, 0–9: 6 is Discord's; 1 costs the proxy less
    /// CPU per zlib client and event, for larger frames (docs/PERFORMANCE.md has both).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    zlib_level: u32,
    /// HELLO's heartbeat interval for clients, in milliseconds.
    #[arg(long, default_value_t = 41_250)]
    heartbeat_interval_ms: u64,
    /// The bot's status, sent in each upstream IDENTIFY: online, idle, dnd or invisible.
    #[arg(long, default_value = "online", value_parser = status)]
    status: Status,
    /// A custom status text, sent in each upstream IDENTIFY.
    #[arg(long)]
    activity: Option<String>,
    /// What a client's presence update (op 3) does: `last-writer-wins` forwards it to its
    /// shard; `ignore` keeps the configured presence.
    #[arg(long, default_value = "last-writer-wins", value_parser = presence_policy)]
    client_presence: PresencePolicy,
    /// Serve `/metrics` (Prometheus).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    metrics: bool,
    /// Run on Redis (a URL, or a Redis Cluster's node URLs, comma-separated): the shards are
    /// held by cluster nodes (one in this process, unless --no-node), with leases and stored
    /// sessions, and served from their Redis streams, so that any number of proxy processes
    /// serve them and a restart re-identifies nothing. (Read after the flags, so that a bad
    /// value's error hides its password.)
    #[arg(long, env = "GATEWAY_PROXY_REDIS")]
    redis: Option<String>,
    /// The application on Redis: every key starts with `{app}:`. Proxies and nodes of one bot
    /// share it.
    #[arg(long, default_value = "gateway-proxy")]
    app: String,
    /// This process's node name on Redis, unique among the application's processes. Default:
    /// `proxy-` and a random tag.
    #[arg(long)]
    node: Option<String>,
    /// On Redis, run no node here: serve the shards other processes hold.
    #[arg(long)]
    no_node: bool,
    /// On Redis, how long this node's leases live without renewal, in milliseconds: how long
    /// a shard of a process killed without a word waits before another node resumes it. The
    /// node stops a shard it could not renew a fifth of it earlier.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(500..))]
    lease_ttl_ms: u64,
}

fn status(name: &str) -> Result<Status, String> {
    match name {
        "online" => Ok(Status::Online),
        "idle" => Ok(Status::Idle),
        "dnd" => Ok(Status::Dnd),
        "invisible" => Ok(Status::Invisible),
        _ => Err(format!("{name}: one of online, idle, dnd, invisible")),
    }
}

fn presence_policy(name: &str) -> Result<PresencePolicy, String> {
    match name {
        "last-writer-wins" => Ok(PresencePolicy::LastWriterWins),
        "ignore" => Ok(PresencePolicy::Ignore),
        _ => Err(format!("{name}: one of last-writer-wins, ignore")),
    }
}

fn kind(name: &str) -> Result<Kind, String> {
    gateway_proxy::cache::kinds()
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| format!("{name} is not a cached collection"))
}

/// Where the shards connect, with which token.
struct Upstream {
    fake: Option<FakeGateway>,
    url: String,
    token: String,
    rest: String,
    on_discord: bool,
}

impl Upstream {
    async fn choose(args: &Args) -> std::io::Result<Self> {
        let token = std::env::var("DISCORD_TOKEN").ok();
        let url = std::env::var("GATEWAY_URL").ok();
        Ok(match (url, token) {
            (None, None) => {
                let fake = start_fake_gateway(args.shards.unwrap_or(2)).await?;
                let rest = fake.url().replacen("ws://", "http://", 1);
                Self {
                    url: fake.url().to_owned(),
                    token: fake.config().token.clone(),
                    rest,
                    fake: Some(fake),
                    on_discord: false,
                }
            }
            (Some(url), token) => Self {
                rest: url
                    .replacen("ws://", "http://", 1)
                    .replacen("wss://", "https://", 1),
                url,
                token: token.unwrap_or_else(|| "testkit-token".to_owned()),
                fake: None,
                on_discord: false,
            },
            (None, Some(token)) => Self {
                url: gateway_shard::DISCORD_GATEWAY.to_owned(),
                token,
                rest: "https://discord.com".to_owned(),
                fake: None,
                on_discord: true,
            },
        })
    }
}

async fn start_fake_gateway(shards: u32) -> std::io::Result<FakeGateway> {
    let config = GatewayConfig {
        heartbeat_interval: Duration::from_secs(5),
        max_concurrency: 16,
        recommended_shards: shards.max(1),
        world: WorldConfig::mixed(7, (10 * shards as usize).max(20), 300),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await
}

/// Live traffic on the fake gateway: a message on some guild of each shard every second.
async fn traffic(gateway: &FakeGateway) {
    let world = gateway.world();
    let guilds = world.guilds();
    let mut n = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let g = &guilds[n as usize % guilds.len()];
        let total = gateway.config().recommended_shards;
        if let Some(conn) = gateway.shard_connection(g.id.shard_index(total)) {
            conn.dispatch("MESSAGE_CREATE", world.message_create_json(g, n, 60));
        }
        n += 1;
    }
}

/// A seed of this process's own: the binary is the driver, where randomness comes from.
#[allow(clippy::disallowed_methods)]
fn random_seed() -> u64 {
    let state = std::collections::hash_map::RandomState::new();
    std::hash::BuildHasher::hash_one(&state, std::process::id())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,gateway_testkit=warn".into()),
        )
        // stdout is the URL and what it serves, for scripts; logs go to stderr.
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let upstream = Upstream::choose(&args).await?;
    let token = Token::new(upstream.token.clone());
    let (shards, max_concurrency) = match (args.shards, upstream.on_discord) {
        (None, true) => {
            let info =
                gateway_shard::fetch_gateway_bot(gateway_shard::DISCORD_API, &token, &[], None)
                    .await?;
            (
                info.shards.max(1),
                info.session_start_limit.max_concurrency.max(1),
            )
        }
        (shards, _) => (
            shards.unwrap_or(2).max(1),
            args.max_concurrency.unwrap_or(16),
        ),
    };
    let intents = match (args.intents, upstream.on_discord) {
        (Some(bits), _) => Intents::from_bits_truncate(bits),
        (None, true) => Intents::all() & !Intents::PRIVILEGED,
        (None, false) => Intents::all(),
    };
    let listener = TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let url = args.url.clone().unwrap_or_else(|| format!("ws://{addr}"));

    let mut config = ProxyConfig::new(token.clone(), shards, intents, url.clone());
    config.client_secrets = args.client_secrets.iter().map(Token::new).collect();
    config.log.max_bytes = args.log_bytes;
    config.log.max_age = Duration::from_secs(args.log_seconds);
    config.session_ttl = Duration::from_secs(args.session_ttl);
    config.forwarded_per_minute = args.forwarded_per_minute;
    config.send_window = args.send_window;
    config.stall_timeout = Duration::from_secs(args.stall_timeout);
    config.cache = CacheConfig::without(args.no_cache.iter().copied());
    config.connection.heartbeat_interval = Duration::from_millis(args.heartbeat_interval_ms);
    config.connection.heartbeat_timeout =
        Some(Duration::from_millis(args.heartbeat_interval_ms * 3 / 2));
    config.connection.name = "gateway-proxy";
    config.connection.zlib_level = args.zlib_level;

    config.presence = args.client_presence;
    let presence = PresenceUpdate {
        status: Some(args.status),
        activity: args
            .activity
            .clone()
            .map(|text| Some(Activity::custom(text))),
        ..PresenceUpdate::default()
    };
    let shard = ShardConfig::new(token, intents)
        .with_gateway_url(upstream.url.clone())
        .with_presence(presence)
        .with_raw_dispatches(true);
    let mut options = ServeOptions::default();
    options.rest = args.rest.clone().unwrap_or_else(|| upstream.rest.clone());
    if args.metrics {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        options.metrics = Some(recorder.handle());
        metrics::set_global_recorder(recorder)?;
    }
    let mut proxy = match &args.redis {
        Some(redis) => {
            // Proxies on one cluster tell their sessions and nonces apart by their seeds.
            config.seed = random_seed();
            config.share_sessions = true;
            let redis: RedisTarget = redis.parse()?;
            let mut cluster = ClusterUpstream::connect(redis.clone(), &args.app).await?;
            if !args.no_node {
                let name = args
                    .node
                    .clone()
                    .unwrap_or_else(|| format!("proxy-{:08x}", config.seed >> 32));
                let mut node = NodeConfig::new(redis, &args.app, name, shard, shards);
                node.max_concurrency = max_concurrency;
                node.lease_ttl = Duration::from_millis(args.lease_ttl_ms);
                node.lease_margin = node.lease_ttl / 5;
                let (node, events) = ClusterNode::start(node).await?;
                cluster = cluster.with_node(node, events);
            }
            Proxy::start_on_cluster(config, cluster, listener, options)?
        }
        None => {
            let group = ShardGroupConfig::new(shard, shards, max_concurrency);
            let (group, events) = ShardGroup::spawn(group)?;
            Proxy::start(config, group, events, listener, options)?
        }
    };
    // The first line is the URL alone, for scripts (as `gateway-testkit serve` prints its own).
    // A reader that went away after it (`| head -1`) does not stop the proxy.
    let about = match &upstream.fake {
        Some(_) => format!(
            "no DISCORD_TOKEN: serving the embedded fake gateway's {shards} shard(s).\n\
             Bots connect to {url} (REST base http://{addr}/api) with the token `{}`.",
            upstream.token
        ),
        None => format!(
            "serving {shards} shard(s) of {} on {url} (REST base http://{addr}/api)",
            upstream.url
        ),
    };
    let about = match &args.redis {
        Some(_) => format!("{about}\non Redis as application `{}`", args.app),
        None => about,
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{url}\n{about}").and_then(|()| stdout.flush()) {
        tracing::info!(error = %e, "stdout is gone; serving on");
    }
    drop(stdout);
    let traffic = async {
        match &upstream.fake {
            Some(fake) => traffic(fake).await,
            None => std::future::pending().await,
        }
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = proxy.join() => {}
        () = traffic => {}
        _ = sigterm.recv() => {
            tracing::info!("SIGTERM: closing clients to resume, handing shards over");
            proxy.shutdown().await;
        }
        signal = tokio::signal::ctrl_c() => {
            if let Err(e) = signal {
                tracing::error!(error = %e, "signal handler");
            }
            proxy.shutdown().await;
        }
    }
    Ok(())
}
