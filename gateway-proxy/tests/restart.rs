//! A bot process killed with SIGKILL while the upstream sends a steady load, then started again:
//! it RESUMEs to the proxy and gets every dispatch exactly once, in order; away for longer than
//! the replay log, it gets op 9 and identifies again, and the upstream sees no IDENTIFY.
//!
//! The bot is this test binary run again as a child process (`bot_process` below, ignored in
//! a normal run; the tests start it with `--ignored`): a real process, killed for real.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../gateway-testkit/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, End};
use gateway_codec::Compression;
use gateway_model::{Intents, ShardId, Token};
use gateway_proxy::{Proxy, ProxyConfig, ServeOptions};
use gateway_shard::{ShardConfig, ShardGroup, ShardGroupConfig};
use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};
use tokio::net::TcpListener;

/// The bot: connects to `PROXY_TEST_URL`, RESUMEs the session its journal names (or
/// identifies), and appends `session ID`, then `SEQ MESSAGE_ID` per MESSAGE_CREATE, to the
/// journal, one whole line per write.
#[tokio::test(flavor = "current_thread")]
#[ignore = "the bot process of the tests below, which run it as a child"]
async fn bot_process() {
    let Ok(journal) = std::env::var("PROXY_TEST_BOT") else {
        return;
    };
    let url = std::env::var("PROXY_TEST_URL").unwrap();
    let journal = PathBuf::from(journal);
    loop {
        let (session, seq) = last_state(&journal);
        let mut client = Client::connect(&url, Compression::ZlibStream).await;
        assert_eq!(client.expect().await.op, 10);
        match &session {
            Some(id) => client.resume(id, seq).await,
            None => {
                client
                    .identify(Intents::all(), ShardId::new(0, 1).unwrap())
                    .await
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&journal)
            .unwrap();
        loop {
            let got = match client.recv().await {
                Ok(got) => got,
                // Op 9 then 4007: the session is gone; a new one follows.
                Err(End::Closed(Some(4007))) => break,
                Err(end) => panic!("bot: {end:?}"),
            };
            let line = match (got.op, got.t.as_deref()) {
                (9, _) => "invalid\n".to_owned(),
                (0, Some("READY")) => {
                    let d: serde_json::Value =
                        serde_json::from_str(got.d.as_deref().unwrap()).unwrap();
                    format!(
                        "session {} {}\n",
                        d["session_id"].as_str().unwrap(),
                        got.s.unwrap()
                    )
                }
                (0, Some("MESSAGE_CREATE")) => {
                    let d: serde_json::Value =
                        serde_json::from_str(got.d.as_deref().unwrap()).unwrap();
                    format!("{} {}\n", got.s.unwrap(), d["id"].as_str().unwrap())
                }
                (0, _) => format!("seq {}\n", got.s.unwrap()),
                _ => continue,
            };
            file.write_all(line.as_bytes()).unwrap();
        }
    }
}

/// The journal's session (after its last `invalid`) and last sequence number, from whole lines.
fn last_state(journal: &Path) -> (Option<String>, u64) {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    let (mut session, mut seq) = (None, 0);
    for line in whole.lines() {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("session"), Some(id), Some(s)) => {
                (session, seq) = (Some(id.to_owned()), s.parse().unwrap())
            }
            (Some("invalid"), _, _) => (session, seq) = (None, 0),
            (Some("seq"), Some(s), _) | (Some(s), Some(_), None) => seq = s.parse().unwrap(),
            _ => {}
        }
    }
    (session, seq)
}

/// The message ids the journal holds, in order (only whole lines).
fn journal_messages(journal: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let (seq, id) = (parts.next()?, parts.next()?);
            (seq.parse::<u64>().is_ok() && parts.next().is_none()).then(|| id.to_owned())
        })
        .collect()
}

