//! The little plain HTTP the probe needs outside twilight-http: the testkit's fault endpoints.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one fault request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` of a `http://host:port[/...]` base URL, as twilight-http's proxy setting wants it.
pub(crate) fn host_of(rest: &str) -> Result<String, String> {
    let rest = rest.trim();
    let without_scheme = rest
        .strip_prefix("http://")
        .ok_or_else(|| format!("--rest must start with http://, got {rest:?}"))?;
    let host = without_scheme.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("--rest has no host: {rest:?}"));
    }
    Ok(host.to_owned())
}

/// Sends `POST path` with an empty body to `host` and returns the response body when the status
/// is 2xx; otherwise an error naming the status and body.
pub(crate) async fn post(host: &str, path: &str) -> Result<String, String> {
    match tokio::time::timeout(TIMEOUT, post_inner(host, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!("POST {path}: no answer within {TIMEOUT:?}")),
    }
}

async fn post_inner(host: &str, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("POST {path}: cannot connect to {host}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("POST {path}: write failed: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| format!("POST {path}: read failed: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("POST {path}: not an HTTP response: {status_line:?}"))?;
    if (200..300).contains(&status) {
        Ok(body.trim().to_owned())
    } else {
        Err(format!("POST {path}: HTTP {status} {}", body.trim()))
    }
}
