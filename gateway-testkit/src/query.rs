//! The websocket URL's query string, read as Discord reads it: `v=10`, `encoding=json`, and the
//! transport compression; anything else refused with Discord's close code.

use gateway_codec::Compression;
use gateway_model::CloseCode;

/// Reads the query string: the compression asked for, or the close code that rejects it and why.
pub(crate) fn parse_query(query: &str) -> (Compression, Option<(u16, String)>) {
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
                    reject = Some((
                        CloseCode::DecodeError.as_u16(),
                        format!("compress={value} is not zlib-stream or zstd-stream"),
                    ));
                }
            },
            _ => {}
        }
    }
    if version.as_deref() != Some("10") {
        reject = Some((
            CloseCode::InvalidApiVersion.as_u16(),
            format!("v={} is not 10", version.as_deref().unwrap_or("(none)")),
        ));
    } else if let Some(e) = encoding.as_deref().filter(|e| *e != "json") {
        reject = Some((
            CloseCode::DecodeError.as_u16(),
            format!("encoding={e} is not json"),
        ));
    }
    (compression, reject)
}
