//! A fake Discord gateway for tests: a real websocket server on loopback that speaks Gateway v10
//! as Discord does, compresses as Discord does, and injects faults on cue.
//!
//! It reads what real clients send as Discord reads it (a `Bot ` token, legacy presences, extra
//! fields) and refuses only what Discord refuses, with Discord's close code and words. The same
//! port answers plain HTTP: `GET /api/v10/gateway/bot` (URL, recommended shards, a session start
//! budget that counts down), and `POST /testkit/shards/{n}/{fault}` and `GET /testkit/stats` for
//! tests in any language. Hostile clients are bounded: frame size, handshake time, open sockets,
//! recorded history, session lifetime.
//!
//! | item | holds |
//! |---|---|
//! | [`FakeGateway`] | the server: start, URL, state, waiting helpers, fault scripting |
//! | [`GatewayConfig`] | tokens, intervals, limits, the privileged intents allowed, the session start budget |
//! | [`World`], [`WorldConfig`] | guilds and members generated from a seed, and the JSON Discord sends for them |
//! | [`Fault`], [`ChunkFault`], [`SplitAt`], [`Trigger`] | what goes wrong, and when |
//! | [`Recorded`], [`Stats`], [`ConnectionInfo`], [`StateCounts`] | what clients did, and what the server holds, for assertions |
//!
//! Inside: `handshake` (the request head: websocket or REST), `rest` (the HTTP routes),
//! `inbound` (client payloads read as Discord reads them), `connection` (one websocket's
//! protocol), `outbound` (frames, compression and injected corruption), `payloads` and
//! `members` (what is sent), `state` (what connections share), `session_start` (the budget).
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

mod config;
mod connection;
pub mod core;
mod envelope;
mod fault;
mod handshake;
mod inbound;
mod members;
mod outbound;
mod payloads;
mod record;
mod rest;
mod server;
mod session_start;
mod shared;
mod state;
mod world;

pub use config::{GatewayConfig, MissingMembersIntent};
pub use fault::{ChunkFault, Fault, SplitAt, Trigger};
pub use members::CHUNK_SIZE;
pub use record::{ConnectionInfo, Received, Recorded, Stats};
pub use server::FakeGateway;
pub use shared::ConnectionHandle;
pub use state::{StateCounts, View};
pub use world::{Guild, Member, World, WorldConfig};
