//! The decoder against the compressor, over every way a stream can be cut into messages.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_codec::{Compression, Compressor, DecodeError, Decoder, Limits};
use gateway_model::OpCode;
use proptest::prelude::*;

/// What a payload should decode to.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    op: u64,
    seq: Option<u64>,
    name: Option<String>,
    data: Option<String>,
}

/// Any JSON value, as text.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        ".{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z_]{1,8}", inner), 0..8).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// A payload and its JSON text, keys in a random order, absent keys sometimes written as `null`.
fn payload() -> impl Strategy<Value = (Expected, String)> {
    (
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(7),
            Just(9),
            Just(10),
            Just(11),
            0u64..100
        ],
        proptest::option::of(any::<u64>()),
        proptest::option::of("[A-Z_]{1,20}"),
        proptest::option::of(json_value()),
        any::<[bool; 3]>(),
        Just(()).prop_perturb(|(), mut rng| {
            let mut order = [0usize, 1, 2, 3];
            for i in (1..4).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            order
        }),
    )
        .prop_map(|(op, seq, name, data, write_nulls, order)| {
            let data = data.filter(|d| d != "null");
            let fields = [
                Some(format!(r#""op":{op}"#)),
                match seq {
                    Some(s) => Some(format!(r#""s":{s}"#)),
                    None => write_nulls[0].then(|| r#""s":null"#.to_owned()),
                },
                match &name {
                    Some(t) => Some(format!(r#""t":"{t}""#)),
                    None => write_nulls[1].then(|| r#""t":null"#.to_owned()),
                },
                match &data {
                    Some(d) => Some(format!(r#""d":{d}"#)),
                    None => write_nulls[2].then(|| r#""d":null"#.to_owned()),
                },
            ];
            let body: Vec<String> = order.iter().filter_map(|&i| fields[i].clone()).collect();
            (
                Expected {
                    op,
                    seq,
                    name,
                    data,
                },
                format!("{{{}}}", body.join(",")),
            )
        })
}

/// Cuts `bytes` into messages at the given fractions.
fn split(bytes: &[u8], cuts: &[f64]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| (c * bytes.len() as f64) as usize)
        .collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

fn run(compression: Compression, payloads: &[(Expected, String)], cuts: &[Vec<f64>]) {
    let mut compressor = Compressor::new(compression).unwrap();
    let mut decoder = Decoder::new(compression).unwrap();
    for ((expected, json), cuts) in payloads.iter().zip(cuts.iter().cycle()) {
        let compressed = compressor.compress_to_vec(json.as_bytes()).unwrap();
        let messages = if compression == Compression::None {
            vec![compressed]
        } else {
            split(&compressed, cuts)
        };
        let mut got = None;
        for (i, message) in messages.iter().enumerate() {
            let out = decoder
                .push(message)
                .unwrap_or_else(|e| panic!("{e} on {json}"));
            if let Some(p) = out {
                assert_eq!(
                    i,
                    messages.len() - 1,
                    "payload complete before its last message: {json}"
                );
                got = Some(Expected {
                    op: p.op.value(),
                    seq: p.seq,
                    name: p.event_name.map(|n| n.into_owned()),
                    data: p.data.map(str::to_owned),
                });
            }
        }
        assert_eq!(got.as_ref(), Some(expected), "{json}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn zlib_stream_split_anywhere(
        payloads in proptest::collection::vec(payload(), 1..12),
        cuts in proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 0..5), 1..6),
    ) {
        run(Compression::ZlibStream, &payloads, &cuts);
    }

    #[test]
    fn zstd_stream_split_anywhere(
        payloads in proptest::collection::vec(payload(), 1..12),
        cuts in proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 0..5), 1..6),
    ) {
        run(Compression::ZstdStream, &payloads, &cuts);
    }

    #[test]
    fn uncompressed(payloads in proptest::collection::vec(payload(), 1..12)) {
        run(Compression::None, &payloads, &[vec![]]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_grow_past_the_limits(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2048), 1..24),
        suffix in any::<bool>(),
    ) {
        let limits = Limits { max_message_size: 16 * 1024, max_buffered_compressed: 8 * 1024, zstd_window_log_max: 18 };
        for compression in [Compression::None, Compression::ZlibStream, Compression::ZstdStream] {
            let mut decoder = Decoder::with_limits(compression, limits).unwrap();
            for mut m in messages.clone() {
                if suffix {
                    m.extend_from_slice(&[0, 0, 0xff, 0xff]);
                }
                if decoder.push(&m).is_err_and(|e| e.is_fatal()) {
                    decoder.reset().unwrap();
                }
                let bound = 2 * (limits.max_message_size + 1) + 2 * limits.max_buffered_compressed + 64 * 1024;
                prop_assert!(decoder.buffered_capacity() <= bound, "{} > {bound}", decoder.buffered_capacity());
            }
        }
    }

    #[test]
    fn the_zlib_suffix_straddling_two_messages(k in 1usize..4) {
        let mut c = Compressor::new(Compression::ZlibStream).unwrap();
        let mut d = Decoder::new(Compression::ZlibStream).unwrap();
        for _ in 0..3 {
            let bytes = c.compress_to_vec(br#"{"op":11}"#).unwrap();
            let (a, b) = bytes.split_at(bytes.len() - k);
            prop_assert!(d.push(a).unwrap().is_none());
            prop_assert_eq!(d.push(b).unwrap().unwrap().op, OpCode::HeartbeatAck);
        }
    }
}

fn hello() -> Vec<u8> {
    br#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["gateway-prd"]}}"#
        .to_vec()
}

#[test]
fn corrupt_streams_fail_then_decode_after_reset() {
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let mut c = Compressor::new(compression).unwrap();
        let mut d = Decoder::new(compression).unwrap();
        let mut bytes = c.compress_to_vec(&hello()).unwrap();
        // Break the stream after its header, keeping the zlib ending so the message is "complete".
        for b in &mut bytes[2..6] {
            *b ^= 0x5a;
        }
        let err = d.push(&bytes).unwrap_err();
        assert!(err.is_fatal(), "{compression}: {err}");
        assert!(matches!(d.push(b"{}"), Err(DecodeError::NeedsReset)));
        d.reset().unwrap();
        let mut fresh = Compressor::new(compression).unwrap();
        let ok = fresh.compress_to_vec(&hello()).unwrap();
        assert_eq!(
            d.push(&ok).unwrap().unwrap().op,
            OpCode::Hello,
            "{compression}"
        );
    }
}

#[test]
fn bad_json_loses_only_that_payload() {
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        let mut c = Compressor::new(compression).unwrap();
        let mut d = Decoder::new(compression).unwrap();
        // (A zstd message that does not end in `}` is read as the start of a split payload.)
        let array: &[u8] = if compression == Compression::ZstdStream {
            b"{}"
        } else {
            b"[1,2]"
        };
        for bad in [
            array,
            br#"{"op":"x"}"#,
            br#"{"op":1}}"#,
            br#"{"op":1,"s":-1}"#,
        ] {
            let msg = c.compress_to_vec(bad).unwrap();
            let err = d.push(&msg).unwrap_err();
            assert!(
                matches!(err, DecodeError::Json(_)) && !err.is_fatal(),
                "{compression}: {err}"
            );
        }
        let msg = c.compress_to_vec(&hello()).unwrap();
        assert_eq!(d.push(&msg).unwrap().unwrap().op, OpCode::Hello);
    }
}

#[test]
fn oversize_payloads_hit_the_limit() {
    let limits = Limits {
        max_message_size: 10_000,
        ..Limits::default()
    };
    let big = format!(r#"{{"op":0,"s":1,"t":"X","d":"{}"}}"#, "a".repeat(20_000));
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        let mut c = Compressor::new(compression).unwrap();
        let mut d = Decoder::with_limits(compression, limits).unwrap();
        let msg = c.compress_to_vec(big.as_bytes()).unwrap();
        assert!(
            matches!(
                d.push(&msg),
                Err(DecodeError::MessageTooLarge { limit: 10_000 })
            ),
            "{compression}"
        );
        // A payload of exactly the limit still fits.
        d.reset().unwrap();
        let mut c = Compressor::new(compression).unwrap();
        let exact = format!(
            r#"{{"op":0,"s":1,"t":"X","d":"{}"}}"#,
            "a".repeat(10_000 - 29)
        );
        assert_eq!(exact.len(), 10_000);
        let msg = c.compress_to_vec(exact.as_bytes()).unwrap();
        assert!(d.push(&msg).unwrap().is_some(), "{compression}");
    }
}

#[test]
fn compressed_bytes_without_an_ending_hit_their_limit() {
    let limits = Limits {
        max_buffered_compressed: 1000,
        ..Limits::default()
    };
    let mut d = Decoder::with_limits(Compression::ZlibStream, limits).unwrap();
    assert!(d.push(&[0x78; 600]).unwrap().is_none());
    assert!(matches!(
        d.push(&[0x78; 600]),
        Err(DecodeError::CompressedTooLarge { limit: 1000 })
    ));
}

#[test]
fn zstd_window_over_the_cap_is_an_error() {
    use zstd::stream::raw::{CParameter, Encoder, Operation, OutBuffer};
    let mut e = Encoder::new(3).unwrap();
    e.set_parameter(CParameter::WindowLog(24)).unwrap();
    let mut out = Vec::with_capacity(1024);
    let mut input = zstd::stream::raw::InBuffer::around(br#"{"op":11}"#);
    e.run(&mut input, &mut OutBuffer::around(&mut out)).unwrap();
    loop {
        let pos = out.len();
        if e.flush(&mut OutBuffer::around_pos(&mut out, pos)).unwrap() == 0 {
            break;
        }
    }
    let limits = Limits {
        zstd_window_log_max: 20,
        ..Limits::default()
    };
    let mut d = Decoder::with_limits(Compression::ZstdStream, limits).unwrap();
    assert!(matches!(d.push(&out), Err(DecodeError::Zstd(_))));
    let mut roomy = Decoder::with_limits(
        Compression::ZstdStream,
        Limits {
            zstd_window_log_max: 24,
            ..limits
        },
    )
    .unwrap();
    assert!(roomy.push(&out).unwrap().is_some());
}

#[test]
fn a_whole_session_in_one_stream_reuses_its_buffers() {
    let mut c = Compressor::new(Compression::ZlibStream).unwrap();
    let mut d = Decoder::new(Compression::ZlibStream).unwrap();
    let msg = format!(
        r#"{{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{{"content":"{}"}}}}"#,
        "x".repeat(2000)
    );
    for _ in 0..10 {
        let m = c.compress_to_vec(msg.as_bytes()).unwrap();
        d.push(&m).unwrap().unwrap();
    }
    let warm = d.buffered_capacity();
    for _ in 0..1000 {
        let m = c.compress_to_vec(msg.as_bytes()).unwrap();
        d.push(&m).unwrap().unwrap();
    }
    assert_eq!(d.buffered_capacity(), warm);
}

#[test]
fn invalid_d_is_caught_when_typed_or_at_decode_when_asked() {
    use gateway_model::{EventError, EventTypes, GatewayEvent};
    let bad = br#"{"t":"READY","s":1,"op":0,"d":{"session_id":]}}"#;
    let mut d = Decoder::new(Compression::None).unwrap();
    let payload = d.push(bad).unwrap().unwrap();
    // The sequence number is there even though `d` is broken…
    assert_eq!(payload.seq, Some(1));
    // …and typing it is a typed error.
    assert!(matches!(
        GatewayEvent::from_payload(&payload, EventTypes::all()),
        Err(EventError::InvalidData { .. })
    ));
    let mut strict = Decoder::new(Compression::None).unwrap();
    strict.set_validate_data(true);
    assert!(matches!(strict.push(bad), Err(DecodeError::Json(_))));
}

#[test]
fn a_burst_of_large_payloads_keeps_its_room_until_released() {
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let mut c = Compressor::new(compression).unwrap();
        let mut d = Decoder::new(compression).unwrap();
        let large = format!(
            r#"{{"op":0,"s":1,"t":"GUILD_CREATE","d":{{"members":"{}"}}}}"#,
            "member ".repeat(30_000)
        );
        let m = c.compress_to_vec(large.as_bytes()).unwrap();
        d.push(&m).unwrap().unwrap();
        let room = d.buffered_capacity();
        assert!(room >= large.len(), "{compression}");
        for _ in 0..5 {
            let m = c.compress_to_vec(large.as_bytes()).unwrap();
            d.push(&m).unwrap().unwrap();
            assert_eq!(
                d.buffered_capacity(),
                room,
                "{compression}: no regrowth in a burst"
            );
        }
        d.release();
        assert!(d.buffered_capacity() <= 16 * 1024, "{compression}");
        // The stream goes on after the release.
        let m = c.compress_to_vec(large.as_bytes()).unwrap();
        assert_eq!(d.push(&m).unwrap().unwrap().seq, Some(1));
    }
}
