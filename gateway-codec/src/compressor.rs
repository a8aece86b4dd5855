//! The server's side of transport compression, for fake gateways and tests.

use flate2::{Compress, FlushCompress};
use zstd::stream::raw::{CParameter, Encoder as ZstdEncoder, InBuffer, Operation, OutBuffer};

use crate::Compression;

/// Why compression failed (only a broken compression library makes it fail).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// zlib failed.
    #[error("zlib compression failed: {0}")]
    Zlib(#[from] flate2::CompressError),
    /// zstd failed.
    #[error("zstd compression failed: {0}")]
    Zstd(#[from] std::io::Error),
}

enum Stream {
    None,
    Zlib(Compress),
    Zstd(ZstdEncoder<'static>),
}

/// Compresses one connection's outbound payloads as Discord does: zlib-stream is one deflate
/// context per connection with every payload sync-flushed; zstd-stream is one stream whose frame
/// is flushed per payload and never ended.
pub struct Compressor {
    stream: Stream,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("compression", &self.compression())
            .finish()
    }
}

impl Compressor {
    /// zlib level 6 (Discord's frames carry the `78 9c` header that level 6 writes).
    pub const ZLIB_LEVEL: u32 = 6;
    /// zstd level 3, window 2^18 (Discord's frames declare a 256 KiB window).
    pub const ZSTD_LEVEL: i32 = 3;
    /// The zstd window, as a power of two.
    pub const ZSTD_WINDOW_LOG: u32 = 18;

    /// A compressor for a new connection.
    pub fn new(compression: Compression) -> Result<Self, CompressError> {
        Self::with_zlib_level(compression, Self::ZLIB_LEVEL)
    }

    /// A compressor whose zlib-stream deflates at `level` (0–9, clamped): 1 costs a server far
    /// less CPU per payload than Discord's 6, for somewhat larger frames.
    pub fn with_zlib_level(compression: Compression, level: u32) -> Result<Self, CompressError> {
        let stream = match compression {
            Compression::None => Stream::None,
            Compression::ZlibStream => {
                Stream::Zlib(Compress::new(flate2::Compression::new(level.min(9)), true))
            }
            Compression::ZstdStream => {
                let mut e = ZstdEncoder::new(Self::ZSTD_LEVEL)?;
                e.set_parameter(CParameter::WindowLog(Self::ZSTD_WINDOW_LOG))?;
                Stream::Zstd(e)
            }
        };
        Ok(Self { stream })
    }

    /// The compression used.
    pub fn compression(&self) -> Compression {
        match self.stream {
            Stream::None => Compression::None,
            Stream::Zlib(_) => Compression::ZlibStream,
            Stream::Zstd(_) => Compression::ZstdStream,
        }
    }

    /// Appends the compressed form of one payload to `out`: the bytes of its websocket message(s).
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        match &mut self.stream {
            Stream::None => out.extend_from_slice(payload),
            Stream::Zlib(z) => {
                // Room for the worst case up front: if a sync flush exactly filled the output,
                // zlib would answer the next call with a second, empty flush block.
                let mut input = payload;
                loop {
                    out.reserve(bound(input.len()));
                    let before = z.total_in();
                    let spare_before = out.capacity() - out.len();
                    let len_before = out.len();
                    z.compress_vec(input, out, FlushCompress::Sync)?;
                    input = &input[(z.total_in() - before) as usize..];
                    let written = out.len() - len_before;
                    if input.is_empty() && written < spare_before {
                        break;
                    }
                }
            }
            Stream::Zstd(z) => {
                let mut input = InBuffer::around(payload);
                loop {
                    out.reserve(bound(payload.len() - input.pos()));
                    let mut output = OutBuffer::around_pos(out, out.len());
                    z.run(&mut input, &mut output)?;
                    if input.pos() == payload.len() {
                        break;
                    }
                }
                loop {
                    out.reserve(64);
                    let mut output = OutBuffer::around_pos(out, out.len());
                    if z.flush(&mut output)? == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Compresses one payload into a new vector.
    pub fn compress_to_vec(&mut self, payload: &[u8]) -> Result<Vec<u8>, CompressError> {
        let mut out = Vec::with_capacity(bound(payload.len()));
        self.compress(payload, &mut out)?;
        Ok(out)
    }

    /// Starts a new stream for a new connection.
    pub fn reset(&mut self) -> Result<(), CompressError> {
        match &mut self.stream {
            Stream::None => {}
            Stream::Zlib(z) => z.reset(),
            Stream::Zstd(z) => z.reinit()?,
        }
        Ok(())
    }
}

/// More than zlib's and zstd's worst-case output for `len` input bytes, with their framing.
fn bound(len: usize) -> usize {
    len + len / 64 + 128
}
