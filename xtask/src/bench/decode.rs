//! Decode measurements: the codec alone, one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use flate2::{Decompress, FlushDecompress};
use gateway_codec::{Compression, Compressor, Decoder};
use gateway_model::{EventTypes, GatewayEvent};
use serde::Serialize;
use zstd::stream::raw::{Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use super::alloc;
use super::corpus::{Corpus, KINDS};

/// The corpus as one connection's websocket messages.
pub(crate) struct Stream {
    pub(crate) compression: Compression,
    pub(crate) frames: Vec<Vec<u8>>,
    pub(crate) compressed_bytes: usize,
}

pub(crate) fn compress(corpus: &Corpus, compression: Compression) -> Result<Stream, String> {
    let mut c = Compressor::new(compression).map_err(|e| e.to_string())?;
    let frames: Vec<Vec<u8>> = corpus
        .items
        .iter()
        .map(|i| {
            c.compress_to_vec(i.json.as_bytes())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let compressed_bytes = frames.iter().map(Vec::len).sum();
    Ok(Stream {
        compression,
        frames,
        compressed_bytes,
    })
}

/// The median of `passes` timed runs of `f` (after one warm-up run).
pub(crate) fn median(
    passes: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    f()?;
    let mut times = Vec::with_capacity(passes);
    for _ in 0..passes {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    Ok(middle(times))
}

/// The median of some timings.
pub(crate) fn middle(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Decodes one message, which must complete a payload.
fn decode_one(decoder: &mut Decoder, frame: &[u8]) -> Result<(), String> {
    let payload = decoder
        .push(frame)
        .map_err(|e| e.to_string())?
        .ok_or("incomplete payload")?;
    black_box(&payload);
    Ok(())
}

/// The medians of `passes` runs of `a` and of `b`, alternated so that a noisy neighbour weighs on
/// both alike (after one warm-up run each).
pub(crate) fn median_pair(
    passes: usize,
    mut a: impl FnMut() -> Result<(), String>,
    mut b: impl FnMut() -> Result<(), String>,
) -> Result<(Duration, Duration), String> {
    let times = medians_alternated(passes, &mut [&mut a, &mut b])?;
    Ok((times[0], times[1]))
}

/// The medians of `passes` runs of each of `runs`, alternated (after one warm-up run each).
pub(crate) fn medians_alternated(
    passes: usize,
    runs: &mut [&mut dyn FnMut() -> Result<(), String>],
) -> Result<Vec<Duration>, String> {
    for run in runs.iter_mut() {
        run()?;
    }
    let mut times = vec![Vec::with_capacity(passes); runs.len()];
    for _ in 0..passes {
        for (run, t) in runs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            run()?;
            t.push(start.elapsed());
        }
    }
    Ok(times.into_iter().map(middle).collect())
}

/// Decompress + envelope over the whole stream.
pub(crate) fn decode_pass(stream: &Stream) -> Result<(), String> {
    let mut d = Decoder::new(stream.compression).map_err(|e| e.to_string())?;
    stream.frames.iter().try_for_each(|f| decode_one(&mut d, f))
}

/// Decode, then type what `wanted` selects.
pub(crate) fn typed_pass(stream: &Stream, wanted: EventTypes) -> Result<(), String> {
    let mut d = Decoder::new(stream.compression).map_err(|e| e.to_string())?;
    for f in &stream.frames {
        let p = d
            .push(f)
            .map_err(|e| e.to_string())?
            .ok_or("incomplete payload")?;
        black_box(GatewayEvent::from_payload(&p, wanted).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// The same backend as the decoder, decompressing alone into one reused initialized buffer: the
/// baseline the decoder is measured against. zlib-stream inflates raw deflate after the 2-byte
/// header, without Adler-32, as the decoder does (the checksum is never compared mid-stream).
enum Raw {
    None,
    /// The inflater, and header bytes still to skip.
    Zlib(Decompress, usize),
    Zstd(ZstdDecoder<'static>),
}

impl Raw {
    fn new(compression: Compression) -> Result<Self, String> {
        Ok(match compression {
            Compression::None => Self::None,
            Compression::ZlibStream => Self::Zlib(Decompress::new(false), 2),
            Compression::ZstdStream => Self::Zstd(ZstdDecoder::new().map_err(|e| e.to_string())?),
        })
    }

    /// Decompresses one message (the buffer is larger than any payload).
    fn message(&mut self, frame: &[u8], out: &mut [u8]) -> Result<(), String> {
        match self {
            Self::None => {
                black_box(frame);
            }
            Self::Zlib(z, header) => {
                let skip = (*header).min(frame.len());
                *header -= skip;
                let mut input = &frame[skip..];
                loop {
                    let (i0, o0) = (z.total_in(), z.total_out());
                    z.decompress(input, out, FlushDecompress::Sync)
                        .map_err(|e| e.to_string())?;
                    input = &input[(z.total_in() - i0) as usize..];
                    if input.is_empty() && ((z.total_out() - o0) as usize) < out.len() {
                        break;
                    }
                }
            }
            Self::Zstd(z) => {
                let mut input = InBuffer::around(frame);
                loop {
                    let mut output = OutBuffer::around(&mut *out);
                    z.run(&mut input, &mut output).map_err(|e| e.to_string())?;
                    let written = output.pos();
                    if input.pos() == frame.len() && written < out.len() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Raw decompression of the whole stream.
pub(crate) fn raw_pass(stream: &Stream, out: &mut [u8]) -> Result<(), String> {
    let mut raw = Raw::new(stream.compression)?;
    for f in &stream.frames {
        raw.message(f, out)?;
    }
    Ok(())
}

/// µs per message by kind: one pass with a clock read around each message's `work`.
fn time_per_kind(
    stream: &Stream,
    corpus: &Corpus,
    mut work: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<Vec<(f64, usize)>, String> {
    let mut totals = vec![(Duration::ZERO, 0usize); KINDS.len()];
    for (f, item) in stream.frames.iter().zip(&corpus.items) {
        let start = Instant::now();
        work(f)?;
        totals[item.kind].0 += start.elapsed();
        totals[item.kind].1 += 1;
    }
    Ok(totals
        .into_iter()
        .map(|(t, n)| {
            (
                if n == 0 {
                    0.0
                } else {
                    t.as_secs_f64() * 1e6 / n as f64
                },
                n,
            )
        })
        .collect())
}

/// Decode µs per message by kind.
pub(crate) fn per_kind(stream: &Stream, corpus: &Corpus) -> Result<Vec<(f64, usize)>, String> {
    let mut d = Decoder::new(stream.compression).map_err(|e| e.to_string())?;
    time_per_kind(stream, corpus, |f| decode_one(&mut d, f))
}

/// Allocations per steady-state message once warm (startup decoded first, uncounted).
pub(crate) fn allocations_per_message(stream: &Stream, steady_from: usize) -> Result<f64, String> {
    let mut d = Decoder::new(stream.compression).map_err(|e| e.to_string())?;
    for f in &stream.frames[..steady_from] {
        black_box(d.push(f).map_err(|e| e.to_string())?);
    }
    let before = alloc::allocations();
    let steady = &stream.frames[steady_from..];
    for f in steady {
        black_box(d.push(f).map_err(|e| e.to_string())?);
    }
    Ok((alloc::allocations() - before) as f64 / steady.len().max(1) as f64)
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct SerdeJsonEnvelope<'a> {
    op: u8,
    s: Option<u64>,
    #[serde(borrow)]
    t: Option<&'a str>,
    #[serde(borrow)]
    d: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct SonicEnvelope<'a> {
    op: u8,
    s: Option<u64>,
    #[serde(borrow)]
    t: Option<&'a str>,
    #[serde(borrow)]
    d: Option<sonic_rs::LazyValue<'a>>,
}

/// Envelope scans compared on the uncompressed corpus: `(name, median time)`.
pub(crate) fn envelopes(
    corpus: &Corpus,
    passes: usize,
) -> Result<Vec<(&'static str, Duration)>, String> {
    let ours = median(passes, || {
        for i in &corpus.items {
            black_box(gateway_codec::scan_envelope(i.json.as_bytes()).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    let validating = median(passes, || {
        for i in &corpus.items {
            black_box(
                gateway_codec::scan_envelope_validating(i.json.as_bytes())
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(())
    })?;
    let serde_derive = median(passes, || {
        for i in &corpus.items {
            black_box(
                serde_json::from_str::<SerdeJsonEnvelope<'_>>(&i.json)
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(())
    })?;
    let sonic_lazy = median(passes, || {
        for i in &corpus.items {
            black_box(sonic_rs::from_str::<SonicEnvelope<'_>>(&i.json).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    let sonic_value = median(passes, || {
        for i in &corpus.items {
            black_box(sonic_rs::from_str::<sonic_rs::Value>(&i.json).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    Ok(vec![
        (
            "ours: Discord-order fast path, d unscanned (serde_json fallback)",
            ours,
        ),
        (
            "ours, validating: serde_json visitor, borrowed RawValue d",
            validating,
        ),
        ("serde_json derive, borrowed RawValue d", serde_derive),
        ("sonic-rs derive, LazyValue d", sonic_lazy),
        ("sonic-rs full Value (DOM)", sonic_value),
    ])
}

/// One compression's figures.
#[derive(Debug, Serialize)]
pub(crate) struct CompressionReport {
    pub(crate) compression: String,
    pub(crate) messages: usize,
    pub(crate) json_bytes: usize,
    pub(crate) compressed_bytes: usize,
    pub(crate) decode_mb_s: f64,
    pub(crate) decode_msg_s: f64,
    pub(crate) raw_decompress_mb_s: Option<f64>,
    pub(crate) decode_over_raw: Option<f64>,
    pub(crate) typed_stack_mb_s: f64,
    pub(crate) typed_all_mb_s: f64,
    pub(crate) allocations_per_message_warm: f64,
    pub(crate) per_kind_us: Vec<KindFigure>,
    pub(crate) message_create_decode_over_raw: Option<f64>,
}

/// µs per message for one kind.
#[derive(Debug, Serialize)]
pub(crate) struct KindFigure {
    pub(crate) kind: &'static str,
    pub(crate) count: usize,
    pub(crate) decode_us: f64,
    pub(crate) raw_us: Option<f64>,
}

/// Raw decompression µs per message by kind.
pub(crate) fn raw_per_kind(
    stream: &Stream,
    corpus: &Corpus,
    out: &mut [u8],
) -> Result<Vec<f64>, String> {
    let mut raw = Raw::new(stream.compression)?;
    Ok(time_per_kind(stream, corpus, |f| raw.message(f, out))?
        .into_iter()
        .map(|(us, _)| us)
        .collect())
}
