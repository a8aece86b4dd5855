//! The websocket handshake on a connection whose request head asked for one: frames bounded
//! from their header, a deadline for the whole handshake, and what the request said (its query
//! string, its `User-Agent`).

use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio::time::Instant;

use crate::head::Replayed;
use crate::wire::Ws;

/// An accepted websocket and what its request said.
#[derive(Debug)]
#[non_exhaustive]
pub struct Accepted {
    /// The websocket.
    pub ws: Ws,
    /// The request's query string (`v=10&encoding=json&compress=zlib-stream`), empty if none.
    pub query: String,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// Why a websocket handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The handshake itself failed (a bad request, the socket).
    #[error("websocket handshake: {0}")]
    Handshake(#[from] WsError),
    /// It did not finish by its deadline.
    #[error("websocket handshake timed out")]
    TimedOut,
}

/// The websocket read buffer per connection.
const READ_BUFFER: usize = 8 * 1024;

/// Accepts the websocket on `stream` by `deadline`. Frames and messages over `max_frame` bytes
/// are refused from their header, before they are buffered (the reader then yields
/// `WsError::Capacity`, for [`Connection::handle_frame_refused`](crate::Connection::handle_frame_refused)).
pub async fn accept(
    stream: Replayed,
    max_frame: usize,
    deadline: Instant,
) -> Result<Accepted, AcceptError> {
    let mut query = None;
    let mut user_agent = None;
    #[allow(clippy::result_large_err)] // the error type is tungstenite's callback signature
    let callback = |req: &Request, resp: Response| {
        query = Some(req.uri().query().unwrap_or("").to_owned());
        user_agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(resp)
    };
    let limit = max_frame.max(1);
    // tungstenite's 128 KiB read buffer is zeroed on every read it grows for (measured: 6% of
    // the proxy's CPU at 10,000 events/s), and clients send payloads of 4096 bytes at most.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_frame_size(Some(limit))
        .max_message_size(Some(limit));
    let handshake =
        async_tungstenite::tokio::accept_hdr_async_with_config(stream, callback, Some(ws_config));
    let ws = tokio::time::timeout_at(deadline, handshake)
        .await
        .map_err(|_| AcceptError::TimedOut)??;
    Ok(Accepted {
        ws,
        query: query.unwrap_or_default(),
        user_agent,
    })
}
