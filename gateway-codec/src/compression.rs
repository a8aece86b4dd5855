//! Transport compression: which one a connection uses, and how it is named in the URL.

use std::fmt;

/// The transport compression of a connection, chosen by the `compress` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression: every payload is one text frame of JSON.
    None,
    /// `compress=zlib-stream`: one zlib stream for the whole connection, every payload sync-flushed
    /// (ending in `00 00 ff ff`), possibly over several binary frames.
    #[default]
    ZlibStream,
    /// `compress=zstd-stream`: one zstd frame for the whole connection that never ends, every payload
    /// a flushed block in its own binary frame.
    ZstdStream,
}

impl Compression {
    /// The `compress` query value, or `None` for no compression.
    pub const fn query_value(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::ZlibStream => Some("zlib-stream"),
            Self::ZstdStream => Some("zstd-stream"),
        }
    }

    /// The compression a `compress` query value names.
    pub fn from_query_value(value: &str) -> Option<Self> {
        match value {
            "zlib-stream" => Some(Self::ZlibStream),
            "zstd-stream" => Some(Self::ZstdStream),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.query_value().unwrap_or("none"))
    }
}
