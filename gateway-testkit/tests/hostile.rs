//! Hostile clients cannot hurt the server: after each abuse a fresh client still gets READY, and
//! after thousands of connections the server holds what it held before (counts, never times).

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use common::{Client, close_frame};
use gateway_codec::Compression;
use gateway_model::{Intents, ShardId};
use gateway_testkit::{FakeGateway, GatewayConfig, StateCounts, WorldConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> GatewayConfig {
    GatewayConfig {
        identify_window: Duration::ZERO,
        world: WorldConfig::uniform(5, 2, 20),
        ..GatewayConfig::default()
    }
}

/// A fresh client still gets READY.
async fn still_serves(gw: &FakeGateway) {
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.close(1000).await;
}

/// Waits (bounded) until the server's counts satisfy `done`.
async fn settle(gw: &FakeGateway, done: impl Fn(&StateCounts) -> bool) -> StateCounts {
    for _ in 0..3000 {
        let counts = gw.state_counts();
        if done(&counts) {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never settled: {:?}", gw.state_counts());
}

/// Reads until the server closes the socket; returns the bytes it sent.
async fn read_to_end(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut out))
        .await
        .expect("the server never closed the socket");
    // A reset (the server dropped the socket with unread input) is a close too.
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    out
}

/// A websocket handshake by hand, for frames no client library would send.
async fn raw_websocket(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /?v=10&encoding=json HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    tcp
}

/// The close code in the server's frames (unmasked), if one came.
fn close_code(mut frames: &[u8]) -> Option<u16> {
    while frames.len() >= 2 {
        let opcode = frames[0] & 0x0f;
        let (len, start) = match frames[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([frames[2], frames[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(frames[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        let payload = frames.get(start..start + len)?;
        if opcode == 8 && len >= 2 {
            return Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
        frames = &frames[start + len..];
    }
    None
}

#[tokio::test]
async fn a_20_mib_frame_is_refused_from_its_header() {
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    let mut tcp = raw_websocket(gw.local_addr()).await;
    // A masked text frame announcing 20 MiB, followed by only 1 KiB of it.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(20u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[b'x' ^ 1; 1024]);
    tcp.write_all(&frame).await.unwrap();
    // The server answers before the other 20 MiB come: it never waited to buffer them.
    let sent = read_to_end(&mut tcp).await;
    assert_eq!(close_code(&sent), Some(4002));
    still_serves(&gw).await;
}

#[tokio::test]
async fn binary_frames_are_read_as_json_or_refused() {
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    let mut c = Client::connect(gw.url(), Compression::None).await;
    c.expect_op(10, None).await;
    c.ws.send(Message::binary(br#"{"op":1,"d":null}"#.to_vec()))
        .await
        .unwrap();
    c.expect_op(11, None).await;
    c.ws.send(Message::binary(vec![0xff, 0xfe, 0x00, 0x80]))
        .await
        .unwrap();
    assert_eq!(close_frame(&mut c).await.map(|f| f.0), Some(4002));
    still_serves(&gw).await;
}

#[tokio::test]
async fn raw_tcp_garbage_is_dropped() {
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for size in [1, 100, 5000, 40_000] {
        let mut tcp = TcpStream::connect(gw.local_addr()).await.unwrap();
        let garbage: Vec<u8> = (0..size).map(|_| rng.random()).collect();
        // The server may close while the garbage is still being written.
        drop(tcp.write_all(&garbage).await);
        read_to_end(&mut tcp).await;
    }
    still_serves(&gw).await;
    settle(&gw, |c| c.open_connections == 0).await;
}

#[tokio::test]
async fn a_handshake_that_never_ends_times_out() {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            handshake_timeout: Duration::from_secs(1),
            ..config()
        },
        0,
    )
    .await
    .unwrap();
    let mut silent = TcpStream::connect(gw.local_addr()).await.unwrap();
    // A REST request announcing a body it never sends.
    let mut slow_body = TcpStream::connect(gw.local_addr()).await.unwrap();
    slow_body
        .write_all(b"POST /testkit/shards/0/drop HTTP/1.1\r\nContent-Length: 65536\r\n\r\n")
        .await
        .unwrap();
    let mut partial = TcpStream::connect(gw.local_addr()).await.unwrap();
    partial
        .write_all(b"GET /?v=10 HTTP/1.1\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    assert!(read_to_end(&mut silent).await.is_empty());
    assert!(read_to_end(&mut partial).await.is_empty());
    assert!(read_to_end(&mut slow_body).await.is_empty());
    still_serves(&gw).await;
    settle(&gw, |c| c.open_connections == 0).await;
}

#[tokio::test]
async fn connections_over_the_cap_are_dropped_until_one_leaves() {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            max_connections: 3,
            ..config()
        },
        0,
    )
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.local_addr()).await.unwrap());
    }
    settle(&gw, |c| c.open_connections == 3).await;
    let mut over = TcpStream::connect(gw.local_addr()).await.unwrap();
    assert!(read_to_end(&mut over).await.is_empty());
    held.clear();
    settle(&gw, |c| c.open_connections == 0).await;
    still_serves(&gw).await;
}

/// A random text frame: noise, JSON of random shape, or a real command with fields broken.
fn random_frame(rng: &mut ChaCha8Rng) -> String {
    const PIECES: [&str; 16] = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"op\"",
        "\"d\"",
        "null",
        "2",
        "\"token\"",
        "1e308",
        "-1",
        "\"\\u0000\"",
        "true",
        "{\"op\":8,\"d\":{\"guild_id\":\"1\"}}",
    ];
    let valid = [
        r#"{"op":1,"d":null}"#,
        r#"{"op":2,"d":{"token":"testkit-token","properties":{},"intents":513}}"#,
        r#"{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}"#,
        r#"{"op":6,"d":{"token":"testkit-token","session_id":"x","seq":1}}"#,
        r#"{"op":8,"d":{"guild_id":"1","query":"","limit":0,"nonce":"n"}}"#,
    ];
    match rng.random_range(0..4) {
        0 => (0..rng.random_range(0..64))
            .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
            .collect(),
        1 => (0..rng.random_range(1..24))
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect(),
        2 => {
            let mut bytes = valid[rng.random_range(0..valid.len())].as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random_range(0x20u8..0x7f);
            }
            String::from_utf8(bytes).unwrap()
        }
        _ => format!(
            r#"{{"op":{},"d":{},"s":{},"t":null}}"#,
            rng.random_range(0..50),
            ["null", "{}", "[]", "7", "\"x\"", "{\"token\":[]}"][rng.random_range(0..6)],
            rng.random::<u32>()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_text_frames() {
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    let before = gw.state_counts();
    let mut rng = ChaCha8Rng::seed_from_u64(0x0bad_f00d);
    let mut sent = 0;
    let mut connections = 0;
    while sent < 10_000 {
        let mut c = Client::connect(gw.url(), Compression::None).await;
        connections += 1;
        c.expect_op(10, None).await;
        // A batch of random frames, then a heartbeat: an ACK means the connection lives on.
        loop {
            for _ in 0..20 {
                let frame = random_frame(&mut rng);
                if c.ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
                sent += 1;
            }
            if c.ws
                .send(Message::text(r#"{"op":1,"d":null}"#))
                .await
                .is_err()
            {
                break;
            }
            let alive = loop {
                let got = tokio::time::timeout(Duration::from_secs(60), c.recv());
                match got.await.expect("the server neither answered nor closed") {
                    Ok(got) if got.op == 11 => break true,
                    Ok(_) => continue,
                    Err(_) => break false,
                }
            };
            if !alive || sent >= 10_000 {
                break;
            }
        }
    }
    assert!(connections > 1);
    still_serves(&gw).await;
    let after = settle(&gw, |c| c.open_connections == 0).await;
    assert_eq!(after.task_failures, 0);
    assert_eq!(
        (after.controls, after.queued_faults),
        (before.controls, before.queued_faults)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            session_ttl: Duration::from_millis(100),
            history_limit: 1000,
            ..config()
        },
        0,
    )
    .await
    .unwrap();
    let before = gw.state_counts();
    for i in 0..10_000u32 {
        let mut c = Client::connect(gw.url(), Compression::None).await;
        c.expect_op(10, None).await;
        match i % 100 {
            // A session ended by close 1000, and one left to expire after its TTL.
            0 => {
                c.identify(Intents::GUILDS, ShardId::ONE).await;
                c.expect_op(0, Some("READY")).await;
                c.close(1000).await;
            }
            50 => {
                c.identify(Intents::GUILDS, ShardId::ONE).await;
                c.expect_op(0, Some("READY")).await;
            }
            n if n % 2 == 0 => c.close(1000).await,
            _ => {}
        }
        drop(c);
    }
    let after = settle(&gw, |c| c.open_connections == 0 && c.sessions == 0).await;
    assert_eq!(
        (
            after.controls,
            after.sessions,
            after.queued_faults,
            after.task_failures
        ),
        (before.controls, before.sessions, before.queued_faults, 0)
    );
    assert!(after.connection_history <= 1000, "{after:?}");
    assert!(after.recorded <= 1000, "{after:?}");
    assert_eq!(gw.stats().connections, 10_000);
    still_serves(&gw).await;
}
