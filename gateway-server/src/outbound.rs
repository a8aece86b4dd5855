//! What one payload becomes on the wire for one connection: a text frame, or compressed bytes in
//! a binary frame, as the connection asked (transport compression from the URL, or payload
//! compression from IDENTIFY's `compress: true`).

use gateway_codec::{CompressError, Compression, Compressor};

use crate::frame::Frame;

/// Payloads this large or larger go out zlib-compressed under payload compression (Discord's
/// behaviour: small ones stay text).
pub const PAYLOAD_COMPRESSION_MIN: usize = 1024;

/// One connection's outbound encoding: its transport compressor, or payload compression.
#[derive(Debug)]
pub struct Encoder {
    compressor: Compressor,
    payload_compression: bool,
}

impl Encoder {
    /// An encoder for a connection with this transport compression.
    pub fn new(compression: Compression) -> Result<Self, CompressError> {
        Self::with_zlib_level(compression, Compressor::ZLIB_LEVEL)
    }

    /// An encoder whose zlib-stream deflates at `level` (see [`Compressor::with_zlib_level`]).
    pub fn with_zlib_level(compression: Compression, level: u32) -> Result<Self, CompressError> {
        Ok(Self {
            compressor: Compressor::with_zlib_level(compression, level)?,
            payload_compression: false,
        })
    }

    /// The transport compression.
    pub fn compression(&self) -> Compression {
        self.compressor.compression()
    }

    /// Turns payload compression on (IDENTIFY asked for it). Discord ignores it under transport
    /// compression, and so does this.
    pub fn set_payload_compression(&mut self, on: bool) {
        self.payload_compression = on && self.compression() == Compression::None;
    }

    /// Whether payload compression is on.
    pub fn payload_compression(&self) -> bool {
        self.payload_compression
    }

    /// The websocket message that carries `json`.
    pub fn encode(&mut self, json: &str) -> Result<Frame, CompressError> {
        match self.compressed(json)? {
            Some(frame) => Ok(frame),
            None => Ok(Frame::Text(json.to_owned())),
        }
    }

    /// [`encode`](Self::encode), taking the payload: a text frame is the payload itself, with
    /// no copy.
    pub fn encode_owned(&mut self, json: String) -> Result<Frame, CompressError> {
        match self.compressed(&json)? {
            Some(frame) => Ok(frame),
            None => Ok(Frame::Text(json)),
        }
    }

    /// The compressed frame for `json`, or `None` when it goes as text.
    fn compressed(&mut self, json: &str) -> Result<Option<Frame>, CompressError> {
        if self.compression() != Compression::None {
            let mut bytes = Vec::new();
            self.compressor.compress(json.as_bytes(), &mut bytes)?;
            Ok(Some(Frame::Binary(bytes)))
        } else if self.payload_compression && json.len() >= PAYLOAD_COMPRESSION_MIN {
            Ok(Some(Frame::Binary(zlib_whole(json.as_bytes())?)))
        } else {
            Ok(None)
        }
    }
}

/// `json` as one complete zlib stream (payload compression).
fn zlib_whole(json: &[u8]) -> Result<Vec<u8>, flate2::CompressError> {
    let mut z = flate2::Compress::new(flate2::Compression::default(), true);
    let mut out = Vec::with_capacity(json.len() / 2 + 64);
    loop {
        let read = usize::try_from(z.total_in()).map_or(json.len(), |n| n.min(json.len()));
        if z.compress_vec(&json[read..], &mut out, flate2::FlushCompress::Finish)?
            == flate2::Status::StreamEnd
        {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_compression_only_without_transport_compression_and_for_large_payloads() {
        let mut plain = Encoder::new(Compression::None).unwrap();
        plain.set_payload_compression(true);
        assert!(matches!(plain.encode("{}").unwrap(), Frame::Text(_)));
        let large = format!(r#"{{"x":"{}"}}"#, "y".repeat(PAYLOAD_COMPRESSION_MIN));
        let Frame::Binary(bytes) = plain.encode(&large).unwrap() else {
            panic!("not compressed")
        };
        let mut z = flate2::read::ZlibDecoder::new(&bytes[..]);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut z, &mut text).unwrap();
        assert_eq!(text, large);
        let mut zlib = Encoder::new(Compression::ZlibStream).unwrap();
        zlib.set_payload_compression(true);
        assert!(!zlib.payload_compression());
    }
}
