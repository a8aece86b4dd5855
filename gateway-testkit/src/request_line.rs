//! Some websocket clients (tungstenite among them, given `ws://host:port?v=10`) send the request
//! line `GET ?v=10 HTTP/1.1`, with no `/` before the `?`. The HTTP parser under the websocket
//! server rejects that target; Discord's edge accepts it. This stream puts the `/` back before the
//! handshake reads the line.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream whose first bytes may be replaced.
#[derive(Debug)]
pub(crate) struct FixedStream {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl FixedStream {
    /// Reads the start of the request line and, if it is `GET ?`, serves `GET /?` in its place.
    pub(crate) async fn new(inner: TcpStream) -> io::Result<Self> {
        const BARE: &[u8] = b"GET ?";
        let mut peeked = [0u8; 5];
        let mut seen = 0;
        // The request line arrives in one segment in practice; wait for its first five bytes.
        for _ in 0..1000 {
            seen = inner.peek(&mut peeked).await?;
            if seen >= BARE.len() || seen == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let mut stream = Self {
            prefix: Vec::new(),
            pos: 0,
            inner,
        };
        if seen >= BARE.len() && peeked == *BARE {
            let mut consumed = [0u8; 5];
            tokio::io::AsyncReadExt::read_exact(&mut stream.inner, &mut consumed).await?;
            stream.prefix = b"GET /?".to_vec();
        }
        Ok(stream)
    }
}

impl AsyncRead for FixedStream {
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
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FixedStream {
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
