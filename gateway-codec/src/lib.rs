//! A sans-IO codec for the Discord Gateway (v10): websocket message bytes in, payloads out;
//! commands in, frames out. No sockets, no async runtime, no clock.
//!
//! | module | holds |
//! |---|---|
//! | [`Decoder`] | inbound: zlib-stream, zstd-stream or plain JSON messages to [`Payload`]s, with size limits |
//! | [`Limits`] | the bounds on every buffer fed from the network, with their defaults |
//! | [`encode`] | outbound: a [`Command`](gateway_model::Command) to one text frame, refused over 4096 bytes |
//! | [`connect_url`] | the URL to connect to, with `v=10`, `encoding=json` and `compress` |
//! | [`Compressor`] | the server's side of the compression, for fake gateways and tests |
//! | [`DecodeError`], [`EncodeError`] | what can go wrong, typed |
//!
//! The decoder is driven by whatever owns the socket: hand it the bytes of every websocket message
//! as it arrives, and it hands back each payload once complete. A zlib-stream payload may span
//! several messages, with its `00 00 ff ff` ending split between them:
//!
//! ```
//! use gateway_codec::{Compression, Decoder};
//! use gateway_model::{EventTypes, GatewayEvent, Hello, OpCode};
//!
//! // `{"op":10,"d":{"heartbeat_interval":41250}}`, zlib-stream compressed (level 6, sync flush),
//! // as it arrives in two websocket messages.
//! let first: &[u8] = &[
//!     0x78, 0x9c, 0xaa, 0x56, 0xca, 0x2f, 0x50, 0xb2, 0x32, 0x34, 0xd0, 0x51, 0x4a, 0x51, 0xb2,
//!     0xaa, 0x56, 0xca, 0x48, 0x4d, 0x2c, 0x2a, 0x49, 0x4a, 0x4d, 0x2c, 0x89, 0xcf, 0xcc, 0x2b,
//!     0x49, 0x2d, 0x2a, 0x4b, 0xcc, 0x51, 0xb2, 0x32, 0x31, 0x34, 0x32, 0x35, 0xa8, 0xad, 0x05,
//!     0x00, 0x00,
//! ];
//! let second: &[u8] = &[0x00, 0xff, 0xff];
//!
//! let mut decoder = Decoder::new(Compression::ZlibStream)?;
//! assert!(decoder.push(first)?.is_none()); // not complete yet
//! let payload = decoder.push(second)?.expect("a whole payload");
//! assert_eq!(payload.op, OpCode::Hello);
//! assert_eq!(
//!     GatewayEvent::from_payload(&payload, EventTypes::all())?,
//!     Some(GatewayEvent::Hello(Hello { heartbeat_interval: 41250 }))
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Errors are values: corrupt compression, invalid JSON and oversize payloads come back as
//! [`DecodeError`]s; after a fatal one, [`Decoder::reset`] readies the decoder for the next
//! connection.

// Tests read the clock to build inputs; the library itself does not (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
mod buffer;
mod compression;
mod compressor;
mod decoder;
mod encoder;
mod envelope;
mod error;
mod inflate;
mod limits;
mod url;

pub use compression::Compression;
pub use compressor::{CompressError, Compressor};
pub use decoder::Decoder;
pub use encoder::{MAX_OUTBOUND_PAYLOAD, encode};
pub use envelope::{scan as scan_envelope, scan_validating as scan_envelope_validating};
pub use error::{DecodeError, EncodeError, InvalidUrl};
pub use gateway_model::Payload;
pub use limits::Limits;
pub use url::{API_VERSION, connect_url};
