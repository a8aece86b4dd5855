//! One client's websocket task: frames from the client to the proxy's loop, and the loop's
//! transmits onto the socket, reading and writing through one cancel-safe future (`Wire`), so a
//! client that reads slowly is still read.

use std::collections::VecDeque;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use gateway_server::{Frame, Io, Transmit, Wire, Ws};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ClientId;

/// What a connection task tells the loop.
#[derive(Debug)]
pub(crate) enum FromClient {
    /// A websocket opened with this query; transmits for it go to `tx`.
    Open {
        client: ClientId,
        query: String,
        tx: mpsc::UnboundedSender<ToClient>,
    },
    /// A frame.
    Frame(ClientId, Frame),
    /// The websocket refused a frame over its size limit.
    Refused(ClientId, String),
    /// The socket is gone, after the client's close frame (with its code) if it sent one.
    Gone(ClientId, Option<Option<u16>>),
    /// `POST /shards/{n}/reconnect`: op 7 to every client of shard `n`; how many.
    Reconnect(u32, tokio::sync::oneshot::Sender<usize>),
}

/// What the loop asks of a connection task.
#[derive(Debug)]
pub(crate) enum ToClient {
    /// Do this; the loop handed it over at this instant (for a live dispatch, within the
    /// loop's turn that read it from upstream; for one the send window held, when it was let go).
    Transmit(Transmit, Instant),
    /// Drop what waits and close with this code.
    Abort(u16),
}

/// The socket took `bytes` more: each transmit it took whole is timed from the loop handing it
/// over to the websocket taking it (`gateway_proxy_downstream_latency_seconds`: the proxy's own
/// delay towards its clients, kept apart from the upstream's heartbeat latency; time held back
/// by a full send window is not in it).
fn record_latency(in_flight: &mut VecDeque<(Instant, usize)>, mut bytes: usize) {
    let now = super::clock();
    while let Some((at, left)) = in_flight.front_mut() {
        if *left > bytes {
            *left -= bytes;
            return;
        }
        bytes -= *left;
        let waited = now.saturating_duration_since(*at);
        metrics::histogram!("gateway_proxy_downstream_latency_seconds")
            .record(waited.as_secs_f64());
        in_flight.pop_front();
    }
}

/// Time the connection has to deliver its end once the loop is done with it.
const END_GRACE: Duration = Duration::from_secs(2);

/// Bytes the socket takes between two reports to the loop, at most: a report per frame would
/// wake the loop once per dispatch per client (measured: `cargo xtask bench --only proxy`).
pub(crate) const REPORT_EVERY: usize = 32 * 1024;

/// Serves an accepted websocket until it ends. What the socket takes is reported on `sent`
/// once `report_every` bytes were taken (unbounded: at most one report per `report_every`
/// bytes the loop itself sent). The loop holds a client back only once a whole send window
/// is unreported, and `report_every` is at most a quarter of it, so what was taken and not
/// reported never holds a client back.
pub(crate) async fn serve(
    ws: Ws,
    client: ClientId,
    report_every: usize,
    query: String,
    to_loop: mpsc::Sender<FromClient>,
    sent: mpsc::UnboundedSender<(ClientId, usize)>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let open = FromClient::Open { client, query, tx };
    let mut taken = 0;
    if to_loop.send(open).await.is_err() {
        return;
    }
    let mut wire = Wire::new(ws);
    // Transmits handed to the wire and the bytes of each not taken yet (bounded by the core's
    // send window).
    let mut in_flight: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut closed_with = None;
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            biased;
            order = rx.recv(), if !wire.is_ending() => {
                match order {
                    Some(ToClient::Transmit(Transmit::Frames(frames), at)) => {
                        in_flight.push_back((at, frames.iter().map(Frame::len).sum()));
                        wire.send(frames);
                    }
                    Some(ToClient::Transmit(Transmit::Close { code, reason }, _)) => wire.end(Some(close(code, reason))),
                    Some(ToClient::Transmit(Transmit::Drop, _)) => wire.end(None),
                    Some(ToClient::Abort(code)) => {
                        let _forgotten = wire.discard();
                        wire.end(Some(close(code, "")));
                    }
                    None => break,
                }
                if wire.is_ending() {
                    grace.as_mut().reset(super::clock() + END_GRACE);
                }
            }
            io = wire.io() => match io {
                Io::Taken(bytes) => {
                    record_latency(&mut in_flight, bytes);
                    taken += bytes;
                    if taken >= report_every
                        && sent.send((client, std::mem::take(&mut taken))).is_err()
                    {
                        break;
                    }
                }
                Io::Ended => break,
                Io::Failed(e) => {
                    tracing::debug!(client, error = %e, "send failed");
                    break;
                }
                Io::Received(message) => {
                    if let Some(Ok(Message::Close(frame))) = &message {
                        closed_with = Some(frame.as_ref().map(|f| u16::from(f.code)));
                    }
                    if !receive(&to_loop, client, message) {
                        wire.end(None);
                        grace.as_mut().reset(super::clock() + END_GRACE);
                    }
                }
            },
            () = &mut grace => break,
        }
    }
    // The task's end: the loop hears of it even when the client's queue was full. A loop that
    // is gone (shutting down) has nobody to tell.
    if to_loop
        .send(FromClient::Gone(client, closed_with))
        .await
        .is_err()
    {
        tracing::debug!(client, "the proxy's loop is gone");
    }
}

fn close(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: WsCloseCode::from(code),
        reason: reason.to_owned().into(),
    }
}

/// Hands one message to the loop; false once the client closed, the stream ended, or the
/// client sends faster than the loop reads (its queue of 256 is full: no client within its
/// budget gets there).
fn receive(
    to_loop: &mpsc::Sender<FromClient>,
    client: ClientId,
    message: Option<Result<Message, WsError>>,
) -> bool {
    let event = match message {
        Some(Ok(Message::Text(t))) => FromClient::Frame(client, Frame::Text(t.to_string())),
        Some(Ok(Message::Binary(b))) => FromClient::Frame(client, Frame::Binary(b.to_vec())),
        Some(Ok(Message::Close(_))) => return false,
        Some(Ok(_)) => return true,
        Some(Err(WsError::Capacity(e))) => FromClient::Refused(client, e.to_string()),
        Some(Err(e)) => {
            tracing::debug!(client, error = %e, "connection lost");
            return false;
        }
        None => return false,
    };
    match to_loop.try_send(event) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(client, error = %e, "client floods the proxy: dropped");
            false
        }
    }
}
