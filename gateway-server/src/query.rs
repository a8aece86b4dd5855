//! The websocket URL's query string, read as Discord reads it: `v=10`, `encoding=json`, and the
//! transport compression; anything else refused with Discord's close code.

use gateway_codec::Compression;
use gateway_model::CloseCode;

use crate::inbound::Rejection;

/// Reads the query string: the compression asked for, and the rejection that refuses the
/// connection, if any (the compression is read even then, for the connection's record).
pub fn parse_query(query: &str) -> (Compression, Option<Rejection>) {
    let mut version = None;
    let mut encoding = None;
    let mut compression = Compression::None;
    let mut reject = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "v" => version = Some(value.to_owned()),
            "encoding" => encoding = Some(value.to_owned()),
            "compress" => match Compression::from_query_value(value) {
                Some(c) => compression = c,
                None => {
                    reject = Some(Rejection::new(
                        CloseCode::DecodeError,
                        "query",
                        format!("compress={value} is not zlib-stream or zstd-stream"),
                    ));
                }
            },
            _ => {}
        }
    }
    if version.as_deref() != Some("10") {
        reject = Some(Rejection::new(
            CloseCode::InvalidApiVersion,
            "query",
            format!("v={} is not 10", version.as_deref().unwrap_or("(none)")),
        ));
    } else if let Some(e) = encoding.as_deref().filter(|e| *e != "json") {
        reject = Some(Rejection::new(
            CloseCode::DecodeError,
            "query",
            format!("encoding={e} is not json"),
        ));
    }
    (compression, reject)
}
