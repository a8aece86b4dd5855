//! The faults a test asks of the next payload's frames: corruption (a broken JSON text, or four
//! flipped compressed bytes) and splits of compressed bytes over several messages.

use gateway_server::Frame;

use crate::SplitAt;

/// `frame` with `corrupt` and `split` applied (split points outside the bytes are ignored).
pub(crate) fn shape(frame: Frame, corrupt: bool, split: &[SplitAt]) -> Vec<Frame> {
    let mut bytes = match frame {
        Frame::Text(text) if corrupt => return vec![Frame::Text(format!("{{{text}"))],
        Frame::Text(text) => return vec![Frame::Text(text)],
        Frame::Binary(bytes) => bytes,
    };
    if corrupt && bytes.len() > 6 {
        for b in &mut bytes[2..6] {
            *b ^= 0x5a;
        }
    }
    let len = bytes.len();
    let mut points: Vec<usize> = split
        .iter()
        .filter_map(|p| match *p {
            SplitAt::FromStart(n) => Some(n),
            SplitAt::FromEnd(n) => len.checked_sub(n),
        })
        .filter(|&p| p > 0 && p < len)
        .collect();
    if points.is_empty() {
        return vec![Frame::Binary(bytes)];
    }
    points.sort_unstable();
    points.dedup();
    let mut start = 0;
    let mut messages = Vec::with_capacity(points.len() + 1);
    for end in points.into_iter().chain([len]) {
        messages.push(Frame::Binary(bytes[start..end].to_vec()));
        start = end;
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_the_bytes_once_in_order() {
        let bytes: Vec<u8> = (0..32).collect();
        let parts = shape(
            Frame::Binary(bytes.clone()),
            false,
            &[
                SplitAt::FromStart(2),
                SplitAt::FromEnd(2),
                SplitAt::FromStart(10_000),
            ],
        );
        assert_eq!(parts.len(), 3);
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|f| match f {
                Frame::Binary(b) => b.clone(),
                Frame::Text(t) => t.clone().into_bytes(),
            })
            .collect();
        assert_eq!(joined, bytes);
    }
}
