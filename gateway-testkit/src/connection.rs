//! One websocket's driver: the handshake, then frames from the client into the core and the
//! core's outputs for this connection onto the socket. The protocol itself is in `core`.

use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::{Frame, Output};
use crate::handshake::Replayed;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::shared::{Route, Shared, now, output_bytes};

type Ws = WebSocketStream<TokioAdapter<Replayed>>;

/// Serves one websocket connection, from its handshake (due by `deadline`) until it ends.
pub(crate) async fn run(shared: Arc<Shared>, stream: Replayed, id: u64, deadline: Instant) {
    let mut uri = None;
    let mut user_agent = None;
    #[allow(clippy::result_large_err)] // the error type is tungstenite's callback signature
    let callback = |req: &Request, resp: Response| {
        uri = Some(req.uri().clone());
        user_agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(resp)
    };
    // Frames are refused from their header when over the limit, before they are buffered.
    let limit = shared.config.max_client_frame.max(1);
    let ws_config = WebSocketConfig::default()
        .max_frame_size(Some(limit))
        .max_message_size(Some(limit));
    let handshake =
        async_tungstenite::tokio::accept_hdr_async_with_config(stream, callback, Some(ws_config));
    let ws = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(connection = id, error = %e, "websocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(connection = id, "websocket handshake timed out");
            return;
        }
    };
    let query = uri
        .as_ref()
        .and_then(|u| u.query())
        .unwrap_or("")
        .to_owned();
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let route = Route {
        tx,
        pending: Arc::clone(&pending),
    };
    shared.update(|d| {
        d.routes.insert(id, route);
        d.core.handle_open(now(), id, &query, user_agent);
    });
    serve(&shared, ws, id, rx, &pending).await;
    shared.update(|d| {
        d.routes.remove(&id);
        d.core.handle_disconnected(now(), id);
    });
}

/// Moves frames both ways until the core or the client ends the connection.
async fn serve(
    shared: &Shared,
    mut ws: Ws,
    id: u64,
    mut rx: mpsc::UnboundedReceiver<Output>,
    pending: &AtomicUsize,
) {
    loop {
        tokio::select! {
            // What the core said goes out before the next frame is read: an input's answer (a
            // close, above all) is in the channel by the time its `update` returns.
            biased;
            output = rx.recv() => {
                let mut next = output;
                // Frames already waiting go out with one flush, up to a bound.
                let mut fed = 0usize;
                loop {
                    if let Some(o) = &next {
                        pending.fetch_sub(output_bytes(o), Ordering::Relaxed);
                    }
                    match next {
                        Some(Output::Frames { frames, .. }) => {
                            match feed(&mut ws, frames).await {
                                Ok(n) => fed += n,
                                Err(e) => {
                                    tracing::debug!(connection = id, error = %e, "send failed");
                                    return;
                                }
                            }
                        }
                        Some(Output::Close { code, reason, .. }) => {
                            let frame = CloseFrame {
                                code: WsCloseCode::from(code),
                                reason: reason.into(),
                            };
                            if let Err(e) = ws.close(Some(frame)).await {
                                tracing::debug!(connection = id, error = %e, "close frame not delivered");
                            }
                            return;
                        }
                        Some(Output::Drop { .. }) | None => {
                            // What came before the drop still goes out, as it would have
                            // frame by frame.
                            if fed > 0
                                && let Err(e) = ws.flush().await
                            {
                                tracing::debug!(connection = id, error = %e, "send failed");
                            }
                            return;
                        }
                    }
                    if fed >= FLUSH_BYTES {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(o) => next = Some(o),
                        Err(_) => break,
                    }
                }
                if let Err(e) = ws.flush().await {
                    tracing::debug!(connection = id, error = %e, "send failed");
                    return;
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(t))) => {
                    let frame = Frame::Text(t.to_string());
                    shared.update(|d| d.core.handle_frame(now(), id, frame));
                }
                Some(Ok(Message::Binary(b))) => {
                    let frame = Frame::Binary(b.to_vec());
                    shared.update(|d| d.core.handle_frame(now(), id, frame));
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    shared.update(|d| d.core.handle_close_frame(now(), id, code));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(WsError::Capacity(e))) => {
                    // The core answers with 4002; the close comes through the channel.
                    shared.update(|d| d.core.handle_frame_refused(now(), id, e.to_string()));
                }
                Some(Err(_)) | None => return,
            },
        }
    }
}

/// Bytes of frames fed before a flush, when more are waiting.
const FLUSH_BYTES: usize = 256 * 1024;

/// Feeds frames to the socket without flushing; returns their bytes.
async fn feed(ws: &mut Ws, frames: Vec<Frame>) -> Result<usize, WsError> {
    let mut bytes = 0;
    for frame in frames {
        let message = match frame {
            Frame::Text(t) => {
                bytes += t.len();
                Message::text(t)
            }
            Frame::Binary(b) => {
                bytes += b.len();
                Message::binary(b)
            }
        };
        ws.feed(message).await?;
    }
    Ok(bytes)
}
