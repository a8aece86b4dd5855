//! The fake gateway's protocol rules, driven by a client made of gateway-codec and
//! async-tungstenite alone, over loopback.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, End, TOKEN};
use gateway_codec::{Compression, Limits};
use gateway_model::{
    Command, Heartbeat, Identify, Intents, RequestGuildMembers, ShardId, Snowflake, Token,
};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, Received, Trigger, WorldConfig};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

/// The defaults, with no identify window: tests that identify again at once are not testing it.
fn config(world: WorldConfig) -> GatewayConfig {
    GatewayConfig {
        identify_window: Duration::ZERO,
        world,
        ..GatewayConfig::default()
    }
}

async fn gateway(world: WorldConfig) -> FakeGateway {
    FakeGateway::start_with(config(world), 0).await.unwrap()
}

const ALL: [Compression; 3] = [
    Compression::None,
    Compression::ZlibStream,
    Compression::ZstdStream,
];

#[tokio::test]
async fn accepts_every_query_variant() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    let base = gw.url();
    for (query, compression) in [
        (
            "/?v=10&encoding=json&compress=zlib-stream",
            Compression::ZlibStream,
        ),
        (
            "?v=10&encoding=json&compress=zlib-stream",
            Compression::ZlibStream,
        ),
        (
            "/?v=10&encoding=json&compress=zstd-stream",
            Compression::ZstdStream,
        ),
        ("?compress=zstd-stream&v=10", Compression::ZstdStream),
        ("/?v=10&encoding=json", Compression::None),
        ("/?v=10", Compression::None),
        ("?v=10", Compression::None),
    ] {
        let mut c =
            Client::connect_url(&format!("{base}{query}"), compression, Limits::default()).await;
        let hello = c.expect().await;
        assert_eq!(hello.op, 10, "{query}");
        assert_eq!(hello.d_value()["heartbeat_interval"].as_u64(), Some(41_250));
    }
}

#[tokio::test]
async fn rejects_wrong_version_or_encoding() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    for (query, code) in [
        ("/?v=9&encoding=json", 4012),
        ("/?encoding=json", 4012),
        ("/?v=10&encoding=etf", 4002),
    ] {
        let mut c = Client::connect_url(
            &format!("{}{query}", gw.url()),
            Compression::None,
            Limits::default(),
        )
        .await;
        assert!(
            matches!(c.expect_end().await, End::Closed(Some(c)) if c == code),
            "{query}"
        );
    }
}

#[tokio::test]
async fn compressed_connections_send_every_payload_as_binary() {
    let gw = gateway(WorldConfig::uniform(1, 2, 10)).await;
    for compression in ALL {
        let mut c = Client::connect(gw.url(), compression).await;
        c.start(Intents::GUILDS, ShardId::ONE).await;
        c.heartbeat(Some(1)).await;
        assert_eq!(c.expect_op(11, None).await.op, 11);
        if compression == Compression::None {
            assert_eq!(c.binary_messages, 0);
        } else {
            assert_eq!(
                c.text_messages, 0,
                "{compression}: HELLO and ACKs are binary too"
            );
        }
    }
}

