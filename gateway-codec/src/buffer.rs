//! The decoder's output buffer: reused across payloads, grown on demand, shrunk back after outliers.

/// Payloads are decompressed into one buffer that is kept initialized (so growth is the only time
/// bytes are zeroed) and reused for every payload.
///
/// Shrink policy: the buffer tracks a moving average of payload sizes (each payload weighs 1/8).
/// When a payload ends and the buffer is over [`OutputBuffer::RETAIN`] (32 KiB) and over four
/// times that average, it is cut back to twice the average (at least `RETAIN`): before the next
/// payload, or as soon as the caller is done with it ([`Decoder::trim`](crate::Decoder::trim)). One
/// 4 MB GUILD_CREATE among 2 KB messages is thus freed at once, while a burst of large payloads
/// (a bot starting up) raises the average and keeps its room.
#[derive(Debug, Default)]
pub(crate) struct OutputBuffer {
    /// Initialized bytes; `buf.len()` is the capacity in use.
    buf: Vec<u8>,
    /// Bytes of the current payload.
    filled: usize,
    /// Moving average of payload sizes.
    average: usize,
}

impl OutputBuffer {
    /// Capacity always kept: larger than nearly every message but a GUILD_CREATE or a member
    /// chunk, small beside a connection's inflate window.
    pub(crate) const RETAIN: usize = 32 * 1024;
    /// The first allocation.
    const INITIAL: usize = 4 * 1024;

    pub(crate) fn filled(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    pub(crate) fn filled_len(&self) -> usize {
        self.filled
    }

    /// The writable tail, grown if empty. Fails once the payload would pass `max` bytes.
    pub(crate) fn spare(&mut self, max: usize) -> Option<&mut [u8]> {
        if self.filled == self.buf.len() {
            // One byte over `max` is room to notice a payload that is too large.
            let hard = max.saturating_add(1);
            if self.buf.len() >= hard {
                return None;
            }
            let grown = (self.buf.len() * 2).max(Self::INITIAL).min(hard);
            self.buf.resize(grown, 0);
        }
        Some(&mut self.buf[self.filled..])
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.filled += n;
    }

    /// Ends the current payload: records its size and applies the shrink policy.
    pub(crate) fn finish_payload(&mut self) {
        let size = self.filled;
        self.average = self.average - self.average / 8 + size / 8;
        self.filled = 0;
        let cap = self.buf.len();
        if cap > Self::RETAIN && cap / 4 > self.average {
            let keep = (self.average * 2).max(Self::RETAIN);
            self.buf.truncate(keep);
            self.buf.shrink_to_fit();
        }
    }

    /// Drops the current payload's bytes without counting it.
    pub(crate) fn discard(&mut self) {
        self.filled = 0;
    }

    /// Bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(b: &mut OutputBuffer, n: usize) {
        let mut left = n;
        while left > 0 {
            let spare = b.spare(usize::MAX).unwrap();
            let k = spare.len().min(left);
            b.advance(k);
            left -= k;
        }
        b.finish_payload();
    }

    #[test]
    fn shrinks_after_an_outlier_and_keeps_room_in_a_burst() {
        let mut b = OutputBuffer::default();
        for _ in 0..50 {
            write(&mut b, 2_000);
        }
        assert!(b.capacity() <= OutputBuffer::RETAIN);
        write(&mut b, 4_000_000);
        assert!(
            b.capacity() <= 2 * OutputBuffer::RETAIN.max(1_000_000),
            "{}",
            b.capacity()
        );
        for _ in 0..50 {
            write(&mut b, 2_000);
        }
        assert!(b.capacity() <= OutputBuffer::RETAIN);
        // A burst of large payloads keeps a buffer large enough for them.
        for _ in 0..20 {
            write(&mut b, 1_000_000);
        }
        assert!(b.capacity() >= 1_000_000);
    }

    #[test]
    fn refuses_past_max() {
        let mut b = OutputBuffer::default();
        let mut total = 0;
        while let Some(spare) = b.spare(100_000) {
            let n = spare.len();
            b.advance(n);
            total += n;
        }
        assert_eq!(total, 100_001);
    }
}
