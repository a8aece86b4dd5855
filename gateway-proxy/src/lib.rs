//! A Discord gateway proxy: the bot's shards upstream, any number of bot processes downstream,
//! each served Gateway v10 as Discord would serve it, with a RESUME that replays.
//!
//! | item | holds |
//! |---|---|
//! | [`ProxyCore`], [`ProxyOutput`], [`UpstreamReady`] | the proxy, sans-IO: upstream dispatches and client frames in, client frames and upstream commands out |
//! | [`ProxyConfig`] | what it serves, who may connect, its bounds |
//! | [`log`] | each shard's replay log, bounded in bytes and age |
//! | [`cache`] | each shard's guilds as raw JSON, kept current |
//! | [`intents`] | which intents deliver which dispatch |
//!
//! The server side of the protocol (payloads read as Discord reads them, HELLO, heartbeats,
//! compression, close codes) is `gateway_server`'s, the one the fake gateway speaks too.

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod cache;
mod config;
mod core;
#[cfg(feature = "driver")]
mod driver;
pub mod intents;
pub mod log;

pub use config::ProxyConfig;
pub use core::{ClientId, CoreCounts, ProxyCore, ProxyOutput, UpstreamReady};
#[cfg(feature = "driver")]
pub use driver::{Proxy, ProxyError, ServeOptions};
