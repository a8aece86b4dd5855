//! `gateway-testkit serve` as another language's test suite would run it: start the program, read
//! the URL from its first line, and speak the protocol to it.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};

use common::{Client, End};
use gateway_codec::Compression;
use gateway_model::{Intents, RequestGuildMembers, ShardId, Snowflake};
use sonic_rs::JsonValueTrait;

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_prints_its_url_first_and_serves_a_whole_session() {
    let mut child = Process::new(env!("CARGO_BIN_EXE_gateway-testkit"))
        .args([
            "serve",
            "--port",
            "0",
            "--guilds",
            "8",
            "--members",
            "1500",
            "--seed",
            "9",
        ])
        .args(["--heartbeat-ms", "60000", "--max-concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let url = BufReader::new(stdout).lines().next().unwrap().unwrap();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");

    // Two shards in two identify buckets, so neither waits for the 5 s identify window.
    for (shard, compression) in [(0, Compression::ZlibStream), (1, Compression::ZstdStream)] {
        let mut c = Client::connect(&url, compression).await;
        let ready = c
            .start(
                Intents::GUILDS | Intents::GUILD_MEMBERS,
                ShardId::new(shard, 2).unwrap(),
            )
            .await;
        let session = ready.d_value()["session_id"].as_str().unwrap().to_owned();
        let guild: Snowflake = ready.d_value()["guilds"][0]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        c.heartbeat(Some(1)).await;
        c.expect_op(11, None).await;
        c.send(
            RequestGuildMembers::builder(guild)
                .query("", 0)
                .nonce("n")
                .build()
                .unwrap(),
        )
        .await;
        let chunk = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await;
        assert_eq!(chunk.d_value()["nonce"].as_str(), Some("n"));
        let seq = chunk.s.unwrap();
        c.close(4000).await;
        assert!(matches!(
            c.expect_end().await,
            End::Closed(_) | End::Dropped
        ));

        let mut c = Client::connect(&url, compression).await;
        c.expect().await;
        c.resume(&session, seq).await;
        c.expect_op(0, Some("RESUMED")).await;
    }

    let help = Process::new(env!("CARGO_BIN_EXE_gateway-testkit"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--port",
        "--guilds",
        "--members",
        "--seed",
        "--shards",
        "--heartbeat-ms",
        "--token",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
