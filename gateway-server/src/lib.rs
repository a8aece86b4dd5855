//! The server side of the Discord Gateway v10, sans-IO, shared by the fake gateway
//! (`gateway-testkit`) and the proxy (`gateway-proxy`): one reading of what clients send, one
//! HELLO, one heartbeat rule, one command budget, one set of close codes.
//!
//! | item | holds |
//! |---|---|
//! | [`Connection`], [`ConnectionConfig`], [`Inbound`], [`Transmit`] | one client connection's protocol: the query, HELLO, heartbeats and zombies (4009), the budget (4008), IDENTIFY and RESUME order (4003, 4005), what goes out |
//! | [`read_command`], [`Rejection`], [`close_reason`], [`redacted`] | client payloads read as Discord reads them (liberal in shape, strict where Discord is), with Discord's codes and words |
//! | [`parse_query`] | the websocket URL's query string |
//! | [`Encoder`] | one connection's outbound compression: zlib-stream, zstd-stream, payload compression, none |
//! | [`envelope`] | the server's payloads: HELLO, ACK, INVALID_SESSION, RECONNECT, dispatches |
//! | [`Frame`] | a websocket frame, either way |
//!
//! With the `tokio` feature, the front every server here runs on one port: `read_head_by` (the
//! request head, bounded in bytes and time, telling a websocket upgrade from plain HTTP), `Replayed` (the stream
//! that serves the head again), `accept` (the websocket handshake, frames bounded from their
//! header) and `Wire` (frames both ways, the socket read while a slow client's writes wait).
//!
//! What a session is, who may identify, and what a server answers are the server's own: the
//! testkit's world and the proxy's shards.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use gateway_server::{Connection, ConnectionConfig, Frame, Inbound, Transmit};
//! use gateway_model::Command;
//!
//! let now = Instant::now();
//! let (mut conn, refused) = Connection::new(ConnectionConfig::default(), "v=10&encoding=json");
//! assert!(refused.is_none());
//! conn.hello(now);
//! assert!(matches!(conn.poll_transmit(), Some(Transmit::Frames(_)))); // HELLO
//!
//! // A heartbeat is answered here; the server still hears of it.
//! let inbound = conn.handle_frame(now, Frame::Text(r#"{"op":1,"d":null}"#.into()), |_| Ok(()));
//! assert!(matches!(inbound, Inbound::Command { command: Command::Heartbeat(_), .. }));
//! assert!(matches!(conn.poll_transmit(), Some(Transmit::Frames(_)))); // ACK
//!
//! // A command before IDENTIFY closes 4003, as Discord does.
//! let op3 = r#"{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}"#;
//! assert!(matches!(conn.handle_frame(now, Frame::Text(op3.into()), |_| Ok(())), Inbound::Refused { .. }));
//! assert!(matches!(conn.poll_transmit(), Some(Transmit::Close { code: 4003, .. })));
//! # let _ = Duration::ZERO;
//! ```

#![cfg_attr(test, allow(clippy::disallowed_methods))]

#[cfg(feature = "tokio")]
mod accept;
mod connection;
pub mod envelope;
mod frame;
#[cfg(feature = "tokio")]
mod head;
mod inbound;
mod outbound;
mod query;
#[cfg(feature = "tokio")]
mod wire;

#[cfg(feature = "tokio")]
pub use accept::{AcceptError, Accepted, accept};
pub use connection::{Connection, ConnectionConfig, Inbound, Transmit, ends_session};
pub use frame::Frame;
#[cfg(feature = "tokio")]
pub use head::{Head, HeadError, MAX_HEAD, Replayed, read_head, read_head_by};
pub use inbound::{Rejection, asks_payload_compression, close_reason, read_command, redacted};
pub use outbound::{Encoder, PAYLOAD_COMPRESSION_MIN};
pub use query::parse_query;
#[cfg(feature = "tokio")]
pub use wire::{Io, Wire, Ws};
