//! The URL a client connects to.

use crate::{Compression, InvalidUrl};

/// The gateway API version this stack speaks.
pub const API_VERSION: u8 = 10;

/// Builds the connect URL from a gateway base URL (from `GET /gateway/bot`, or READY's
/// `resume_gateway_url`): `{base}/?v=10&encoding=json[&compress=…]` (the `/` only when `base` has
/// no path).
///
/// Any query or fragment already on `base` is replaced.
///
/// ```
/// use gateway_codec::{connect_url, Compression};
/// assert_eq!(
///     connect_url("wss://gateway.discord.gg", Compression::ZlibStream)?,
///     "wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"
/// );
/// assert_eq!(
///     connect_url("ws://127.0.0.1:4000/?v=9", Compression::None)?,
///     "ws://127.0.0.1:4000/?v=10&encoding=json"
/// );
/// # Ok::<(), gateway_codec::InvalidUrl>(())
/// ```
pub fn connect_url(base: &str, compression: Compression) -> Result<String, InvalidUrl> {
    let trimmed = base.trim();
    let rest = trimmed
        .strip_prefix("wss://")
        .or_else(|| trimmed.strip_prefix("ws://"))
        .ok_or_else(|| InvalidUrl(base.to_owned()))?;
    let end = trimmed.find(['?', '#']).unwrap_or(trimmed.len());
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_end == 0 {
        return Err(InvalidUrl(base.to_owned()));
    }
    let without_query = &trimmed[..end];
    let mut url = String::with_capacity(without_query.len() + 48);
    url.push_str(without_query);
    if !rest[host_end..].starts_with('/') {
        url.push('/');
    }
    url.push_str("?v=10&encoding=json");
    if let Some(value) = compression.query_value() {
        url.push_str("&compress=");
        url.push_str(value);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants() {
        let z = Compression::ZstdStream;
        assert_eq!(
            connect_url("wss://gateway-us-east1-b.discord.gg/", z).unwrap(),
            "wss://gateway-us-east1-b.discord.gg/?v=10&encoding=json&compress=zstd-stream"
        );
        assert_eq!(
            connect_url("ws://127.0.0.1:1/gw#x", Compression::None).unwrap(),
            "ws://127.0.0.1:1/gw?v=10&encoding=json"
        );
        assert!(connect_url("https://discord.com", z).is_err());
        assert!(connect_url("wss://", z).is_err());
        assert!(connect_url("wss:///path", z).is_err());
    }
}
