//! The proxy between the fake gateway and clients, all over real sockets on 127.0.0.1 with
//! real compression: discovery, a synthetic READY with every guild, live dispatches, and a
//! RESUME that replays what the client missed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../gateway-testkit/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{Client, End};
use futures_util::StreamExt;
use gateway_codec::Compression;
use gateway_model::{Intents, ShardId, Token};
use gateway_proxy::{Proxy, ProxyConfig, ServeOptions};
use gateway_shard::{ShardConfig, ShardGroup, ShardGroupConfig};
use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};
use tokio::net::TcpListener;

const SHARDS: u32 = 2;

struct Setup {
    gateway: FakeGateway,
    proxy: Proxy,
    url: String,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(adjust: impl FnOnce(&mut ProxyConfig)) -> Setup {
    let gateway = FakeGateway::start_with(
        GatewayConfig {
            max_concurrency: 16,
            world: WorldConfig::uniform(3, 8, 20),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let token = Token::new(common::TOKEN);
    let mut config = ProxyConfig::new(token.clone(), SHARDS, Intents::all(), url.clone());
    adjust(&mut config);
    let shard = ShardConfig::new(token, Intents::all())
        .with_gateway_url(gateway.url())
        .with_raw_dispatches(true);
    let (group, events) = ShardGroup::spawn(ShardGroupConfig::new(shard, SHARDS, 16)).unwrap();
    let mut options = ServeOptions::default();
    options.rest = gateway.url().replacen("ws://", "http://", 1);
    let proxy = Proxy::start(config, group, events, listener, options).unwrap();
    gateway.wait_for_readies(u64::from(SHARDS)).await;
    Setup {
        gateway,
        proxy,
        url,
    }
}

fn guilds_of(gateway: &FakeGateway, shard: u32) -> Vec<gateway_testkit::Guild> {
    gateway
        .world()
        .guilds_of_shard(shard, SHARDS)
        .cloned()
        .collect()
}

/// `n` MESSAGE_CREATEs of ~2.5 KB from upstream shard 0, in `guild`.
fn send_load(gateway: &FakeGateway, guild: &gateway_testkit::Guild, n: u64) {
    let upstream = gateway.shard_connection(0).unwrap();
    let world = gateway.world();
    for i in 0..n {
        upstream.dispatch("MESSAGE_CREATE", world.message_create_json(guild, i, 2000));
    }
}

/// The upstream was never closed and identified once per shard: what misbehaving clients did
/// stayed with them.
fn assert_upstream_untouched(gateway: &FakeGateway) {
    let closes: Vec<_> = gateway
        .connections()
        .into_iter()
        .filter_map(|c| c.closed_with)
        .collect();
    assert!(
        closes.is_empty(),
        "the upstream was never closed: {closes:?}"
    );
    assert_eq!(gateway.stats().identifies, u64::from(SHARDS));
}

/// HELLO, IDENTIFY for shard 0, READY and a GUILD_CREATE per guild: the last sequence number
/// and the session id.
async fn start(client: &mut Client, guilds: usize) -> (u64, String) {
    let ready = client
        .start(Intents::all(), ShardId::new(0, SHARDS).unwrap())
        .await;
    let d: serde_json::Value = serde_json::from_str(ready.d.as_deref().unwrap()).unwrap();
    let session = d["session_id"].as_str().unwrap().to_owned();
    let listed = d["guilds"].as_array().unwrap().len();
    assert_eq!(listed, guilds, "READY lists every guild of the shard");
    let mut seq = ready.s.unwrap();
    // The cache may still be filling from the upstream: what is not in it comes live.
    for _ in 0..guilds {
        let g = client.expect_op(0, Some("GUILD_CREATE")).await;
        assert_eq!(g.s, Some(seq + 1));
        seq += 1;
    }
    (seq, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_answers_with_the_proxy_and_rest_passes_through() {
    let s = setup().await;
    let base = s.url.replacen("ws://", "http://", 1);
    let http = reqwest::Client::new();
    let bot = http
        .get(format!("{base}/api/v10/gateway/bot"))
        .send()
        .await
        .unwrap();
    let bot: serde_json::Value = serde_json::from_str(&bot.text().await.unwrap()).unwrap();
    assert_eq!(bot["url"], s.url);
    assert_eq!(bot["shards"], SHARDS);
    assert!(bot["session_start_limit"]["remaining"].as_u64().unwrap() >= u64::from(SHARDS));
    let me = http
        .get(format!("{base}/api/v10/users/@me"))
        .header("Authorization", format!("Bot {}", common::TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "passed through to the upstream's REST");
    let mut health = http.get(format!("{base}/healthz")).send().await.unwrap();
    for _ in 0..50 {
        if health.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        health = http.get(format!("{base}/healthz")).send().await.unwrap();
    }
    assert_eq!(health.status(), 200);
    s.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_and_gets_every_dispatch_it_missed_once_and_in_order() {
    let s = setup().await;
    let guilds = guilds_of(&s.gateway, 0);
    let mut client = Client::connect(&s.url, Compression::ZlibStream).await;
    let (mut seq, session) = start(&mut client, guilds.len()).await;
    let upstream = s.gateway.shard_connection(0).unwrap();
    let world = s.gateway.world();
    upstream.dispatch(
        "MESSAGE_CREATE",
        world.message_create_json(&guilds[0], 1, 10),
    );
    let live = client.expect_op(0, Some("MESSAGE_CREATE")).await;
    assert_eq!(live.s, Some(seq + 1));
    seq += 1;
    drop(client);
    let mut sent = Vec::new();
    for n in 2..=6 {
        let message = world.message_create_json(&guilds[0], n, 10);
        let id: serde_json::Value = serde_json::from_str(&message).unwrap();
        sent.push(id["id"].clone());
        upstream.dispatch("MESSAGE_CREATE", message);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = Client::connect(&s.url, Compression::ZstdStream).await;
    assert_eq!(client.expect().await.op, 10);
    client.resume(&session, seq).await;
    for id in sent {
        let got = client.expect().await;
        assert_eq!(
            (got.op, got.t.as_deref(), got.s),
            (0, Some("MESSAGE_CREATE"), Some(seq + 1))
        );
        let d: serde_json::Value = serde_json::from_str(got.d.as_deref().unwrap()).unwrap();
        assert_eq!(d["id"], id);
        seq += 1;
    }
    let resumed = client.expect().await;
    assert_eq!(
        (resumed.t.as_deref(), resumed.s),
        (Some("RESUMED"), Some(seq + 1))
    );
    assert_eq!(
        s.gateway.stats().identifies,
        u64::from(SHARDS),
        "no upstream IDENTIFY"
    );
    s.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_closed_alone_and_an_unknown_session_gets_op_9() {
    let s = setup().await;
    let mut good = Client::connect(&s.url, Compression::None).await;
    start(&mut good, guilds_of(&s.gateway, 0).len()).await;
    let mut bad = Client::connect(&s.url, Compression::None).await;
    assert_eq!(bad.expect().await.op, 10);
    bad.send(
        gateway_model::Identify::new(Token::new("wrong"), Intents::GUILDS)
            .with_shard(ShardId::new(0, SHARDS).unwrap()),
    )
    .await;
    assert!(matches!(bad.expect_end().await, End::Closed(Some(4004))));
    let mut lost = Client::connect(&s.url, Compression::None).await;
    assert_eq!(lost.expect().await.op, 10);
    lost.resume("no-such-session", 3).await;
    let nine = lost.expect().await;
    assert_eq!((nine.op, nine.d.as_deref()), (9, Some("false")));
    assert!(matches!(lost.expect_end().await, End::Closed(Some(4007))));
    good.heartbeat(Some(1)).await;
    assert_eq!(
        good.expect_op(11, None).await.op,
        11,
        "the other client goes on"
    );
    let stats = s.gateway.stats();
    assert_eq!(stats.identifies, u64::from(SHARDS));
    s.proxy.shutdown().await;
}

/// Hostile clients, each closed alone with Discord's code while a well-behaved client (which
/// gets every dispatch of a heavy load, in order) and the upstream go on: an oversize command, a
/// flood, garbage, and a client that never heartbeats. (A client that never reads has its own
/// test below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_closed_alone() {
    let s = setup_with(|c| {
        c.connection.heartbeat_interval = Duration::from_millis(1000);
        c.connection.heartbeat_timeout = Some(Duration::from_millis(3000));
    })
    .await;
    let guilds = guilds_of(&s.gateway, 0);
    const LOAD: u64 = 4000;
    let mut good = Client::connect(&s.url, Compression::ZlibStream).await;
    let (mut seq, _) = start(&mut good, guilds.len()).await;
    // The well-behaved client heartbeats and reads throughout, and must get every dispatch.
    let good = tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_millis(150));
        let mut got = 0;
        while got < LOAD {
            tokio::select! {
                _ = beat.tick() => good.heartbeat(None).await,
                p = good.recv() => {
                    let p = p.expect("the well-behaved client was closed");
                    if p.t.as_deref() == Some("MESSAGE_CREATE") {
                        assert_eq!(p.s, Some(seq + 1));
                        seq += 1;
                        got += 1;
                    }
                }
            }
        }
    });
    let closes_with = |mut c: Client| async move {
        match c.expect_end().await {
            End::Closed(code) => code,
            other => panic!("{other:?}"),
        }
    };
    // Oversize: one payload over 4096 bytes.
    let mut oversize = Client::connect(&s.url, Compression::None).await;
    start(&mut oversize, guilds.len()).await;
    let big = format!(
        r#"{{"op":3,"d":{{"since":null,"activities":[{{"name":"{}","type":0}}],"status":"online","afk":false}}}}"#,
        "x".repeat(5000)
    );
    oversize.send_text(&big).await;
    assert_eq!(closes_with(oversize).await, Some(4002));
    // A flood: more payloads than Discord's 120 per minute.
    let mut flood = Client::connect(&s.url, Compression::None).await;
    start(&mut flood, guilds.len()).await;
    for _ in 0..130 {
        flood.heartbeat(None).await;
    }
    assert_eq!(closes_with(flood).await, Some(4008));
    // Garbage: a binary frame that is not UTF-8.
    let mut garbage = Client::connect(&s.url, Compression::None).await;
    assert_eq!(garbage.expect().await.op, 10);
    garbage
        .ws
        .send(async_tungstenite::tungstenite::Message::binary(vec![
            0xff, 0xfe, 0x00,
        ]))
        .await
        .unwrap();
    assert_eq!(closes_with(garbage).await, Some(4002));
    // Silent: never heartbeats.
    let mut silent = Client::connect(&s.url, Compression::None).await;
    assert_eq!(silent.expect().await.op, 10);
    assert_eq!(closes_with(silent).await, Some(4009));
    send_load(&s.gateway, &guilds[0], LOAD);
    tokio::time::timeout(Duration::from_secs(120), good)
        .await
        .unwrap()
        .unwrap();
    assert_upstream_untouched(&s.gateway);
    s.proxy.shutdown().await;
}

/// A client that never reads (its receive buffer small, so the kernel holds little for it): once
/// its socket and its send window are full, it is closed after the stall timeout while the
/// well-behaved client and the upstream go on; then it resumes from the log, and what it got
/// before and after is every dispatch, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_alone_and_resumes_with_nothing_lost() {
    use async_tungstenite::tungstenite::Message;
    let s = setup_with(|c| {
        c.stall_timeout = Duration::from_millis(500);
        c.send_window = 128 * 1024;
    })
    .await;
    let guilds = guilds_of(&s.gateway, 0);
    const LOAD: u64 = 3000; // ~2.5 KB each, uncompressed: ~7 MB
    let addr: std::net::SocketAddr = s.url.trim_start_matches("ws://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (mut stuck, _) =
        async_tungstenite::tokio::client_async(format!("{}/?v=10&encoding=json", s.url), tcp)
            .await
            .unwrap();
    let identify = format!(
        r#"{{"op":2,"d":{{"token":"{}","properties":{{}},"intents":{},"shard":[0,{SHARDS}]}}}}"#,
        common::TOKEN,
        Intents::all().bits()
    );
    stuck.send(Message::text(identify)).await.unwrap();

    let mut good = Client::connect(&s.url, Compression::ZlibStream).await;
    let (mut seq, _) = start(&mut good, guilds.len()).await;
    let good = tokio::spawn(async move {
        let mut got = 0;
        while got < LOAD {
            let p = good
                .recv()
                .await
                .expect("the well-behaved client was closed");
            if p.t.as_deref() == Some("MESSAGE_CREATE") {
                assert_eq!(p.s, Some(seq + 1));
                seq += 1;
                got += 1;
            }
        }
    });
    send_load(&s.gateway, &guilds[0], LOAD);
    tokio::time::timeout(Duration::from_secs(120), good)
        .await
        .unwrap()
        .unwrap();

    // Now read what reached the stuck client before it was closed.
    let (mut session, mut last, mut before) = (String::new(), 0, 0);
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stuck.next())
            .await
            .expect("the client that never read was never closed");
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let p: serde_json::Value = serde_json::from_str(&text).unwrap();
        if p["op"] != 0 {
            continue;
        }
        let s = p["s"].as_u64().unwrap();
        assert_eq!(s, last + 1, "contiguous before the close");
        last = s;
        match p["t"].as_str() {
            Some("READY") => session = p["d"]["session_id"].as_str().unwrap().to_owned(),
            Some("MESSAGE_CREATE") => before += 1,
            _ => {}
        }
    }
    assert!(before < LOAD, "held back at its window: {before} of {LOAD}");

    let mut back = Client::connect(&s.url, Compression::None).await;
    assert_eq!(back.expect().await.op, 10);
    back.resume(&session, last).await;
    let mut after = 0;
    loop {
        let p = back.expect_op(0, None).await;
        assert_eq!(p.s, Some(last + 1), "the replay continues the stream");
        last += 1;
        match p.t.as_deref() {
            Some("MESSAGE_CREATE") => after += 1,
            Some("RESUMED") => break,
            _ => {}
        }
    }
    assert_eq!(
        before + after,
        LOAD,
        "every dispatch, once: {before} + {after}"
    );
    assert_upstream_untouched(&s.gateway);
    s.proxy.shutdown().await;
}

/// Two bot processes on one shard: each gets its own chunks under its own nonce, and an
/// all-members request from both within 30 s goes upstream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_each_get_their_own_chunks_from_one_upstream_request() {
    let s = setup().await;
    let guilds = guilds_of(&s.gateway, 0);
    let largest = guilds.iter().max_by_key(|g| g.member_count).unwrap();
    let mut a = Client::connect(&s.url, Compression::ZlibStream).await;
    let mut b = Client::connect(&s.url, Compression::None).await;
    start(&mut a, guilds.len()).await;
    start(&mut b, guilds.len()).await;
    let before = s.gateway.stats().member_requests;
    for (client, nonce) in [(&mut a, "from-a"), (&mut b, "from-b")] {
        let request = gateway_model::RequestGuildMembers::builder(largest.id)
            .query("", 0)
            .nonce(nonce)
            .build()
            .unwrap();
        client.send(request).await;
    }
    let mut chunked = 0;
    for (client, nonce) in [(&mut a, "from-a"), (&mut b, "from-b")] {
        loop {
            let p = client.expect_op(0, None).await;
            let d: serde_json::Value = match p.t.as_deref() {
                Some("GUILD_MEMBERS_CHUNK" | "RATE_LIMITED") => {
                    serde_json::from_str(p.d.as_deref().unwrap()).unwrap()
                }
                _ => continue,
            };
            if p.t.as_deref() == Some("RATE_LIMITED") {
                // The second ask reached the proxy after the answer to the first was complete:
                // it is limited bot-wide, under its own nonce, as Discord would limit it.
                assert_eq!(d["meta"]["nonce"], nonce);
                assert_eq!(nonce, "from-b", "the first asker is never limited");
                break;
            }
            assert_eq!(d["nonce"], nonce, "each client its own nonce");
            if d["chunk_index"].as_u64().unwrap() + 1 == d["chunk_count"].as_u64().unwrap() {
                chunked += 1;
                break;
            }
        }
    }
    assert!(chunked >= 1);
    assert_eq!(
        s.gateway.stats().member_requests - before,
        1,
        "one request upstream"
    );
    s.proxy.shutdown().await;
}
