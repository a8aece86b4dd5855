//! One websocket's driver: the handshake, then frames from the client into the core and the
//! core's outputs for this connection onto the socket. The protocol itself is in `core`.

use std::sync::Arc;

use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use gateway_server::{Io, Replayed, Wire, Ws};

use crate::core::{Frame, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::shared::{Route, Shared, now};

/// Serves one websocket connection, from its handshake (due by `deadline`) until it ends.
pub(crate) async fn run(shared: Arc<Shared>, stream: Replayed, id: u64, deadline: Instant) {
    // Frames are refused from their header when over the limit, before they are buffered.
    let accepted =
        match gateway_server::accept(stream, shared.config.max_client_frame, deadline).await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(connection = id, error = %e, "websocket handshake failed");
                return;
            }
        };
    let (ws, query, user_agent) = (accepted.ws, accepted.query, accepted.user_agent);
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

/// Time the connection has to deliver what waits before its end (a drop, a close, the answer to
/// the client's close) once the core is done with it: a client that reads nothing cannot hold
/// the task.
const END_GRACE: Duration = Duration::from_secs(2);

/// Moves frames both ways until the core or the client ends the connection. Every wait is a
/// branch of the one `select!`; the socket is read while a write waits on a slow client.
async fn serve(
    shared: &Shared,
    ws: Ws,
    id: u64,
    mut rx: mpsc::UnboundedReceiver<Output>,
    pending: &AtomicUsize,
) {
    let mut wire = Wire::new(ws);
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            // What the core said is queued before the next frame is read: an input's answer (a
            // close, above all) is in the channel by the time its `update` returns.
            biased;
            output = rx.recv(), if !wire.is_ending() => {
                match output {
                    Some(Output::Frames { frames, .. }) => wire.send(frames),
                    Some(Output::Close { code, reason, .. }) => wire.end(Some(CloseFrame {
                        code: WsCloseCode::from(code),
                        reason: reason.into(),
                    })),
                    // What came before the drop still goes out, as it would have frame by frame.
                    Some(Output::Drop { .. }) => wire.end(None),
                    // The server gave up on this client (it left too much unread): let it go.
                    None => return,
                }
                if wire.is_ending() {
                    grace.as_mut().reset(Instant::from_std(now()) + END_GRACE);
                }
            }
            io = wire.io() => match io {
                Io::Taken(bytes) => {
                    pending.fetch_sub(bytes, Ordering::Relaxed);
                }
                Io::Ended => return,
                Io::Failed(e) => {
                    tracing::debug!(connection = id, error = %e, "send failed");
                    return;
                }
                Io::Received(message) => {
                    if !receive(shared, id, message) {
                        // The client closed: its close frame is answered (the websocket queued
                        // the answer, with the client's code) before the socket goes.
                        wire.end(None);
                        grace.as_mut().reset(Instant::from_std(now()) + END_GRACE);
                    }
                }
            },
            () = &mut grace => {
                tracing::debug!(connection = id, "the end of the connection not delivered in time");
                return;
            }
        }
    }
}

/// Feeds one message from the client to the core; false once the client closed or the stream
/// ended.
fn receive(shared: &Shared, id: u64, message: Option<Result<Message, WsError>>) -> bool {
    match message {
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
            return false;
        }
        Some(Ok(_)) => {}
        Some(Err(WsError::Capacity(e))) => {
            // The core answers with 4002; the close comes through the channel.
            shared.update(|d| d.core.handle_frame_refused(now(), id, e.to_string()));
        }
        Some(Err(e)) => {
            tracing::debug!(connection = id, error = %e, "connection lost");
            return false;
        }
        None => return false,
    }
    true
}
