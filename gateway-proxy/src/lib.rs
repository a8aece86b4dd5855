//! A Discord gateway proxy: the bot's shards upstream, any number of bot processes downstream,
//! each served Gateway v10 as Discord would serve it, with a RESUME that replays.
//!
//! | item | holds |
//! |---|---|
//! | [`ProxyCore`], [`ProxyOutput`], [`UpstreamReady`] | the proxy, sans-IO: upstream dispatches and client frames in, client frames and upstream commands out |
//! | [`ProxyConfig`] | what it serves, who may connect, its bounds |
//! | [`log`] | each shard's replay log, bounded in bytes and age |
//! | [`record`] | a client session written down, for another proxy process to take its RESUME |
//! | [`cache`] | each shard's guilds as raw JSON, kept current |
//! | [`intents`] | which intents deliver which dispatch |
//!
//! The server side of the protocol (payloads read as Discord reads them, HELLO, heartbeats,
//! compression, close codes) is `gateway_server`'s, the one the fake gateway speaks too. With
//! the default `driver` feature, `Proxy` runs the core on tokio over a `ShardGroup`; the
//! `gateway-proxy` binary is that, with flags.
//!
//! The core alone, driven by hand (a driver feeds it the shard's events and the clients'
//! frames, and carries its outputs out):
//!
//! ```
//! use std::time::Instant;
//! use gateway_model::{Intents, Token};
//! use gateway_proxy::{ProxyConfig, ProxyCore, ProxyOutput, UpstreamReady};
//! use gateway_server::{Frame, Transmit};
//!
//! let now = Instant::now();
//! let config = ProxyConfig::new(Token::new("bot-token"), 1, Intents::GUILDS, "ws://127.0.0.1:7878");
//! let mut core = ProxyCore::new(config);
//! let ready = r#"{"v":10,"user":{"id":"1","username":"bot"},"guilds":[{"id":"2","unavailable":true}],
//!     "session_id":"up","resume_gateway_url":"wss://gateway.discord.gg","application":{"id":"1","flags":0}}"#;
//! core.handle_upstream_ready(now, 0, UpstreamReady { data: ready.to_owned() });
//!
//! // A client connects and identifies: HELLO, then READY with every guild of the shard.
//! core.handle_open(now, 1, "v=10&encoding=json");
//! let identify = r#"{"op":2,"d":{"token":"bot-token","properties":{},"intents":1}}"#;
//! core.handle_frame(now, 1, Frame::Text(identify.into()));
//! let mut texts = Vec::new();
//! while let Some(output) = core.poll_output(now) {
//!     if let ProxyOutput::Client { transmit: Transmit::Frames(frames), .. } = output {
//!         texts.extend(frames.into_iter().filter_map(|f| match f {
//!             Frame::Text(t) => Some(t),
//!             Frame::Binary(_) => None,
//!         }));
//!     }
//! }
//! assert!(texts[0].contains(r#""op":10"#));
//! assert!(texts[1].contains(r#""t":"READY""#) && texts[1].contains(r#""resume_gateway_url":"ws://127.0.0.1:7878""#));
//! ```

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod cache;
mod config;
mod core;
#[cfg(feature = "driver")]
mod driver;
pub mod intents;
pub mod log;
pub mod record;

pub use config::{PresencePolicy, ProxyConfig};
pub use core::{ClientId, CoreCounts, ProxyCore, ProxyOutput, UpstreamReady};
#[cfg(feature = "cluster")]
pub use driver::ClusterUpstream;
#[cfg(feature = "driver")]
pub use driver::{Proxy, ProxyError, ServeOptions};
