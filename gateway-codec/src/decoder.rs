//! The inbound decoder: websocket message bytes in, complete payloads out.

use gateway_model::Payload;

use crate::buffer::OutputBuffer;
use crate::inflate::{ZLIB_SUFFIX, Zlib, Zstd};
use crate::{Compression, DecodeError, Limits, envelope};

enum Stream {
    None,
    Zlib(Zlib),
    Zstd(Zstd),
}

/// Decodes one connection's inbound websocket messages into payloads.
///
/// Feed it the bytes of every text or binary message, in order, with [`Decoder::push`]; it answers
/// with a complete [`Payload`] borrowed from its own buffer (or from the message itself when
/// there is no compression), or `None` while a payload is still incomplete. Between connections,
/// call [`Decoder::reset`].
///
/// * zlib-stream: compressed bytes are buffered until they end with `00 00 ff ff` (even when
///   those four bytes straddle two messages), then inflated through the connection's one context.
/// * zstd-stream: each message is decompressed through the connection's one stream as it comes.
///   Discord sends one payload per message, each a flushed block; a payload split over several
///   messages is still decoded, because the stream says whether it stands at a block boundary.
/// * The envelope (`op`, `s`, `t`, and where `d` is) is read in one pass; Discord's key order takes
///   a fast path whose cost does not grow with `d` (see [`scan_envelope`](crate::scan_envelope)),
///   and [`Decoder::set_validate_data`] checks `d` too.
///
/// Once warm, decoding a payload allocates nothing: the output buffer and the compressed buffer
/// are reused until [`Decoder::release`] gives back what large payloads needed.
pub struct Decoder {
    compression: Compression,
    limits: Limits,
    stream: Stream,
    /// zlib-stream bytes of a payload not yet complete.
    pending: Vec<u8>,
    out: OutputBuffer,
    /// The last push returned a payload or an error: start the next one afresh.
    payload_done: bool,
    failed: bool,
    validate_data: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("compression", &self.compression)
            .field("limits", &self.limits)
            .field("pending", &self.pending.len())
            .field("buffered_output", &self.out.filled_len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Decoder {
    /// A decoder for a connection with this compression and the default limits.
    pub fn new(compression: Compression) -> Result<Self, DecodeError> {
        Self::with_limits(compression, Limits::default())
    }

    /// A decoder with explicit limits.
    pub fn with_limits(compression: Compression, limits: Limits) -> Result<Self, DecodeError> {
        let stream = match compression {
            Compression::None => Stream::None,
            Compression::ZlibStream => Stream::Zlib(Zlib::new()),
            Compression::ZstdStream => Stream::Zstd(Zstd::new(limits.zstd_window_log_max)?),
        };
        Ok(Self {
            compression,
            limits,
            stream,
            pending: Vec::new(),
            out: OutputBuffer::default(),
            payload_done: false,
            failed: false,
            validate_data: false,
        })
    }

    /// Whether every payload's `d` is checked to be valid JSON before [`push`](Self::push) returns
    /// it. Off by default: the envelope is always checked, and `d` is checked when it is parsed into
    /// a type (by [`GatewayEvent::from_payload`](gateway_model::GatewayEvent::from_payload) or
    /// [`RawDispatch::deserialize`](gateway_model::RawDispatch::deserialize)), so checking it here
    /// too would read every payload twice. On, decoding costs a full parse of each payload.
    pub fn set_validate_data(&mut self, validate: bool) {
        self.validate_data = validate;
    }

    /// The connection's compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Ends the last payload now instead of at the next [`push`](Self::push) (a shard calls this
    /// after handling each payload). The payload must no longer be borrowed, which the borrow
    /// checker ensures.
    pub fn trim(&mut self) {
        if std::mem::take(&mut self.payload_done) {
            self.out.finish_payload();
        }
    }

    /// Gives back the memory that large payloads needed: the output buffer returns to 16 KiB,
    /// and the buffer for payloads split over several messages is freed unless one is in
    /// progress. Call it when the connection goes quiet (a shard does after a second without a
    /// message): during a burst the room is kept, so back-to-back large payloads allocate once,
    /// and an idle connection holds no buffer sized for its largest payload. Ends the last
    /// payload first, as [`trim`](Self::trim) does.
    pub fn release(&mut self) {
        self.trim();
        self.out.release();
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// Bytes held in buffers, compressed and decompressed.
    pub fn buffered_capacity(&self) -> usize {
        self.pending.capacity() + self.out.capacity()
    }

    /// Makes the decoder ready for a new connection: fresh decompression context, buffers emptied
    /// (their memory kept), earlier errors forgotten.
    pub fn reset(&mut self) -> Result<(), DecodeError> {
        self.pending.clear();
        self.out.discard();
        self.payload_done = false;
        self.failed = false;
        match &mut self.stream {
            Stream::None => {}
            Stream::Zlib(z) => z.reset(),
            Stream::Zstd(z) => {
                if let Err(e) = z.reset() {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Feeds the bytes of one websocket message (text or binary).
    ///
    /// Returns the payload it completes, or `None` if more messages are needed. An error for which
    /// [`DecodeError::is_fatal`] holds leaves the decoder refusing input until [`Decoder::reset`].
    pub fn push<'a>(&'a mut self, message: &'a [u8]) -> Result<Option<Payload<'a>>, DecodeError> {
        if self.failed {
            return Err(DecodeError::NeedsReset);
        }
        if std::mem::take(&mut self.payload_done) {
            self.out.finish_payload();
        }
        let result = self.decompress(message);
        if let Err(e) = &result {
            self.failed = e.is_fatal();
            self.pending.clear();
            self.out.discard();
        }
        let json: &'a [u8] = match result? {
            Some(Input::Message) => message,
            Some(Input::Output) => self.out.filled(),
            None => return Ok(None),
        };
        let scanned = if self.validate_data {
            envelope::scan_validating(json)
        } else {
            envelope::scan(json)
        };
        match scanned {
            Ok(payload) => {
                self.payload_done = true;
                Ok(Some(payload))
            }
            // Compressed JSON that ends early is a payload split over several messages.
            Err(e) if e.is_eof() && !matches!(self.stream, Stream::None) => Ok(None),
            Err(e) => {
                self.payload_done = true;
                Err(e.into())
            }
        }
    }

    /// Runs the message through decompression; says where the JSON now is, if anywhere.
    fn decompress(&mut self, message: &[u8]) -> Result<Option<Input>, DecodeError> {
        let max = self.limits.max_message_size;
        match &mut self.stream {
            Stream::None => {
                if message.len() > max {
                    return Err(DecodeError::MessageTooLarge { limit: max });
                }
                Ok(Some(Input::Message))
            }
            Stream::Zlib(zlib) => {
                let max_pending = self.limits.max_buffered_compressed;
                if self.pending.is_empty() && message.ends_with(&ZLIB_SUFFIX) {
                    // The usual case: a whole payload in one message, inflated from it directly.
                    zlib.decompress(message, &mut self.out, max)?;
                    return Ok(Some(Input::Output));
                }
                if self.pending.len() + message.len() > max_pending {
                    return Err(DecodeError::CompressedTooLarge { limit: max_pending });
                }
                self.pending.extend_from_slice(message);
                if !self.pending.ends_with(&ZLIB_SUFFIX) {
                    return Ok(None);
                }
                let inflated = zlib.decompress(&self.pending, &mut self.out, max);
                self.pending.clear();
                inflated.map(|()| Some(Input::Output))
            }
            Stream::Zstd(zstd) => {
                let at_boundary = zstd.decompress(message, &mut self.out, max)?;
                if !at_boundary || self.out.filled_len() == 0 {
                    return Ok(None);
                }
                Ok(Some(Input::Output))
            }
        }
    }
}

/// Where a complete payload's JSON is.
enum Input {
    /// The message itself (no compression).
    Message,
    /// The output buffer.
    Output,
}
