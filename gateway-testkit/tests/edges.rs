//! Where clients meet the fake gateway at its edges, in real time over loopback: a client's close
//! frame is answered, a client that reads slowly is still read, and one that never reads is
//! dropped only past its bound, with the reason recorded.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use common::{Client, End};
use futures_util::StreamExt;
use gateway_codec::Compression;
use gateway_model::{Intents, ShardId};
use gateway_testkit::{DropReason, FakeGateway, GatewayConfig, WorldConfig};
use sonic_rs::JsonValueTrait;

fn config() -> GatewayConfig {
    GatewayConfig {
        identify_window: Duration::ZERO,
        heartbeat_interval: Duration::from_secs(1),
        world: WorldConfig::uniform(1, 1, 10),
        ..GatewayConfig::default()
    }
}

/// Sends a close frame with `code` and returns the code of the server's answer.
async fn close_and_read_answer(client: &mut Client, code: u16) -> Option<u16> {
    let frame = CloseFrame {
        code: code.into(),
        reason: "bye".into(),
    };
    client.ws.send(Message::Close(Some(frame))).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.ws.next())
            .await
            .expect("no answer to the close frame");
        match message {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("no close frame in answer: {e}"),
            None => panic!("no close frame in answer: the stream ended"),
        }
    }
}

#[tokio::test]
async fn a_client_close_is_answered_with_its_code_before_and_after_identify() {
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    for code in [1000u16, 4000, 4321] {
        // Before IDENTIFY: after HELLO only.
        let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
        assert_eq!(c.expect().await.op, 10);
        assert_eq!(close_and_read_answer(&mut c, code).await, Some(code));
        // After IDENTIFY and READY.
        let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
        c.start(Intents::GUILDS, ShardId::ONE).await;
        assert_eq!(close_and_read_answer(&mut c, code).await, Some(code));
    }
    let closed: Vec<_> = gw
        .connections()
        .iter()
        .map(|c| c.client_closed_with)
        .collect();
    assert_eq!(
        closed,
        [1000, 1000, 4000, 4000, 4321, 4321].map(|c| Some(Some(c)))
    );
}

