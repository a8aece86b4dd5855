//! `gateway-testkit serve`: the fake gateway as a program, for bots written in any language.

use std::time::Duration;

use clap::{Parser, Subcommand};
use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};

/// A fake Discord gateway (v10) on 127.0.0.1, for testing bots without Discord.
#[derive(Debug, Parser)]
#[command(name = "gateway-testkit", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Serve until stopped (Ctrl-C). The first line of stdout is the ws:// URL to connect to;
    /// clients may add `/?v=10&encoding=json` and `&compress=zlib-stream` or `zstd-stream`.
    /// The same port answers plain HTTP: `GET /api/v10/gateway`, `/gateway/bot`, `/users/@me`
    /// and `/oauth2/applications/@me` (point a bot's REST base URL at
    /// `http://127.0.0.1:PORT/api/v10`), `GET /testkit/stats`, and
    /// `POST /testkit/shards/N/{reconnect|drop|zombie|request-heartbeat|close/{code}|invalid-session/{true|false}}`.
    Serve {
        /// Port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Number of guilds in the world.
        #[arg(long, default_value_t = 8)]
        guilds: usize,
        /// Typical members per guild; every tenth guild is large (2 to 10 times this).
        #[arg(long, default_value_t = 300)]
        members: usize,
        /// Seed of the world: the same seed gives the same guilds, members and bytes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Guilds that start unavailable (the last ones).
        #[arg(long, default_value_t = 0)]
        unavailable: usize,
        /// Identify rate-limit buckets (max_concurrency).
        #[arg(long, default_value_t = 1)]
        max_concurrency: u32,
        /// Time between identifies of one bucket, in milliseconds (Discord: 5000).
        #[arg(long = "identify-window-ms", default_value_t = 5000)]
        identify_window_ms: u64,
        /// Every guild gets exactly --members members (instead of a realistic mix).
        #[arg(long)]
        uniform: bool,
        /// The shard count `GET /gateway/bot` recommends.
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// Session starts (READYs) allowed per window, as `session_start_limit.total`.
        #[arg(long, default_value_t = 1000)]
        session_start_limit: u32,
        /// The session start window, in milliseconds (Discord: a day).
        #[arg(long = "session-start-reset-ms", default_value_t = 86_400_000)]
        session_start_reset_ms: u64,
        /// Most connections open at once.
        #[arg(long, default_value_t = 4096)]
        max_connections: usize,
        /// Client payloads and closed connections remembered.
        #[arg(long, default_value_t = 100_000)]
        history_limit: usize,
        /// Heartbeat interval sent in HELLO, in milliseconds.
        #[arg(long = "heartbeat-ms", default_value_t = 41_250)]
        heartbeat_ms: u64,
        /// The token clients must identify with.
        #[arg(long, default_value = "testkit-token")]
        token: String,
        /// Dispatches per second sent to each shard's live session (`TESTKIT_EVENT`, `{"n": N}`
        /// with N counting 1, 2, 3… per shard, only what a session took), for demos and load;
        /// 0 sends none.
        #[arg(long = "dispatch-rate", default_value_t = 0.0)]
        dispatch_rate: f64,
        /// Dispatches for `POST /testkit/replay` and `POST /testkit/shards/N/replay`: a file of
        /// JSON lines, each `{"t": NAME, "d": DATA}`.
        #[arg(long, value_name = "FILE")]
        replay: Option<std::path::PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Commands::Serve {
        port,
        guilds,
        members,
        seed,
        unavailable,
        max_concurrency,
        identify_window_ms,
        uniform,
        shards,
        heartbeat_ms,
        token,
        session_start_limit,
        session_start_reset_ms,
        max_connections,
        history_limit,
        dispatch_rate,
        replay,
    } = cli.command;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "gateway_testkit=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let replay = match replay.as_deref().map(read_replay).transpose() {
        Ok(replay) => replay.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: --replay: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let default_token = token == GatewayConfig::default().token;
    let config = GatewayConfig {
        token,
        recommended_shards: shards.max(1),
        session_start_limit,
        session_start_reset: Duration::from_millis(session_start_reset_ms),
        max_connections: max_connections.max(1),
        history_limit: history_limit.max(1),
        heartbeat_interval: Duration::from_millis(heartbeat_ms.max(1)),
        max_concurrency: max_concurrency.max(1),
        identify_window: Duration::from_millis(identify_window_ms),
        world: WorldConfig {
            unavailable,
            ..if uniform {
                WorldConfig::uniform(seed, guilds, members)
            } else {
                WorldConfig::mixed(seed, guilds, members)
            }
        },
        replay: replay.into(),
        ..GatewayConfig::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let gateway = match FakeGateway::start_with(config, port).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: cannot listen on 127.0.0.1:{port}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("{}", gateway.url());
        let per_shard: Vec<usize> = (0..shards.max(1))
            .map(|s| gateway.world().guilds_of_shard(s, shards.max(1)).count())
            .collect();
        // The default token is public (documented); one given with --token is never printed.
        let token = if default_token {
            format!("{:?}", gateway.config().token)
        } else {
            "from --token".to_owned()
        };
        eprintln!(
            "serving {} guilds (per shard of {}: {:?}); token {token}; REST at {}/api/v10; Ctrl-C stops",
            gateway.world().guilds().len(),
            shards.max(1),
            per_shard,
            gateway.url().replacen("ws://", "http://", 1),
        );
        let traffic = async {
            if dispatch_rate <= 0.0 {
                return std::future::pending().await;
            }
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / dispatch_rate));
            // Per shard, counting only what a live session took: a client sees 1, 2, 3… with
            // no gap unless it lost one.
            let mut sent = vec![0u64; shards.max(1) as usize];
            loop {
                tick.tick().await;
                for (shard, n) in (0..).zip(sent.iter_mut()) {
                    if let Some(connection) = gateway.shard_connection(shard) {
                        let next = *n + 1;
                        if connection.dispatch("TESTKIT_EVENT", format!(r#"{{"n":{next}}}"#)) {
                            *n = next;
                        }
                    }
                }
            }
        };
        tokio::select! {
            stopped = tokio::signal::ctrl_c() => if let Err(e) = stopped {
                eprintln!("error: cannot wait for Ctrl-C: {e}");
            },
            () = traffic => {}
        }
        let stats = gateway.stats();
        eprintln!("stopped: {stats:?}");
        std::process::ExitCode::SUCCESS
    })
}

/// One line of a `--replay` file.
#[derive(serde::Deserialize)]
struct ReplayLine<'a> {
    t: String,
    #[serde(borrow)]
    d: &'a serde_json::value::RawValue,
}

/// Reads a `--replay` file: JSON lines of `{"t": NAME, "d": DATA}` (blank lines skipped).
fn read_replay(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str::<ReplayLine<'_>>(line)
                .map(|l| (l.t, l.d.get().to_owned()))
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
