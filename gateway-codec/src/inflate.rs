//! The two stream decompressors, each driven with a whole message and the output buffer.

use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use crate::DecodeError;
use crate::buffer::OutputBuffer;

/// The marker a zlib sync flush ends with; Discord ends every zlib-stream payload with it.
pub(crate) const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// One zlib inflate context for a connection.
///
/// The stream's 2-byte zlib header is checked here and the rest inflated as raw deflate: zlib's
/// Adler-32 checksum is only compared when the stream ends, which a zlib-stream connection never
/// does, so computing it over every byte (about a tenth of inflating) buys nothing.
pub(crate) struct Zlib {
    inflate: Decompress,
    /// The header bytes seen so far (a message may end inside them).
    header: [u8; 2],
    header_len: usize,
}

impl Zlib {
    pub(crate) fn new() -> Self {
        Self {
            inflate: Decompress::new(false),
            header: [0; 2],
            header_len: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.inflate.reset(false);
        self.header_len = 0;
    }

    /// Takes what is left of the zlib header off the front of `input` and checks it: deflate
    /// (CM 8) with a window of at most 32 KiB, a valid check value, no preset dictionary.
    fn strip_header<'a>(&mut self, mut input: &'a [u8]) -> Result<&'a [u8], DecodeError> {
        while self.header_len < 2 {
            let Some((&byte, rest)) = input.split_first() else {
                return Ok(input);
            };
            self.header[self.header_len] = byte;
            self.header_len += 1;
            input = rest;
        }
        if self.header_len == 2 {
            let [cmf, flg] = self.header;
            let check = (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
            if cmf & 0x0f != 8 || cmf >> 4 > 7 || !check || flg & 0x20 != 0 {
                return Err(DecodeError::ZlibHeader(cmf, flg));
            }
            // Checked once per connection.
            self.header_len = 3;
        }
        Ok(input)
    }

    /// Inflates all of `input` onto the end of `out`.
    pub(crate) fn decompress(
        &mut self,
        mut input: &[u8],
        out: &mut OutputBuffer,
        max: usize,
    ) -> Result<(), DecodeError> {
        input = self.strip_header(input)?;
        if input.is_empty() {
            return Ok(());
        }
        out.expect_from(input.len(), max);
        loop {
            let buf = out
                .writable(max)
                .ok_or(DecodeError::MessageTooLarge { limit: max })?;
            let spare_len = buf.capacity() - buf.len();
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress_vec(input, buf, FlushDecompress::Sync)?;
            let read = (self.inflate.total_in() - in_before) as usize;
            let written = (self.inflate.total_out() - out_before) as usize;
            input = &input[read..];
            if out.filled_len() > max {
                return Err(DecodeError::MessageTooLarge { limit: max });
            }
            if status == Status::StreamEnd {
                return Err(DecodeError::ZlibStreamEnded);
            }
            // Done once every input byte is in and the output was not the limit.
            if input.is_empty() && written < spare_len {
                return Ok(());
            }
            if read == 0 && written == 0 {
                // No progress with room to write and input left: the stream cannot go on.
                return Err(DecodeError::ZlibStreamEnded);
            }
        }
    }
}

/// One zstd decompression stream for a connection.
pub(crate) struct Zstd {
    decoder: ZstdDecoder<'static>,
}

impl Zstd {
    pub(crate) fn new(window_log_max: u32) -> Result<Self, DecodeError> {
        let mut decoder = ZstdDecoder::new().map_err(DecodeError::Zstd)?;
        decoder
            .set_parameter(DParameter::WindowLogMax(window_log_max))
            .map_err(DecodeError::Zstd)?;
        Ok(Self { decoder })
    }

    pub(crate) fn reset(&mut self) -> Result<(), DecodeError> {
        self.decoder.reinit().map_err(DecodeError::Zstd)
    }

    /// Decompresses all of `input` onto the end of `out`. Returns whether the stream now stands
    /// at a block boundary, where a flushed payload ends (mid-block, more input is needed).
    pub(crate) fn decompress(
        &mut self,
        input: &[u8],
        out: &mut OutputBuffer,
        max: usize,
    ) -> Result<bool, DecodeError> {
        // At a block boundary zstd asks for the next block header (3 bytes), or for nothing if
        // the frame ended; mid-block it asks for the rest of the block.
        const BLOCK_HEADER: usize = 3;
        out.expect_from(input.len(), max);
        let mut input = InBuffer::around(input);
        loop {
            let buf = out
                .writable(max)
                .ok_or(DecodeError::MessageTooLarge { limit: max })?;
            let (len_before, spare_len) = (buf.len(), buf.capacity() - buf.len());
            let mut output = OutBuffer::around_pos(buf, len_before);
            let read_before = input.pos();
            let hint = self
                .decoder
                .run(&mut input, &mut output)
                .map_err(DecodeError::Zstd)?;
            let written = output.pos() - len_before;
            if out.filled_len() > max {
                return Err(DecodeError::MessageTooLarge { limit: max });
            }
            // zstd may hold decoded bytes back while the output is full: stop only when all input
            // is read and the output had room left.
            if input.pos() == input.src.len() && written < spare_len {
                return Ok(hint == BLOCK_HEADER || hint == 0);
            }
            if input.pos() == read_before && written == 0 {
                return Err(DecodeError::Zstd(std::io::Error::other(
                    "zstd made no progress",
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zlib_header_is_checked_even_when_split() {
        let mut zlib = Zlib::new();
        let mut out = OutputBuffer::default();
        // 0x78 0x9c: deflate, 32 KiB window, default level; then an empty stored block.
        zlib.decompress(&[0x78], &mut out, 1 << 20).unwrap();
        zlib.decompress(&[0x9c, 0x00, 0x00, 0x00, 0xff, 0xff], &mut out, 1 << 20)
            .unwrap();
        assert_eq!(out.filled_len(), 0);
        for bad in [[0x78, 0x9d], [0x79, 0x9c], [0x78, 0xbb]] {
            let mut zlib = Zlib::new();
            assert!(matches!(
                zlib.decompress(&bad, &mut out, 1 << 20),
                Err(DecodeError::ZlibHeader(..))
            ));
        }
    }
}
