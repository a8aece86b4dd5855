//! One Discord Gateway shard: a sans-IO [`Session`] that holds every protocol decision, and a
//! thin tokio driver that runs it over a real websocket behind the [`Shard`] handle.
//!
//! | module | holds |
//! |---|---|
//! | [`Session`] | the state machine: HELLO, IDENTIFY/RESUME, heartbeats and zombies, timeouts, the close policy, backoff, the rate limiter and command queue, presence; time is an argument |
//! | [`Shard`], [`ShardEvents`], [`Commander`] | the handle: start, join, close (optionally exporting the session), commands (also from elsewhere, by a `Commander`), properties, and events as a `Stream` |
//! | [`ShardConfig`], [`Timeouts`], [`Backoff`] | configuration, mirroring hikari's shard constructor |
//! | [`ShardEvent`], [`Reconnect`] | what the shard tells its user, in a documented order |
//! | [`ShardError`], [`CommandError`] | what can go wrong, typed |
//! | [`drive`] | what every tokio driver of a sans-IO core needs: the clock, optional waits, a timer (feature `tokio`) |
//! | [`identify`] | identify queues: one process's, or Redis's for many (feature `redis`) |
//! | [`RedisTarget`], [`RedisConnection`] | where Redis is, one server or a Redis Cluster, and the connection every Redis-backed part shares (feature `redis`) |
//!
//! Against the testkit's fake gateway (any v10 gateway works the same way):
//!
//! ```
//! use gateway_model::{Intents, Token};
//! use gateway_shard::{Shard, ShardConfig, ShardEvent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = gateway_testkit::FakeGateway::start().await?;
//! let config = ShardConfig::new(Token::new("testkit-token"), Intents::GUILDS)
//!     .with_gateway_url(gateway.url());
//! let (shard, mut events) = Shard::start(config).await?; // returns once READY
//! assert!(shard.is_connected());
//! while let Some(event) = events.next().await {
//!     if let ShardEvent::Dispatch(dispatch) = event {
//!         println!("{} #{}", dispatch.event.name(), dispatch.seq);
//!         break;
//!     }
//! }
//! let session = shard.close(true).await; // resumable, e.g. by another process
//! assert!(session.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! The driver installs rustls's ring crypto provider if the process has none; `wss://`
//! certificates are verified against the webpki roots.

// Tests read the clock to build inputs; the library itself does not (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
mod backoff;
mod config;
#[cfg(feature = "tokio")]
mod connect;
#[cfg(feature = "tokio")]
pub mod drive;
#[cfg(feature = "tokio")]
mod driver;
mod error;
mod event;
#[cfg(feature = "tokio")]
mod group;
pub mod identify;
#[cfg(feature = "tokio")]
mod link;
#[cfg(feature = "tokio")]
mod outbox;
mod output;
mod presence;
mod ratelimit;
#[cfg(feature = "redis")]
mod redis_connection;
#[cfg(feature = "rest")]
mod rest;
mod resume;
mod session;
#[cfg(feature = "tokio")]
mod shard;
#[cfg(feature = "tokio")]
mod sink;
#[cfg(feature = "tokio")]
mod status;

pub use backoff::Backoff;
pub use config::{DISCORD_GATEWAY, ShardConfig, Timeouts};
#[cfg(feature = "tokio")]
pub use connect::{USER_AGENT_VALUE, tls_config};
pub use error::{CommandError, ShardError};
pub use event::{Reconnect, ShardEvent};
#[cfg(feature = "tokio")]
pub use group::{
    GroupError, GroupEvents, ShardCount, ShardGroup, ShardGroupConfig, ShardStatus, StartProgress,
};
pub use output::{Action, Output};
pub use presence::PresenceUpdate;
pub use ratelimit::{COMMANDS_PER_WINDOW, WINDOW};
#[cfg(feature = "redis")]
pub use redis_connection::{RedisConnection, RedisOptions, RedisTarget, RedisTargetError};
#[cfg(feature = "rest")]
pub use rest::{DISCORD_API, GatewayBotError, fetch_gateway_bot};
pub use session::{IDENTIFY_QUEUE_RETRY, ResumeInfo, Session, SessionState, Timer};
#[cfg(feature = "tokio")]
pub use shard::{Commander, Shard, ShardEvents};
