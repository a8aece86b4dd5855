//! What can go wrong decoding and encoding.

use gateway_model::JsonError;

/// Why a received message could not be decoded.
///
/// After an error for which [`DecodeError::is_fatal`] is true the compression stream is lost: the
/// decoder refuses more input until [`Decoder::reset`](crate::Decoder::reset), and the connection
/// should be closed and resumed. Other errors lose only the one payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A payload decompressed past [`Limits::max_message_size`](crate::Limits::max_message_size).
    #[error("payload larger than the {limit} byte limit")]
    MessageTooLarge {
        /// The limit.
        limit: usize,
    },
    /// More compressed bytes arrived without a payload ending than
    /// [`Limits::max_buffered_compressed`](crate::Limits::max_buffered_compressed) allows.
    #[error("over {limit} compressed bytes buffered without a complete payload")]
    CompressedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The zlib stream does not start with a zlib header (deflate, no preset dictionary).
    #[error("not a zlib stream: header bytes {0:#04x} {1:#04x}")]
    ZlibHeader(u8, u8),
    /// The zlib stream is corrupt.
    #[error("corrupt zlib stream: {0}")]
    Zlib(#[from] flate2::DecompressError),
    /// The zlib stream ended, which Discord's never does.
    #[error("the zlib stream ended")]
    ZlibStreamEnded,
    /// The zstd stream is corrupt, or asks for a window over the limit.
    #[error("corrupt zstd stream: {0}")]
    Zstd(std::io::Error),
    /// The payload is not a JSON object with an integer `op`.
    #[error("invalid payload JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A compressed message arrived as a text frame, or the decoder saw an earlier fatal error and
    /// was not reset.
    #[error("the decoder needs a reset after an earlier fatal error")]
    NeedsReset,
}

impl DecodeError {
    /// Whether the stream is lost: reset the decoder, and reconnect.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Json(_))
    }
}

/// Why a command could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is over the gateway's 4096-byte limit (it would be closed with 4002).
    #[error("payload of {size} bytes, over the gateway's {limit} byte limit")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Serialization failed.
    #[error(transparent)]
    Json(#[from] JsonError),
}

/// A gateway URL that is not a `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a ws:// or wss:// URL: {0:?}")]
pub struct InvalidUrl(pub String);
