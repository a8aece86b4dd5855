//! The REST routes on the gateway's port: what a bot asks before it connects, and the testkit's
//! control routes for tests in any language.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, TOKEN, http};
use gateway_codec::Compression;
use gateway_model::{GatewayBot, Intents, ShardId};
use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};

async fn gateway(config: GatewayConfig) -> FakeGateway {
    FakeGateway::start_with(
        GatewayConfig {
            identify_window: Duration::ZERO,
            world: WorldConfig::uniform(2, 2, 20),
            ..config
        },
        0,
    )
    .await
    .unwrap()
}

async fn gateway_bot(gw: &FakeGateway) -> GatewayBot {
    let (status, body) = http(
        gw.local_addr(),
        "GET",
        "/api/v10/gateway/bot",
        Some(&format!("Bot {TOKEN}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn gateway_bot_counts_session_starts_down() {
    let gw = gateway(GatewayConfig {
        recommended_shards: 3,
        max_concurrency: 2,
        session_start_limit: 2,
        ..GatewayConfig::default()
    })
    .await;
    let info = gateway_bot(&gw).await;
    assert_eq!(info.url, gw.url());
    assert_eq!(
        (info.shards, info.session_start_limit.max_concurrency),
        (3, 2)
    );
    assert_eq!(
        (
            info.session_start_limit.total,
            info.session_start_limit.remaining
        ),
        (2, 2)
    );
    for remaining in [1, 0] {
        let mut c = Client::connect(gw.url(), Compression::None).await;
        c.start(Intents::GUILDS, ShardId::new(0, 3).unwrap()).await;
        assert_eq!(
            gateway_bot(&gw).await.session_start_limit.remaining,
            remaining
        );
    }
    // A third session start in the window is refused as Discord does (the token is reset).
    let mut c = Client::connect(gw.url(), Compression::None).await;
    c.expect_op(10, None).await;
    c.identify(Intents::GUILDS, ShardId::new(1, 3).unwrap())
        .await;
    assert_eq!(
        common::close_frame(&mut c).await,
        Some((4004, "Authentication failed.".to_owned()))
    );
}

#[tokio::test]
async fn the_session_start_budget_resets_after_its_window() {
    let gw = gateway(GatewayConfig {
        session_start_limit: 1,
        session_start_reset: Duration::from_millis(300),
        ..GatewayConfig::default()
    })
    .await;
    let mut c = Client::connect(gw.url(), Compression::None).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    // Bounded wait for the budget to come back; no timing is asserted.
    for _ in 0..1500 {
        if gateway_bot(&gw).await.session_start_limit.remaining == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the session start budget never reset");
}

#[tokio::test]
async fn gateway_routes_and_refusals() {
    let gw = gateway(GatewayConfig::default()).await;
    let addr = gw.local_addr();
    let (status, body) = http(addr, "GET", "/api/v10/gateway", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, format!(r#"{{"url":"{}"}}"#, gw.url()));
    // Any API version, a token with or without `Bot `.
    let (status, _) = http(addr, "GET", "/api/v9/gateway/bot", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let (status, body) = http(addr, "GET", "/api/v10/gateway/bot", None).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"401: Unauthorized","code":0}"#)
    );
    let (status, _) = http(addr, "GET", "/api/v10/gateway/bot", Some("Bot nope")).await;
    assert_eq!(status, 401);
    let (status, _) = http(addr, "GET", "/api/v10/users/1", Some(TOKEN)).await;
    assert_eq!(status, 404);
    let (status, _) = http(addr, "DELETE", "/api/v10/gateway", None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn control_routes_inject_faults_on_a_shard() {
    let gw = gateway(GatewayConfig::default()).await;
    let addr = gw.local_addr();
    let (status, _) = http(addr, "POST", "/testkit/shards/0/reconnect", None).await;
    assert_eq!(status, 404, "no live session yet");
    let mut c = Client::connect(gw.url(), Compression::ZstdStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    let (status, body) = http(addr, "POST", "/testkit/shards/0/reconnect", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
    c.expect_op(7, None).await;
    let (status, _) = http(
        addr,
        "POST",
        "/testkit/shards/0/invalid-session/maybe",
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = http(addr, "POST", "/testkit/shards/0/close/4000", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        common::close_frame(&mut c).await,
        Some((4000, "Unknown error.".to_owned()))
    );
    let (status, body) = http(addr, "GET", "/testkit/stats", None).await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["readies"], 1);
}

/// In steps of 1,000 (three here) or at once, every dispatch in order.
#[tokio::test]
async fn replay_routes_send_the_configured_dispatches_in_order() {
    let replay: Vec<(String, String)> = (0..2_500)
        .map(|i| ("TESTKIT_EVENT".to_owned(), format!(r#"{{"n":{i}}}"#)))
        .collect();
    let gw = gateway(GatewayConfig {
        replay: replay.into(),
        ..GatewayConfig::default()
    })
    .await;
    let addr = gw.local_addr();
    let (status, _) = http(addr, "POST", "/testkit/shards/0/replay", None).await;
    assert_eq!(status, 404, "no live session yet");
    let (status, body) = http(addr, "POST", "/testkit/replay", None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"sessions":0,"dispatched":0}"#)
    );
    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    c.start(Intents::GUILDS, ShardId::ONE).await;
    let (status, body) = http(addr, "POST", "/testkit/shards/0/replay", None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"sessions":1,"dispatched":2500}"#)
    );
    // In one step this time.
    let (status, body) = http(addr, "POST", "/testkit/replay?at-once", None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"sessions":1,"dispatched":2500}"#)
    );
    let mut seen = Vec::new();
    while seen.len() < 5_000 {
        let got = c.expect().await;
        if got.t.as_deref() == Some("TESTKIT_EVENT") {
            seen.push(sonic_rs::JsonValueTrait::as_u64(&got.d_value()["n"]).unwrap());
        }
    }
    let expected: Vec<u64> = (0..2_500).chain(0..2_500).collect();
    assert_eq!(seen, expected);
}

/// A bot's login before the gateway (discord.py and hikari ask `/users/@me`, hikari also
/// `/oauth2/applications/@me`): the world's bot user and application, as READY names them.
#[tokio::test]
async fn login_routes_answer_with_the_worlds_bot_and_application() {
    use sonic_rs::JsonValueTrait;
    let gw = gateway(GatewayConfig::default()).await;
    let addr = gw.local_addr();
    let world = gw.world();
    let (status, body) = http(addr, "GET", "/api/v10/users/@me", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let user: sonic_rs::Value = sonic_rs::from_str(&body).unwrap();
    assert_eq!(user["id"].as_str(), Some(world.bot_id.to_string().as_str()));
    assert_eq!(user["bot"].as_bool(), Some(true));
    assert_eq!(user["username"].as_str(), Some("testkit-bot"));
    let (status, body) = http(addr, "GET", "/api/v9/oauth2/applications/@me", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let app: sonic_rs::Value = sonic_rs::from_str(&body).unwrap();
    let app_id = world.application_id.to_string();
    assert_eq!(app["id"].as_str(), Some(app_id.as_str()));
    assert!(app["flags"].as_u64().is_some());
    assert!(app["owner"]["id"].as_str().is_some());
    assert!(app["team"].is_null());
    assert_eq!(
        app["bot"]["id"].as_str(),
        Some(world.bot_id.to_string().as_str())
    );
    for route in ["/api/v10/users/@me", "/api/v10/oauth2/applications/@me"] {
        let (status, _) = http(addr, "GET", route, None).await;
        assert_eq!(status, 401, "{route} without a token");
        let (status, _) = http(addr, "POST", route, Some(TOKEN)).await;
        assert_eq!(status, 405, "{route} with another method");
    }
}