#[tokio::test]
async fn identify_gets_ready_then_the_shards_guilds_in_sequence() {
    let gw = gateway(WorldConfig::uniform(5, 12, 20)).await;
    let shard = ShardId::new(1, 3).unwrap();
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    let ready = c
        .start(Intents::GUILDS | Intents::GUILD_MEMBERS, shard)
        .await;
    assert_eq!(ready.s, Some(1));
    let d = ready.d_value();
    assert_eq!(d["resume_gateway_url"].as_str(), Some(gw.url()));
    assert_eq!(d["session_id"].as_str().unwrap().len(), 32);
    assert_eq!(d["shard"][0].as_u64(), Some(1));
    for key in ["id", "username", "discriminator", "avatar", "mfa_enabled"] {
        assert!(d["user"].get(key).is_some(), "user.{key}");
    }
    assert!(d["application"]["flags"].as_u64().is_some());
    let expected: Vec<Snowflake> = gw.world().guilds_of_shard(1, 3).map(|g| g.id).collect();
    let ready_guilds: Vec<Snowflake> = d["guilds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            assert_eq!(g["unavailable"].as_bool(), Some(true));
            g["id"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(ready_guilds, expected);
    for (i, id) in expected.iter().enumerate() {
        let g = c.expect().await;
        assert_eq!(
            (g.t.as_deref(), g.s),
            (Some("GUILD_CREATE"), Some(i as u64 + 2))
        );
        let typed = gateway_model::GuildCreate::from_json(g.d.as_deref().unwrap()).unwrap();
        assert_eq!(typed.id, *id);
        assert_eq!(id.shard_index(3), 1);
    }
    assert_eq!(gw.stats().identifies, 1);
    assert_eq!(gw.stats().readies, 1);
}

#[tokio::test]
async fn heartbeat_before_identify_is_allowed_anything_else_closes_4003() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.expect().await;
    c.heartbeat(None).await;
    assert_eq!(c.expect().await.op, 11);
    c.send(gateway_model::UpdatePresence::default()).await;
    assert!(matches!(c.expect_end().await, End::Closed(Some(4003))));
}

async fn identify_closes_with(gw: &FakeGateway, identify: &str) -> Option<u16> {
    let mut c = Client::connect(gw.url(), Compression::None).await;
    c.expect().await;
    c.send_text(identify).await;
    match c.expect_end().await {
        End::Closed(code) => code,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn identify_checks_token_intents_and_shard() {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            allowed_intents: Intents::GUILD_MEMBERS,
            max_guilds_per_shard: 7,
            ..config(WorldConfig::uniform(1, 8, 10))
        },
        0,
    )
    .await
    .unwrap();
    let props = r#""properties":{"os":"linux","browser":"t","device":"t"}"#;
    let id =
        |token: &str, rest: &str| format!(r#"{{"op":2,"d":{{"token":"{token}",{props}{rest}}}}}"#);
    assert_eq!(
        identify_closes_with(&gw, &id("wrong", r#","intents":1,"shard":[0,4]"#)).await,
        Some(4004)
    );
    assert_eq!(
        identify_closes_with(&gw, &id(TOKEN, r#","shard":[0,4]"#)).await,
        Some(4013)
    );
    assert_eq!(
        identify_closes_with(&gw, &id(TOKEN, r#","intents":131072,"shard":[0,4]"#)).await,
        Some(4013)
    );
    assert_eq!(
        identify_closes_with(&gw, &id(TOKEN, r#","intents":256,"shard":[0,4]"#)).await,
        Some(4014)
    );
    assert_eq!(
        identify_closes_with(&gw, &id(TOKEN, r#","intents":1,"shard":[4,4]"#)).await,
        Some(4010)
    );
    assert_eq!(
        identify_closes_with(&gw, &id(TOKEN, r#","intents":1,"shard":[0,1]"#)).await,
        Some(4011)
    );
    assert_eq!(
        identify_closes_with(&gw, &id(TOKEN, r#","intents":1"#)).await,
        Some(4011)
    );
    assert_eq!(
        identify_closes_with(
            &gw,
            &id(TOKEN, r#","intents":1,"shard":[0,4],"large_threshold":10"#)
        )
        .await,
        Some(4002)
    );
    let invalid = gw
        .recorded()
        .iter()
        .filter(|r| matches!(r.received, Received::Invalid { .. }))
        .count();
    assert_eq!(invalid, 8);
}

#[tokio::test]
async fn second_identify_closes_4005() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.identify(Intents::GUILDS, ShardId::ONE).await;
    assert!(matches!(c.expect_end().await, End::Closed(Some(4005))));
}

#[tokio::test]
async fn bad_payloads_close_with_their_codes() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    for (text, code) in [
        ("{not json".to_owned(), 4002),
        (format!(r#"{{"op":1,"d":"{}"}}"#, "x".repeat(4100)), 4002),
        (r#"{"op":5,"d":{}}"#.to_owned(), 4001),
        (r#"{"op":"one"}"#.to_owned(), 4002),
    ] {
        let mut c = Client::connect(gw.url(), Compression::None).await;
        c.expect().await;
        c.send_text(&text).await;
        assert!(
            matches!(c.expect_end().await, End::Closed(Some(c)) if c == code),
            "{}",
            &text[..20.min(text.len())]
        );
    }
}

#[tokio::test]
async fn more_than_120_payloads_a_minute_closes_4008() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    let mut c = Client::connect(gw.url(), Compression::None).await;
    c.expect().await;
    for _ in 0..121 {
        c.heartbeat(None).await;
    }
    let mut acks = 0;
    let end = loop {
        match c.recv().await {
            Ok(g) if g.op == 11 => acks += 1,
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(acks, 120);
    assert!(matches!(end, End::Closed(Some(4008))));
}

#[tokio::test]
async fn resume_replays_what_the_session_missed_then_resumed() {
    let gw = gateway(WorldConfig::uniform(2, 4, 10)).await;
    let mut c = Client::connect(gw.url(), Compression::ZstdStream).await;
    let ready = c.start(Intents::GUILDS, ShardId::ONE).await;
    let session = ready.d_value()["session_id"].as_str().unwrap().to_owned();
    // Read one GUILD_CREATE, then drop the connection without a close frame.
    assert_eq!(c.expect().await.s, Some(2));
    gw.shard_connection(0).unwrap().inject(Fault::Drop);
    assert!(matches!(c.expect_end().await, End::Dropped));

    let mut c = Client::connect(gw.url(), Compression::ZstdStream).await;
    c.expect().await;
    c.resume(&session, 2).await;
    let mut seqs = Vec::new();
    loop {
        let g = c.expect().await;
        seqs.push(g.s.unwrap());
        if g.t.as_deref() == Some("RESUMED") {
            break;
        }
        assert_eq!(g.t.as_deref(), Some("GUILD_CREATE"));
    }
    assert_eq!(seqs, vec![3, 4, 5, 6]);
    assert_eq!((gw.stats().resumes, gw.stats().resumed), (1, 1));
}

#[tokio::test]
async fn resume_of_unknown_or_ended_session_is_invalid_and_bad_seq_closes_4007() {
    let gw = gateway(WorldConfig::uniform(2, 1, 10)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.expect().await;
    c.resume("nope", 1).await;
    let invalid = c.expect().await;
    assert_eq!((invalid.op, invalid.d.as_deref()), (9, Some("false")));

    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    let ready = c.start(Intents::GUILDS, ShardId::ONE).await;
    let session = ready.d_value()["session_id"].as_str().unwrap().to_owned();
    c.close(4000).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.expect().await;
    c.resume(&session, 99).await;
    assert!(matches!(c.expect_end().await, End::Closed(Some(4007))));

    // Closing with 1000 ends the session.
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    let ready = c.start(Intents::GUILDS, ShardId::ONE).await;
    let session = ready.d_value()["session_id"].as_str().unwrap().to_owned();
    c.close(1000).await;
    gw.wait_for_closed(3).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.expect().await;
    c.resume(&session, 1).await;
    assert_eq!(c.expect().await.op, 9);
}

#[tokio::test]
async fn faults_reconnect_invalid_session_heartbeat_request_close() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    let conn = gw.shard_connection(0).unwrap();
    conn.inject(Fault::Reconnect);
    assert_eq!(c.expect().await.op, 7);
    conn.inject(Fault::RequestHeartbeat);
    assert_eq!(c.expect().await.op, 1);
    conn.inject(Fault::InvalidSession { resumable: true });
    assert_eq!(c.expect().await.d.as_deref(), Some("true"));
    conn.inject(Fault::Close(4321));
    assert!(matches!(c.expect_end().await, End::Closed(Some(4321))));
    gw.wait_for_closed(conn.id()).await;
    assert_eq!(gw.connections()[0].closed_with, Some(4321));
}

#[tokio::test]
async fn zombie_stops_acks() {
    let gw = gateway(WorldConfig::uniform(1, 1, 10)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    gw.shard_connection(0).unwrap().inject(Fault::Zombie);
    c.heartbeat(Some(2)).await;
    gw.wait_for_heartbeats(1).await;
    // The connection is still there, but the heartbeat got no ACK: a dispatch sent after it is
    // the next payload.
    gw.shard_connection(0)
        .unwrap()
        .dispatch("TYPING_START", "{}");
    assert_eq!(c.expect().await.t.as_deref(), Some("TYPING_START"));
}

#[tokio::test]
async fn stall_ready_and_faults_at_a_sequence() {
    let gw = gateway(WorldConfig::uniform(3, 6, 10)).await;
    gw.on_next_connection(Fault::StallReady);
    let mut stalled = Client::connect(gw.url(), Compression::ZlibStream).await;
    stalled.expect().await;
    stalled.identify(Intents::GUILDS, ShardId::ONE).await;
    gw.wait_for(|v| v.stats().identifies == 1).await;
    assert_eq!(gw.stats().readies, 0);

    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.expect().await;
    // Connection 2: the fault fires right after dispatch 4 was sent.
    gw.connection(2)
        .unwrap()
        .inject_on(Trigger::AfterSeq(4), Fault::Close(4009));
    c.identify(Intents::GUILDS, ShardId::ONE).await;
    let mut last = 0;
    let end = loop {
        match c.recv().await {
            Ok(g) => last = g.s.unwrap_or(last),
            Err(e) => break e,
        }
    };
    assert_eq!(last, 4);
    assert!(matches!(end, End::Closed(Some(4009))));
}

#[tokio::test(start_paused = true)]
async fn faults_after_a_duration_fire_on_the_tokio_clock() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    let injected = tokio::time::Instant::now();
    gw.shard_connection(0).unwrap().inject_on(
        Trigger::After(Duration::from_secs(30)),
        Fault::RequestHeartbeat,
    );
    assert_eq!(c.expect().await.op, 1);
    assert_eq!(injected.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn identify_buckets_allow_one_per_window() {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            max_concurrency: 2,
            world: WorldConfig::uniform(1, 4, 5),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let start = |n| {
        let url = gw.url().to_owned();
        async move {
            let mut c = Client::connect(&url, Compression::None).await;
            c.expect().await;
            c.identify(Intents::GUILDS, ShardId::new(n, 4).unwrap())
                .await;
            (c.expect().await, c)
        }
    };
    let (a, _a) = start(0).await; // bucket 0
    let (b, _b) = start(1).await; // bucket 1
    let (c, _c) = start(2).await; // bucket 0 again, within 5 s
    assert_eq!((a.op, b.op), (0, 0));
    assert_eq!((c.op, c.d.as_deref()), (9, Some("false")));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (d, _d) = start(2).await;
    assert_eq!(d.t.as_deref(), Some("READY"));
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_4009_after_one_and_a_half_intervals() {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            heartbeat_interval: Duration::from_secs(10),
            world: WorldConfig::uniform(1, 1, 5),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    let started = tokio::time::Instant::now();
    c.expect().await;
    assert!(matches!(c.expect_end().await, End::Closed(Some(4009))));
    assert_eq!(started.elapsed().as_secs(), 15);
}

#[tokio::test(start_paused = true)]
async fn stall_hello_and_reconnect_before_hello() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    gw.on_next_connection(Fault::StallHello);
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), c.recv())
            .await
            .is_err()
    );

    gw.on_next_connection(Fault::ReconnectBeforeHello);
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    assert_eq!(c.expect().await.op, 7);
    assert_eq!(c.expect().await.op, 10);
}

#[tokio::test]
async fn split_messages_even_through_the_zlib_suffix() {
    use gateway_testkit::SplitAt;
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let mut c = Client::connect(gw.url(), compression).await;
        c.start(Intents::GUILDS, ShardId::ONE).await;
        c.expect_op(0, Some("GUILD_CREATE")).await;
        let conn = gw.shard_connection(0).unwrap();
        let before = c.binary_messages;
        conn.inject(Fault::SplitNext(vec![
            SplitAt::FromStart(3),
            SplitAt::FromEnd(2),
        ]));
        conn.dispatch("TYPING_START", r#"{"channel_id":"1"}"#);
        let g = c.expect().await;
        assert_eq!(g.t.as_deref(), Some("TYPING_START"));
        assert_eq!(c.binary_messages - before, 3, "{compression}");
        conn.inject(Fault::Close(4000));
        c.expect_end().await;
    }
}

#[tokio::test]
async fn corrupt_and_oversize_messages_reach_the_client_as_decode_errors() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let mut c = Client::connect(gw.url(), compression).await;
        c.start(Intents::GUILDS, ShardId::ONE).await;
        c.expect_op(0, Some("GUILD_CREATE")).await;
        let conn = gw.shard_connection(0).unwrap();
        conn.inject(Fault::CorruptNext);
        c.heartbeat(Some(2)).await;
        assert!(
            matches!(c.recv().await, Err(End::Decode(e)) if e.is_fatal()),
            "{compression}"
        );
        conn.inject(Fault::Close(4000));

        let limits = Limits {
            max_message_size: 64 * 1024,
            ..Limits::default()
        };
        let mut c = Client::connect_with(gw.url(), compression, limits).await;
        c.start(Intents::GUILDS, ShardId::ONE).await;
        c.expect_op(0, Some("GUILD_CREATE")).await;
        gw.shard_connection(0)
            .unwrap()
            .inject(Fault::Oversize(100 * 1024));
        assert!(
            matches!(
                c.recv().await,
                Err(End::Decode(
                    gateway_codec::DecodeError::MessageTooLarge { .. }
                ))
            ),
            "{compression}"
        );
    }
}

#[tokio::test]
async fn records_every_command_in_order() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.heartbeat(Some(1)).await;
    c.send(gateway_model::UpdateVoiceState::leave(Snowflake::new(1)))
        .await;
    let r = gw
        .wait_for_recorded(|r| matches!(r.command(), Some(Command::UpdateVoiceState(_))))
        .await;
    assert_eq!(r.connection, 1);
    let commands: Vec<_> = gw
        .recorded()
        .iter()
        .filter_map(|r| r.command().map(|c| c.op().value()))
        .collect();
    assert_eq!(commands, vec![2, 1, 4]);
    let Some(Command::Identify(identify)) = gw.recorded()[0].command().cloned() else {
        panic!()
    };
    assert_eq!(identify.token.expose_secret(), TOKEN);
    assert_eq!(
        format!("{:?}", gw.recorded()).matches(TOKEN).count(),
        0,
        "tokens stay redacted"
    );
}

#[tokio::test]
async fn same_seed_same_bytes() {
    let mut payloads = Vec::new();
    for _ in 0..2 {
        let gw = gateway(WorldConfig::mixed(42, 6, 100)).await;
        let mut c = Client::connect(gw.url(), Compression::None).await;
        c.start(Intents::all(), ShardId::ONE).await;
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(c.expect().await.d.unwrap());
        }
        payloads.push(got);
    }
    assert_eq!(payloads[0], payloads[1]);
}

#[tokio::test]
async fn unavailable_guilds_arrive_when_made_available() {
    let gw = gateway(WorldConfig {
        unavailable: 1,
        ..WorldConfig::uniform(1, 3, 5)
    })
    .await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    let ready = c.start(Intents::GUILDS, ShardId::ONE).await;
    assert_eq!(ready.d_value()["guilds"].as_array().unwrap().len(), 3);
    c.expect_op(0, Some("GUILD_CREATE")).await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    let late = gw.world().guilds()[2].id;
    gw.make_available(late);
    let g = c.expect().await;
    assert_eq!(g.d_value()["id"].as_str(), Some(late.to_string().as_str()));
}

#[tokio::test]
async fn identify_with_a_presence_and_a_heartbeat_command_round_trip() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.expect().await;
    let presence = gateway_model::UpdatePresence::status(gateway_model::Status::Idle);
    c.send(Identify::new(Token::new(TOKEN), Intents::GUILDS).with_presence(presence.clone()))
        .await;
    c.expect_op(0, Some("READY")).await;
    c.send(Heartbeat(Some(1))).await;
    let Some(Command::Identify(identify)) = gw.recorded()[0].command().cloned() else {
        panic!()
    };
    assert_eq!(identify.presence, Some(presence));
}

fn request(guild: Snowflake) -> gateway_model::RequestGuildMembersBuilder {
    RequestGuildMembers::builder(guild)
}

#[tokio::test]
async fn member_requests_answer_in_chunks() {
    let gw = gateway(WorldConfig::uniform(9, 1, 2300)).await;
    let guild = gw.world().guilds()[0].id;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(
        Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES,
        ShardId::ONE,
    )
    .await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    c.send(
        request(guild)
            .query("", 0)
            .presences(true)
            .nonce("all-1")
            .build()
            .unwrap(),
    )
    .await;
    let mut total = 0;
    for i in 0..3 {
        let g = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await;
        let d = g.d_value();
        assert_eq!(
            (d["chunk_index"].as_u64(), d["chunk_count"].as_u64()),
            (Some(i), Some(3))
        );
        assert_eq!(d["nonce"].as_str(), Some("all-1"));
        assert!(d["presences"].is_array());
        let members = d["members"].as_array().unwrap();
        assert!(members.len() <= 1000);
        let m = &members[0];
        for key in ["user", "roles", "joined_at", "deaf", "mute", "flags"] {
            assert!(m.get(key).is_some(), "{key}");
        }
        total += members.len();
    }
    assert_eq!(total, 2300);

    // A second full request within 30 s: RATE_LIMITED.
    c.send(request(guild).query("", 0).nonce("all-2").build().unwrap())
        .await;
    let limited = c.expect_op(0, Some("RATE_LIMITED")).await;
    let d = limited.d_value();
    assert_eq!(d["opcode"].as_u64(), Some(8));
    assert!(d["retry_after"].as_f64().unwrap() > 0.0);
    assert_eq!(d["meta"]["nonce"].as_str(), Some("all-2"));
    assert_eq!(
        d["meta"]["guild_id"].as_str(),
        Some(guild.to_string().as_str())
    );

    // Prefix query and limit; user ids with not_found.
    c.send(request(guild).query("as", 3).build().unwrap()).await;
    let d = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await.d_value();
    let members = d["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| m["user"]["username"].as_str().unwrap().starts_with("as"))
    );
    let known = gw.world().member(&gw.world().guilds()[0], 10).id;
    c.send(
        request(guild)
            .user_ids([known, Snowflake::new(5)])
            .build()
            .unwrap(),
    )
    .await;
    let d = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await.d_value();
    assert_eq!(d["members"].as_array().unwrap().len(), 1);
    assert_eq!(d["not_found"][0].as_str(), Some("5"));
}

#[tokio::test]
async fn member_request_intent_rules() {
    let gw = gateway(WorldConfig::uniform(9, 1, 50)).await;
    let guild = gw.world().guilds()[0].id;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    // The full list without GUILD_MEMBERS gets no answer (the ACK of the next heartbeat comes first).
    c.send(request(guild).query("", 0).build().unwrap()).await;
    c.heartbeat(Some(2)).await;
    assert_eq!(c.expect().await.op, 11);
    // Presences without GUILD_PRESENCES are left out.
    c.send(
        request(guild)
            .query("a", 10)
            .presences(true)
            .build()
            .unwrap(),
    )
    .await;
    let d = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await.d_value();
    assert!(d.get("presences").is_none());
}

#[tokio::test(start_paused = true)]
async fn chunk_faults_drop_delay_reverse_duplicate() {
    use gateway_testkit::ChunkFault;
    let gw = FakeGateway::start_with(
        GatewayConfig {
            full_member_request_interval: Duration::ZERO,
            ..config(WorldConfig::uniform(9, 1, 3000))
        },
        0,
    )
    .await
    .unwrap();
    let guild = gw.world().guilds()[0].id;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS | Intents::GUILD_MEMBERS, ShardId::ONE)
        .await;
    c.expect_op(0, Some("GUILD_CREATE")).await;
    let conn = gw.shard_connection(0).unwrap();

    async fn indices(c: &mut Client, n: usize) -> Vec<u64> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await.d_value()["chunk_index"]
                    .as_u64()
                    .unwrap(),
            );
        }
        v
    }
    let full = || request(guild).query("", 0).build().unwrap();

    conn.inject(Fault::Chunks(ChunkFault::Reverse));
    c.send(full()).await;
    assert_eq!(indices(&mut c, 3).await, vec![2, 1, 0]);

    conn.inject(Fault::Chunks(ChunkFault::Duplicate(vec![1])));
    c.send(full()).await;
    assert_eq!(indices(&mut c, 4).await, vec![0, 1, 2, 1]);

    conn.inject(Fault::Chunks(ChunkFault::Drop(vec![0, 2])));
    c.send(full()).await;
    c.heartbeat(None).await;
    assert_eq!(indices(&mut c, 1).await, vec![1]);
    assert_eq!(c.expect().await.op, 11);

    conn.inject(Fault::Chunks(ChunkFault::Delay(
        vec![0],
        Duration::from_secs(10),
    )));
    let sent = tokio::time::Instant::now();
    c.send(full()).await;
    assert_eq!(indices(&mut c, 3).await, vec![1, 2, 0]);
    assert!(sent.elapsed() >= Duration::from_secs(10));

    conn.inject(Fault::Chunks(ChunkFault::DropAll));
    c.send(full()).await;
    c.heartbeat(None).await;
    assert_eq!(c.expect().await.op, 11);
}

#[tokio::test]
async fn soundboard_and_channel_info_are_answered() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let guild = gw.world().guilds()[0].id;
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    c.send(gateway_model::RequestSoundboardSounds {
        guild_ids: vec![guild],
    })
    .await;
    let g = c.expect_op(0, Some("SOUNDBOARD_SOUNDS")).await;
    assert!(g.d_value()["soundboard_sounds"].is_array());
    c.send(gateway_model::RequestChannelInfo {
        guild_id: guild,
        fields: vec![gateway_model::ChannelInfoField::Status],
    })
    .await;
    assert!(c.expect_op(0, Some("CHANNEL_INFO")).await.d_value()["channels"].is_array());
}
