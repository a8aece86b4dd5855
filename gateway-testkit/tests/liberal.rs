//! The fake gateway accepts what real clients send, as Discord does, and refuses only what
//! Discord refuses, with Discord's code and words. Payloads here are copied from what hikari 2.7,
//! twilight-gateway 0.18 and @discordjs/ws 2 send (read from their sources).

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, TOKEN, close_frame};
use gateway_codec::Compression;
use gateway_model::Command;
use gateway_testkit::{FakeGateway, GatewayConfig, Received, WorldConfig};

async fn gateway() -> FakeGateway {
    let config = GatewayConfig {
        identify_window: Duration::ZERO,
        world: WorldConfig::uniform(3, 2, 20),
        ..GatewayConfig::default()
    };
    FakeGateway::start_with(config, 0).await.unwrap()
}

/// Sends `identify` after HELLO and returns the next payload's event name (READY if accepted).
async fn identify_gets_ready(gw: &FakeGateway, identify: &str) -> bool {
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.expect_op(10, None).await;
    c.send_text(identify).await;
    matches!(c.recv().await, Ok(got) if got.t.as_deref() == Some("READY"))
}

#[tokio::test]
async fn identifies_real_clients_send_get_ready() {
    let gw = gateway().await;
    let hikari = format!(
        r#"{{"op":2,"d":{{"token":"{TOKEN}","compress":false,"large_threshold":250,"properties":{{"os":"Linux 6.1","browser":"hikari (2.7.0; ...)","device":"hikari (2.7.0; ...)"}},"shard":[0,1],"intents":53608447,"presence":{{"since":null,"afk":false,"game":null,"status":"online"}}}}}}"#
    );
    let twilight = format!(
        r#"{{"op":2,"d":{{"token":"Bot {TOKEN}","intents":513,"properties":{{"browser":"twilight.rs","device":"twilight.rs","os":"linux"}},"shard":[0,1],"large_threshold":50,"compress":false}}}}"#
    );
    let discordjs = format!(
        r#"{{"op":2,"d":{{"token":"{TOKEN}","properties":{{"os":"linux","browser":"@discordjs/ws 2.0.4","device":"@discordjs/ws 2.0.4"}},"intents":33281,"compress":false,"shard":[0,1],"large_threshold":50}}}}"#
    );
    let legacy = format!(
        r#"{{"op":2,"d":{{"token":"{TOKEN}","properties":{{"$os":"linux","$browser":"old","$device":"old"}},"intents":1,"capabilities":16381,"client_state":{{"guild_versions":{{}}}},"presence":{{"since":{{"x":1}},"activities":[{{"name":"x","type":0,"created_at":1}}],"status":"dnd","afk":true,"broadcast":null}},"unknown":[1,2,3]}}}}"#
    );
    for (name, identify) in [
        ("hikari", hikari),
        ("twilight", twilight),
        ("discord.js", discordjs),
        ("legacy", legacy),
    ] {
        assert!(identify_gets_ready(&gw, &identify).await, "{name}");
    }
    let recorded = gw.recorded();
    let identifies = recorded
        .iter()
        .filter(|r| matches!(r.command(), Some(Command::Identify(_))))
        .count();
    assert_eq!(identifies, 4, "every identify recorded as a command");
}

#[tokio::test]
async fn heartbeats_presences_and_member_requests_in_their_variants() {
    let gw = gateway().await;
    let guild = gw.world().guilds()[0].id;
    let mut c = Client::connect(gw.url(), Compression::None).await;
    c.start(gateway_model::Intents::all(), gateway_model::ShardId::ONE)
        .await;
    for text in [
        r#"{"op":1,"d":null}"#.to_owned(),
        r#"{"op":1,"d":3,"s":null,"t":null}"#.to_owned(),
        r#"{"op":3,"d":{"since":null,"afk":false,"game":{"name":"chess","type":0},"status":"idle"}}"#
            .to_owned(),
        r#"{"op":3,"d":{"since":1700000000000,"activities":[],"status":"online","afk":false}}"#
            .to_owned(),
        format!(
            r#"{{"op":8,"d":{{"guild_id":"{guild}","query":"","limit":0,"presences":false,"user_ids":null,"nonce":"n1"}}}}"#
        ),
        format!(r#"{{"op":8,"d":{{"guild_id":"{guild}","user_ids":"{guild}"}}}}"#),
    ] {
        c.send_text(&text).await;
    }
    c.expect_op(11, None).await;
    c.expect_op(11, None).await;
    let chunk = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await;
    assert!(chunk.d.unwrap().contains(r#""nonce":"n1""#));
    let invalid: Vec<_> = gw
        .recorded()
        .into_iter()
        .filter(|r| matches!(r.received, Received::Invalid { .. }))
        .collect();
    assert!(invalid.is_empty(), "{invalid:?}");
}

#[tokio::test]
async fn refusals_carry_discords_code_and_words_and_never_the_token() {
    let gw = gateway().await;
    let cases = [
        (
            r#"{"op":2,"d":{"token":"secret-wrong-token","properties":{},"intents":1}}"#,
            4004,
            "Authentication failed.",
        ),
        ("{not json", 4002, "Error while decoding payload."),
        (r#"{"op":99,"d":null}"#, 4001, "Unknown opcode."),
        (
            r#"{"op":8,"d":{"guild_id":"1","query":"","limit":0}}"#,
            4003,
            "Not authenticated.",
        ),
    ];
    for (text, code, reason) in cases {
        let mut c = Client::connect(gw.url(), Compression::None).await;
        c.expect_op(10, None).await;
        c.send_text(text).await;
        assert_eq!(
            close_frame(&mut c).await,
            Some((code, reason.to_owned())),
            "{text}"
        );
    }
    let recorded = format!("{:?}", gw.recorded());
    assert!(!recorded.contains("secret-wrong-token"), "{recorded}");
    assert!(
        recorded.contains("d.token"),
        "the reason names the field: {recorded}"
    );
}
