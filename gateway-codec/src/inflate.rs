//! The two stream decompressors, each driven with a whole message and the output buffer.

use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use crate::DecodeError;
use crate::buffer::OutputBuffer;

/// The marker a zlib sync flush ends with; Discord ends every zlib-stream payload with it.
pub(crate) const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// One zlib inflate context for a connection.
pub(crate) struct Zlib {
    inflate: Decompress,
}

impl Zlib {
    pub(crate) fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }

    pub(crate) fn reset(&mut self) {
        self.inflate.reset(true);
    }

    /// Inflates all of `input` onto the end of `out`.
    pub(crate) fn decompress(
        &mut self,
        mut input: &[u8],
        out: &mut OutputBuffer,
        max: usize,
    ) -> Result<(), DecodeError> {
        // zlib-stream inflates about 5 to 10 times: room for that at once saves regrowths.
        out.expect(input.len().saturating_mul(8), max);
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
        out.expect(input.len().saturating_mul(8), max);
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
