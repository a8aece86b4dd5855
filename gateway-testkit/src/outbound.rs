//! What one payload becomes on the wire: a text frame, or compressed bytes in one or more binary
//! frames, with the faults a test asked for (corruption, splits) applied.

use gateway_codec::{CompressError, Compression, Compressor};

use crate::SplitAt;
use crate::frame::Frame;

/// The websocket messages that carry `json`.
///
/// Without compression it is one text frame (`corrupt` breaks its JSON). With transport
/// compression, or payload compression (`payload_compression`, a payload of
/// [`PAYLOAD_COMPRESSION_MIN`] bytes or more: one whole zlib stream), the bytes are cut at `split` (points outside the bytes are ignored), and `corrupt`
/// flips four of them.
pub(crate) fn frames(
    compressor: &mut Compressor,
    compression: Compression,
    json: &str,
    corrupt: bool,
    payload_compression: bool,
    split: &[SplitAt],
) -> Result<Vec<Frame>, CompressError> {
    let mut bytes = if compression != Compression::None {
        let mut bytes = Vec::new();
        compressor.compress(json.as_bytes(), &mut bytes)?;
        bytes
    } else if payload_compression && json.len() >= PAYLOAD_COMPRESSION_MIN {
        zlib_whole(json.as_bytes())?
    } else {
        let text = if corrupt {
            format!("{{{json}")
        } else {
            json.to_owned()
        };
        return Ok(vec![Frame::Text(text)]);
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
    points.sort_unstable();
    points.dedup();
    let mut start = 0;
    let mut messages = Vec::with_capacity(points.len() + 1);
    for end in points.into_iter().chain([len]) {
        messages.push(Frame::Binary(bytes[start..end].to_vec()));
        start = end;
    }
    Ok(messages)
}

/// Payloads at least this long are compressed when a client asked for payload compression;
/// shorter ones go as text, as Discord compresses only some (large) payloads.
pub(crate) const PAYLOAD_COMPRESSION_MIN: usize = 1024;

/// One complete zlib stream of `json` (header, final block, Adler-32), sharing no context with
/// anything before it: payload compression, as `compress: true` in IDENTIFY asks.
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
    fn splits_cover_the_bytes_once_in_order() {
        let mut compressor = Compressor::new(Compression::ZlibStream).unwrap();
        let json = r#"{"op":11,"d":null}"#;
        let whole = frames(
            &mut Compressor::new(Compression::ZlibStream).unwrap(),
            Compression::ZlibStream,
            json,
            false,
            false,
            &[],
        )
        .unwrap();
        let parts = frames(
            &mut compressor,
            Compression::ZlibStream,
            json,
            false,
            false,
            &[
                SplitAt::FromStart(2),
                SplitAt::FromEnd(2),
                SplitAt::FromStart(10_000),
            ],
        )
        .unwrap();
        assert_eq!(parts.len(), 3);
        let bytes = |f: &Frame| match f {
            Frame::Binary(b) => b.clone(),
            Frame::Text(t) => t.clone().into_bytes(),
        };
        let joined: Vec<u8> = parts.iter().flat_map(bytes).collect();
        assert_eq!(joined, bytes(&whole[0]));
    }
}