fn spawn_bot(journal: &Path, url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["bot_process", "--exact", "--ignored", "--nocapture"])
        .env("PROXY_TEST_BOT", journal)
        .env("PROXY_TEST_URL", url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// A bot process with a fresh journal, READY: its directory, journal and process.
async fn ready_bot(name: &str, url: &str) -> (PathBuf, PathBuf, Child) {
    let dir = std::env::temp_dir().join(format!("proxy-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal");
    let bot = spawn_bot(&journal, url);
    until("the bot is READY", || last_state(&journal).0.is_some()).await;
    (dir, journal, bot)
}

async fn setup(log_bytes: usize) -> (FakeGateway, Proxy, String) {
    let config = GatewayConfig {
        world: WorldConfig::uniform(5, 4, 10),
        ..GatewayConfig::default()
    };
    let gateway = FakeGateway::start_with(config, 0).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let token = Token::new(common::TOKEN);
    let mut config = ProxyConfig::new(token.clone(), 1, Intents::all(), url.clone());
    config.log.max_bytes = log_bytes;
    let shard = ShardConfig::new(token, Intents::all())
        .with_gateway_url(gateway.url())
        .with_raw_dispatches(true);
    let (group, events) = ShardGroup::spawn(ShardGroupConfig::new(shard, 1, 1)).unwrap();
    let proxy = Proxy::start(config, group, events, listener, ServeOptions::default()).unwrap();
    gateway.wait_for_readies(1).await;
    (gateway, proxy, url)
}

async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..600 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// Sends `count` messages on the upstream shard, one every `every`; their ids.
async fn load(gateway: &FakeGateway, from: u64, count: u64, every: Duration) -> Vec<String> {
    let world = gateway.world();
    let guild = world.guilds()[0].clone();
    let upstream = gateway.shard_connection(0).unwrap();
    let mut ids = Vec::new();
    for n in from..from + count {
        let message = world.message_create_json(&guild, n, 16);
        let d: serde_json::Value = serde_json::from_str(&message).unwrap();
        ids.push(d["id"].as_str().unwrap().to_owned());
        upstream.dispatch("MESSAGE_CREATE", message);
        tokio::time::sleep(every).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bot_resumes_and_gets_every_dispatch_once_in_order() {
    let (gateway, proxy, url) = setup(64 << 20).await;
    let (dir, journal, mut bot) = ready_bot("restart", &url).await;
    let mut sent = load(&gateway, 0, 150, Duration::from_millis(4)).await;
    bot.kill().unwrap();
    bot.wait().unwrap();
    let seen_before = journal_messages(&journal).len();
    sent.extend(load(&gateway, 150, 150, Duration::from_millis(4)).await);
    let mut bot = spawn_bot(&journal, &url);
    sent.extend(load(&gateway, 300, 150, Duration::from_millis(4)).await);
    until("the bot has every message", || {
        journal_messages(&journal).len() >= sent.len()
    })
    .await;
    bot.kill().unwrap();
    bot.wait().unwrap();
    let got = journal_messages(&journal);
    assert!(seen_before < sent.len(), "the bot was killed mid-load");
    assert_eq!(got, sent, "every dispatch once, in order, across the kill");
    let stats = gateway.stats();
    assert_eq!(stats.identifies, 1, "the upstream never identified again");
    assert!(stats.dispatches >= sent.len() as u64);
    proxy.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_away_longer_than_the_log_identifies_again_at_no_upstream_cost() {
    // A log of 16 KiB: the 300 messages sent while the bot is away do not fit.
    let (gateway, proxy, url) = setup(16 << 10).await;
    let (dir, journal, mut bot) = ready_bot("away", &url).await;
    let first = last_state(&journal).0;
    bot.kill().unwrap();
    bot.wait().unwrap();
    load(&gateway, 0, 300, Duration::from_millis(1)).await;
    let mut bot = spawn_bot(&journal, &url);
    until("a new session", || {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        text.contains("invalid") && last_state(&journal).0.is_some_and(|s| Some(s) != first)
    })
    .await;
    bot.kill().unwrap();
    bot.wait().unwrap();
    assert_eq!(
        gateway.stats().identifies,
        1,
        "the upstream never identified again"
    );
    proxy.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
