//! `gateway-proxy` as a new user first runs it: no token, so it serves the embedded fake
//! gateway's shards. Its first line is the URL; a client gets READY, the GUILD_CREATEs and live
//! dispatches; `/healthz` and `/metrics` answer on the same port; `--help` names every flag.

// Tests are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../gateway-testkit/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Client;
use gateway_codec::Compression;
use gateway_model::{Intents, ShardId};
use sonic_rs::JsonContainerTrait;

struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            eprintln!("killing the proxy: {e}");
        }
        if let Err(e) = self.0.wait() {
            eprintln!("reaping the proxy: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_token_it_serves_the_embedded_fake_gateway_with_health_and_metrics() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway-proxy"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--status",
            "idle",
            "--zlib-level",
            "1",
        ])
        .env_remove("DISCORD_TOKEN")
        .env_remove("GATEWAY_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _proxy = Running(child);
    let url = BufReader::new(stdout).lines().next().unwrap().unwrap();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let addr: std::net::SocketAddr = url.trim_start_matches("ws://").parse().unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = common::http(addr, "GET", "/healthz", None).await;
        if status == 200 {
            assert!(body.contains(r#""ready":true"#), "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never healthy: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut client = Client::connect(&url, Compression::ZlibStream).await;
    let ready = client
        .start(Intents::all(), ShardId::new(0, 2).unwrap())
        .await;
    let guilds = ready.d_value()["guilds"].as_array().unwrap().len();
    assert!(guilds > 0);
    for _ in 0..guilds {
        client.expect_op(0, Some("GUILD_CREATE")).await;
    }
    // The embedded gateway's traffic: a message on some guild four times a second.
    client.expect_op(0, Some("MESSAGE_CREATE")).await;

    let (status, metrics) = common::http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    for name in [
        "gateway_proxy_clients",
        "gateway_proxy_replay_log_bytes",
        "gateway_proxy_cache_bytes",
        "gateway_proxy_downstream_latency_seconds",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
}

#[test]
fn help_names_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--shards",
        "--intents",
        "--client-secret",
        "--rest",
        "--log-bytes",
        "--log-seconds",
        "--session-ttl",
        "--forwarded-per-minute",
        "--send-window",
        "--stall-timeout",
        "--no-cache",
        "--zlib-level",
        "--heartbeat-interval-ms",
        "--status",
        "--activity",
        "--client-presence",
        "--metrics",
        "--redis",
        "--app",
        "--node",
        "--no-node",
        "--lease-ttl-ms",
    ] {
        assert!(help.contains(flag), "{flag} not in --help:\n{help}");
    }
}
