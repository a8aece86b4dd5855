//! A fake Discord gateway for tests: a real websocket server on loopback that speaks Gateway v10
//! as Discord does, compresses as Discord does, and injects faults on cue.
//!
//! It reads what real clients send as Discord reads it (a `Bot ` token, legacy presences, extra
//! fields) and refuses only what Discord refuses, with Discord's close code and words. The same
//! port answers plain HTTP: `GET /api/v10/gateway/bot` (URL, recommended shards, a session start
//! budget that counts down), and `POST /testkit/shards/{n}/{fault}`, `POST /testkit/replay` (a
//! prepared load, [`GatewayConfig::replay`]) and `GET /testkit/stats` for tests in any language. Hostile clients are bounded: frame size, handshake time, open sockets,
//! recorded history, session lifetime.
//!
//! | item | holds |
//! |---|---|
//! | [`FakeGateway`] | the server: start, URL, state, waiting helpers, fault scripting |
//! | [`GatewayConfig`] | tokens, intervals, limits, the privileged intents allowed, the session start budget |
//! | [`World`], [`WorldConfig`] | guilds and members generated from a seed, and the JSON Discord sends for them |
//! | [`Fault`], [`ChunkFault`], [`SplitAt`], [`Trigger`] | what goes wrong, and when |
//! | [`Recorded`], [`Stats`], [`ConnectionInfo`], [`StateCounts`] | what clients did, and what the server holds, for assertions |
//! | [`RedisServer`] | a `redis-server` of a test's own, for what a bot keeps in Redis |
//! | [`Relay`] | a TCP relay that can be cut and joined again: a partition from Redis or the gateway |
//! | [`RedisCluster`] | a Redis Cluster of a test's own, with replicas to fail over to |
//!
//! Inside, the sans-IO protocol: [`core`] (the gateway as a state machine: every connection's
//! protocol and the state they share), on `gateway_server`'s `Connection` (the server side of
//! the protocol every gateway here speaks: payloads read as Discord reads them, HELLO,
//! heartbeats, the command budget, compression, close codes); `admission` (who may identify:
//! the token, the intents, guilds per shard), `shape` (injected corruption and splits),
//! `answers`, `payloads` and `members` (what is sent, built from typed values), `state`
//! (sessions, recordings, counters), `session_start` (the budget). Around it, the tokio server
//! that drives it, on `gateway_server`'s tokio front (request head, websocket accept, wire):
//! `server` (accepting sockets, the core's timer), `connection` (one websocket's task),
//! `shared` (the core behind one mutex, and the channels to each connection), `rest` (the HTTP
//! routes).
//!
//! ```
//! use gateway_testkit::{FakeGateway, Fault, Trigger};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let gateway = FakeGateway::start().await?;
//! // Point the client under test at gateway.url(), e.g.
//! // "ws://127.0.0.1:PORT/?v=10&encoding=json&compress=zlib-stream".
//! assert!(gateway.url().starts_with("ws://127.0.0.1:"));
//!
//! // Script a fault for the next connection, or for a live one:
//! gateway.on_next_connection(Fault::StallReady);
//! if let Some(connection) = gateway.shard_connection(0) {
//!     connection.inject_on(Trigger::AfterSeq(3), Fault::Close(4009));
//! }
//! // …and wait for states instead of sleeping:
//! // gateway.wait_for_readies(1).await;
//! # Ok(())
//! # }
//! ```

// Tests read the clock to build inputs; the library itself does not (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
mod admission;
mod answers;
mod config;
#[cfg(feature = "server")]
mod connection;
pub mod core;
mod fault;
mod members;
mod payloads;
mod record;
#[cfg(feature = "server")]
mod redis_cluster;
#[cfg(feature = "server")]
mod redis_server;
#[cfg(feature = "server")]
mod relay;
#[cfg(feature = "server")]
mod rest;
#[cfg(feature = "server")]
mod server;
mod session_start;
mod shape;
#[cfg(feature = "server")]
mod shared;
mod state;
mod voice;
mod world;

pub use config::{GatewayConfig, MissingMembersIntent};
pub use fault::{ChunkFault, Fault, SplitAt, Trigger};
pub use members::CHUNK_SIZE;
pub use record::{ConnectionInfo, DropReason, Received, Recorded, Stats};
#[cfg(feature = "server")]
pub use redis_cluster::RedisCluster;
#[cfg(feature = "server")]
pub use redis_server::RedisServer;
#[cfg(feature = "server")]
pub use relay::Relay;
#[cfg(feature = "server")]
pub use server::FakeGateway;
#[cfg(feature = "server")]
pub use shared::ConnectionHandle;
pub use state::{StateCounts, View};
pub use voice::VOICE_ENDPOINT;
pub use world::{Guild, Member, World, WorldConfig};
