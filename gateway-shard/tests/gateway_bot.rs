//! A shard group sized by `GET /gateway/bot`, end to end against the testkit's REST route: the
//! recommended shard count and `max_concurrency`, the session start budget checked before any
//! IDENTIFY, and a refused token as a typed error.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![cfg(feature = "rest")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_model::{Intents, Token};
use gateway_shard::{GatewayBotError, ShardConfig, ShardError, ShardGroup, ShardGroupConfig};
use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};

async fn gateway(shards: u32, session_start_limit: u32) -> FakeGateway {
    FakeGateway::start_with(
        GatewayConfig {
            identify_window: Duration::ZERO,
            max_concurrency: 2,
            recommended_shards: shards,
            session_start_limit,
            world: WorldConfig::uniform(1, 4, 10),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap()
}

fn api(gw: &FakeGateway) -> String {
    format!("{}/api/v10", gw.url().replacen("ws://", "http://", 1))
}

/// A group given a token and no shard count: the count, the URL and the budget come from
/// `GET /gateway/bot`.
fn config(token: &str, gw: &FakeGateway) -> ShardGroupConfig {
    let shard = ShardConfig::new(Token::new(token), Intents::GUILDS).with_seed(5);
    ShardGroupConfig::recommended(shard).with_api_base(api(gw))
}

#[tokio::test]
async fn the_group_starts_the_recommended_shards() {
    let gw = gateway(2, 1000).await;
    let token = gw.config().token.clone();
    let (group, _events) = ShardGroup::start(config(&token, &gw), |_| {})
        .await
        .unwrap();
    let info = group.gateway_bot().unwrap();
    assert_eq!(
        (info.shards, info.session_start_limit.max_concurrency),
        (2, 2)
    );
    assert_eq!(group.total(), 2);
    assert_eq!(gw.stats().readies, 2);
    // Each identify was counted against the budget the group was given.
    assert_eq!(gw.stats().identifies, 2);
    group.close(false).await;
}

#[tokio::test]
async fn too_small_a_budget_refuses_to_start_before_any_identify() {
    let gw = gateway(2, 1).await;
    let token = gw.config().token.clone();
    let error = ShardGroup::start(config(&token, &gw), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ShardError::SessionStartLimit {
                remaining: 1,
                needed: 2,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(gw.stats().identifies, 0);
}

#[tokio::test]
async fn a_refused_token_is_a_typed_error() {
    let gw = gateway(1, 1000).await;
    let error = ShardGroup::start(config("wrong", &gw), |_| {})
        .await
        .unwrap_err();
    assert_eq!(error, ShardError::GatewayBot(GatewayBotError::Unauthorized));
}
