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
        /// Not used to validate anything: a hint printed for the bot's shard count.
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// Heartbeat interval sent in HELLO, in milliseconds.
        #[arg(long = "heartbeat-ms", default_value_t = 41_250)]
        heartbeat_ms: u64,
        /// The token clients must identify with.
        #[arg(long, default_value = "testkit-token")]
        token: String,
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
    } = cli.command;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "gateway_testkit=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = GatewayConfig {
        token,
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
        eprintln!(
            "serving {} guilds (per shard of {}: {:?}); token {:?}; Ctrl-C stops",
            gateway.world().guilds().len(),
            shards.max(1),
            per_shard,
            gateway.config().token
        );
        let _ = tokio::signal::ctrl_c().await;
        let stats = gateway.stats();
        eprintln!("stopped: {stats:?}");
        std::process::ExitCode::SUCCESS
    })
}
