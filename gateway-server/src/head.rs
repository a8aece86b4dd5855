//! The first bytes of a connection: its HTTP request head, read whole and bounded, which tells a
//! websocket upgrade from a plain REST request on the same port.
//!
//! A websocket upgrade goes on to the websocket handshake through a [`Replayed`] stream that serves
//! the head again before the socket. On the way, a request line `GET ?v=10 HTTP/1.1` (sent by some
//! clients, tungstenite among them, given `ws://host:port?v=10`) becomes `GET /?v=10`: the HTTP
//! parser under the websocket server rejects the bare `?`, and Discord's edge accepts it. The
//! upgrade's query string picks the compression, or the close code that refuses it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The largest request head read; a longer one is refused (Discord's edge allows about as much).
pub const MAX_HEAD: usize = 16 * 1024;
/// The most headers parsed.
const MAX_HEADERS: usize = 64;

/// A request head, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ….
    pub method: String,
    /// The request target, with a `/` restored before a bare `?`.
    pub target: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// A header's value by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this asks for a websocket.
    pub fn is_websocket(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    /// The body length announced (0 when none is), or `None` when the header is not a number.
    pub fn content_length(&self) -> Option<usize> {
        match self.header("content-length") {
            None => Some(0),
            Some(v) => v.trim().parse().ok(),
        }
    }
}

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The socket failed or closed first.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// Longer than [`MAX_HEAD`].
    #[error("request head over {MAX_HEAD} bytes")]
    TooLong,
    /// Not HTTP.
    #[error("not an HTTP request: {0}")]
    Invalid(String),
    /// Not complete by its deadline.
    #[error("request head timed out")]
    TimedOut,
}

/// [`read_head`] by `deadline` (a server's handshake timeout): a socket that sends nothing, or
/// too slowly, gets [`HeadError::TimedOut`].
pub async fn read_head_by(
    tcp: &mut TcpStream,
    deadline: tokio::time::Instant,
) -> Result<(Head, Vec<u8>), HeadError> {
    tokio::time::timeout_at(deadline, read_head(tcp))
        .await
        .map_err(|_| HeadError::TimedOut)?
}

/// Reads a request head. Returns it and every byte read, the head's included, with the request
/// line's target fixed.
pub async fn read_head(tcp: &mut TcpStream) -> Result<(Head, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        buf.extend_from_slice(&chunk[..n]);
        fix_bare_query(&mut buf);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let head = Head {
                    method: request.method.unwrap_or_default().to_owned(),
                    target: request.path.unwrap_or_default().to_owned(),
                    headers: request
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                return Ok((head, buf));
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(HeadError::TooLong);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(HeadError::Invalid(e.to_string())),
        }
    }
}

/// `GET ?` becomes `GET /?` once the first five bytes are in.
fn fix_bare_query(buf: &mut Vec<u8>) {
    const BARE: &[u8] = b"GET ?";
    if buf.starts_with(BARE) {
        buf.insert(4, b'/');
    }
}

/// A TCP stream that first serves bytes already read from it.
#[derive(Debug)]
pub struct Replayed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Replayed {
    /// Serves `prefix`, then `inner`.
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Replayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_query_gets_its_slash() {
        let mut buf = b"GET ?v=10 HTTP/1.1\r\n".to_vec();
        fix_bare_query(&mut buf);
        assert!(buf.starts_with(b"GET /?v=10 "));
        let mut fine = b"GET /?v=10 HTTP/1.1\r\n".to_vec();
        fix_bare_query(&mut fine);
        assert!(fine.starts_with(b"GET /?v=10 "));
    }
}
