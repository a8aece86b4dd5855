//! The decoder's output buffer: reused across payloads, grown on demand, given back when the
//! connection goes quiet.

/// Payloads are decompressed into one buffer, reused for every payload.
///
/// Memory policy: a payload larger than the buffer grows it (into spare capacity, without
/// zeroing: the decompressors write there directly), and the buffer keeps that size while
/// payloads keep coming, so a burst of large payloads (a bot starting up) allocates once.
/// [`Decoder::release`](crate::Decoder::release), called when the connection goes quiet, gives
/// back all but [`OutputBuffer::RETAIN`] (16 KiB), enough for nearly every message but a
/// GUILD_CREATE or a member chunk. So an idle shard holds no buffer sized for its largest payload,
/// and ordinary messages never allocate.
#[derive(Debug, Default)]
pub(crate) struct OutputBuffer {
    /// The current payload's bytes; its spare capacity is where the decompressors write.
    buf: Vec<u8>,
}

impl OutputBuffer {
    /// Capacity kept between payloads.
    pub(crate) const RETAIN: usize = 16 * 1024;
    /// The first allocation.
    const INITIAL: usize = 4 * 1024;

    pub(crate) fn filled(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn filled_len(&self) -> usize {
        self.buf.len()
    }

    /// For a large compressed input (from half of [`Self::RETAIN`] on), makes room at once for
    /// `input_len` times a typical inflation: one allocation instead of several doublings. A
    /// smaller input is left to the retained capacity, so ordinary messages allocate nothing.
    pub(crate) fn expect_from(&mut self, input_len: usize, max: usize) {
        /// What JSON typically inflates by from zlib-stream or zstd-stream.
        const INFLATION: usize = 8;
        if input_len >= Self::RETAIN / 2 {
            self.expect(input_len.saturating_mul(INFLATION), max);
        }
    }

    /// Makes room for about `hint` more bytes at once, within `max`.
    fn expect(&mut self, hint: usize, max: usize) {
        let hard = max.saturating_add(1);
        let want = self.buf.len().saturating_add(hint).min(hard);
        self.grow_to(want);
    }

    /// Grows the capacity to `want` bytes. An empty buffer is replaced rather than reallocated:
    /// `realloc` would copy its whole old capacity, holding nothing.
    fn grow_to(&mut self, want: usize) {
        if want <= self.buf.capacity() {
            return;
        }
        if self.buf.is_empty() {
            self.buf = Vec::new();
            self.buf.reserve_exact(want);
        } else {
            self.buf.reserve_exact(want - self.buf.len());
        }
    }

    /// The buffer, with spare capacity to write into (grown if none is left). Fails once the
    /// payload would pass `max` bytes.
    pub(crate) fn writable(&mut self, max: usize) -> Option<&mut Vec<u8>> {
        let len = self.buf.len();
        if len == self.buf.capacity() {
            // One byte over `max` is room to notice a payload that is too large.
            let hard = max.saturating_add(1);
            if len >= hard {
                return None;
            }
            let grown = (len * 2).max(Self::INITIAL).min(hard);
            self.grow_to(grown);
        }
        Some(&mut self.buf)
    }

    /// Ends the current payload.
    pub(crate) fn finish_payload(&mut self) {
        self.buf.clear();
    }

    /// Gives back what the buffer holds beyond [`Self::RETAIN`] (it must hold no payload).
    pub(crate) fn release(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > Self::RETAIN {
            self.buf.shrink_to(Self::RETAIN);
        }
    }

    /// Drops the current payload's bytes.
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
    }

    /// Bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` bytes as a decompressor does, into spare capacity; returns the most capacity
    /// the payload needed.
    fn write(b: &mut OutputBuffer, n: usize) -> usize {
        let mut most = 0;
        while b.filled_len() < n {
            let buf = b.writable(usize::MAX).unwrap();
            let k = (buf.capacity() - buf.len()).min(n - buf.len());
            buf.extend(std::iter::repeat_n(7u8, k));
            most = most.max(b.capacity());
        }
        assert_eq!(b.filled().len(), n);
        b.finish_payload();
        most
    }

    #[test]
    fn keeps_room_in_a_burst_and_gives_it_back_when_released() {
        let mut b = OutputBuffer::default();
        write(&mut b, 100_000);
        let room = b.capacity();
        assert!(room >= 100_000);
        for _ in 0..8 {
            write(&mut b, 100_000);
            assert_eq!(b.capacity(), room, "no allocation within a burst");
        }
        b.release();
        assert!(b.capacity() <= OutputBuffer::RETAIN);
        for _ in 0..50 {
            write(&mut b, 2_000);
            b.release();
            assert!(b.capacity() <= OutputBuffer::RETAIN);
        }
    }

    #[test]
    fn expect_reserves_at_once_within_max() {
        let mut b = OutputBuffer::default();
        b.expect_from(1_000, 1_000_000);
        assert_eq!(b.capacity(), 0, "a small input reserves nothing");
        b.expect_from(10_000, 1_000_000);
        assert!(b.capacity() >= 80_000);
        let mut b = OutputBuffer::default();
        b.expect(50_000, 1_000_000);
        assert!(b.capacity() >= 50_000);
        let mut b = OutputBuffer::default();
        b.expect(50_000, 1_000);
        assert_eq!(b.capacity(), 1_001);
    }

    #[test]
    fn refuses_past_max() {
        let mut b = OutputBuffer::default();
        while let Some(buf) = b.writable(100_000) {
            let k = buf.capacity() - buf.len();
            buf.extend(std::iter::repeat_n(0u8, k));
        }
        assert_eq!(b.filled_len(), 100_001);
    }
}