/// Enough dispatches of about 1 KiB to fill loopback's socket buffers many times over.
fn backlog(n: usize) -> Vec<(&'static str, String)> {
    let content = "x".repeat(1000);
    (0..n)
        .map(|i| {
            (
                "MESSAGE_CREATE",
                format!(r#"{{"n":{i},"content":"{content}"}}"#),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_that_heartbeats_on_time_is_never_dropped() {
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    let mut c = Client::connect(gw.url(), Compression::None).await;
    let ready = c.start(Intents::GUILDS, ShardId::ONE).await;
    let guild = c.expect_op(0, Some("GUILD_CREATE")).await;
    let conn = gw.shard_connection(0).unwrap();
    let events = 30_000;
    assert_eq!(conn.dispatch_all(backlog(events)), events);
    // Five heartbeat intervals without reading a byte, heartbeating on time: the server's writes
    // wait on TCP, and its reading must not.
    for _ in 0..5 {
        c.heartbeat(ready.s).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let mut next = 0u64;
    let first_seq = guild.s.unwrap() + 1;
    while next < events as u64 {
        let got = tokio::time::timeout(Duration::from_secs(60), c.recv())
            .await
            .expect("the backlog stalled")
            .unwrap_or_else(|end| panic!("dropped after {next} dispatches: {end:?}"));
        if got.t.as_deref() == Some("MESSAGE_CREATE") {
            assert_eq!(got.s, Some(first_seq + next), "in order, once");
            next += 1;
            if next.is_multiple_of(2_000) {
                c.heartbeat(got.s).await;
            }
        }
    }
    let info = gw.connections();
    assert!(info[0].open, "{:?}", info[0]);
    assert_eq!(info[0].closed_with, None);
    assert_eq!(info[0].dropped, None);
    assert!(gw.stats().heartbeats >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_past_the_bound_with_the_reason() {
    let bound = 4 << 20;
    let gw = FakeGateway::start_with(
        GatewayConfig {
            max_unread_bytes: bound,
            ..config()
        },
        0,
    )
    .await
    .unwrap();
    let mut c = Client::connect(gw.url(), Compression::None).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    let guild = c.expect_op(0, Some("GUILD_CREATE")).await;
    let conn = gw.shard_connection(0).unwrap();
    // A little at a time: the server keeps what the socket would not take, up to the bound.
    let mut sent = 0;
    while gw.connections()[0].open {
        assert!(sent < 200_000, "never dropped");
        sent += conn.dispatch_all(backlog(500));
        c.heartbeat(None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = gw.connections();
    match &info[0].dropped {
        Some(DropReason::NotReading { pending_bytes }) => {
            assert!(*pending_bytes > bound, "{pending_bytes}");
        }
        other => panic!("dropped for {other:?}"),
    }
    assert_eq!(info[0].closed_with, None, "dropped, not closed");
    // Its session survives the drop: a resume gets the rest.
    let session_id = info[0].session_id.clone().unwrap();
    let mut again = Client::connect(gw.url(), Compression::None).await;
    assert_eq!(again.expect().await.op, 10);
    let last = guild.s.unwrap() + sent as u64;
    again.resume(&session_id, last - 10).await;
    let got = again.expect().await;
    assert_eq!(
        got.s,
        Some(last - 9),
        "the replay starts after the last seen"
    );
    // The old socket ends without a close frame.
    assert!(matches!(c.expect_end().await, End::Dropped));
}

/// Op 4 as Discord answers it: a join gets VOICE_STATE_UPDATE then VOICE_SERVER_UPDATE (a fake
/// endpoint under `.localhost` and a token), a leave gets VOICE_STATE_UPDATE alone.
#[tokio::test]
async fn a_voice_join_gets_its_state_and_server() {
    use gateway_model::{Command, Snowflake, UpdateVoiceState};
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    let guild = gw.world().guilds()[0].id;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS | Intents::GUILD_VOICE_STATES, ShardId::ONE)
        .await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    let join = UpdateVoiceState::join(guild, Snowflake::new(1234));
    c.send(Command::UpdateVoiceState(join)).await;
    let state = c.expect().await;
    assert_eq!(state.t.as_deref(), Some("VOICE_STATE_UPDATE"));
    let d = state.d_value();
    assert_eq!(d["channel_id"].as_str(), Some("1234"));
    assert_eq!(
        d["user_id"].as_str(),
        Some(gw.world().bot_id.to_string().as_str())
    );
    let server = c.expect().await;
    assert_eq!(server.t.as_deref(), Some("VOICE_SERVER_UPDATE"));
    assert_eq!(
        server.s,
        Some(state.s.unwrap() + 1),
        "in the session's sequence"
    );
    let d = server.d_value();
    assert_eq!(
        d["endpoint"].as_str(),
        Some(gateway_testkit::VOICE_ENDPOINT)
    );
    assert!(d["token"].as_str().is_some_and(|t| !t.is_empty()));
    let leave = UpdateVoiceState {
        channel_id: None,
        ..join
    };
    c.send(Command::UpdateVoiceState(leave)).await;
    let state = c.expect().await;
    assert_eq!(state.t.as_deref(), Some("VOICE_STATE_UPDATE"));
    assert!(state.d_value()["channel_id"].is_null());
    c.heartbeat(state.s).await;
    assert_eq!(c.expect().await.op, 11, "nothing else after a leave");
}

/// A RESUME of a session that another open connection holds: the session moves to the resuming
/// connection, and the one that held it is closed with 4000 (resumable; see
/// `GatewayCore::handle_frame` for why). A session's dispatches never go to two connections.
#[tokio::test]
async fn a_resume_of_a_held_session_closes_the_holder() {
    let gw = FakeGateway::start_with(config(), 0).await.unwrap();
    let mut first = Client::connect(gw.url(), Compression::ZlibStream).await;
    let ready = first.start(Intents::GUILDS, ShardId::ONE).await;
    let session_id = ready.d_value()["session_id"].as_str().unwrap().to_owned();
    let guild = first.expect_op(0, Some("GUILD_CREATE")).await;
    let mut second = Client::connect(gw.url(), Compression::ZlibStream).await;
    assert_eq!(second.expect().await.op, 10);
    second.resume(&session_id, guild.s.unwrap()).await;
    second.expect_op(0, Some("RESUMED")).await;
    assert!(matches!(first.expect_end().await, End::Closed(Some(4000))));
    let conn = gw.shard_connection(0).unwrap();
    assert_eq!(conn.id(), 2, "the session lives on the resuming connection");
    conn.dispatch("MESSAGE_CREATE", "{}");
    assert_eq!(
        second.expect_op(0, Some("MESSAGE_CREATE")).await.s,
        Some(guild.s.unwrap() + 2),
        "after RESUMED's own number"
    );
    let info = gw.connections();
    assert_eq!(info[0].closed_with, Some(4000));
    assert!(info[1].open);
}

/// `compress: true` in IDENTIFY (payload compression, not zlib-stream): each large payload comes
/// as a binary frame holding one complete zlib stream, short ones as text; with transport
/// compression in the URL it is off, as Discord documents.
#[tokio::test]
async fn compress_true_sends_large_payloads_as_standalone_zlib() {
    use std::io::Read;
    let gw = FakeGateway::start_with(
        GatewayConfig {
            world: WorldConfig::uniform(1, 1, 200),
            ..config()
        },
        0,
    )
    .await
    .unwrap();
    let identify = gateway_codec::encode(&gateway_model::Command::from(
        gateway_model::Identify::new(gateway_model::Token::new(common::TOKEN), Intents::GUILDS),
    ))
    .unwrap();
    assert!(identify.contains(r#""compress":false"#), "{identify}");
    let identify = identify.replace(r#""compress":false"#, r#""compress":true"#);
    let mut c = Client::connect(gw.url(), Compression::None).await;
    assert_eq!(
        c.expect().await.op,
        10,
        "HELLO comes before IDENTIFY, as text"
    );
    c.send_text(&identify).await;
    let (mut text, mut binary) = (Vec::new(), Vec::new());
    while binary.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(10), c.ws.next())
            .await
            .expect("no payload")
            .expect("the stream ended")
            .unwrap();
        match message {
            Message::Text(t) => text.push(t.to_string()),
            Message::Binary(b) => {
                // One complete stream per frame: a one-shot inflate reads it to its end.
                let mut json = String::new();
                flate2::read::ZlibDecoder::new(&b[..])
                    .read_to_string(&mut json)
                    .unwrap();
                binary.push(json);
            }
            Message::Close(frame) => panic!("closed: {frame:?}; text so far {text:?}"),
            _ => {}
        }
    }
    let names: Vec<String> = binary
        .iter()
        .map(|j| {
            sonic_rs::from_str::<sonic_rs::Value>(j).unwrap()["t"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(names.contains(&"GUILD_CREATE".to_owned()), "{names:?}");
    assert!(
        binary.iter().all(|j| j.len() >= 1024),
        "only large payloads are compressed"
    );
    assert!(text.iter().all(|t| t.len() < 1024));
    // Under transport compression, `compress: true` has no effect: the zlib-stream decodes.
    let mut z = Client::connect(gw.url(), Compression::ZlibStream).await;
    assert_eq!(z.expect().await.op, 10);
    z.send_text(&identify).await;
    z.expect_op(0, Some("READY")).await;
    z.expect_op(0, Some("GUILD_CREATE")).await;
}
