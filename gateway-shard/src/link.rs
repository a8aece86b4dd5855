//! The websocket under a shard's driver: opening it a few at a time within the handshake
//! timeout, moving frames into it and reading from it in one cancel-safe future, and closing it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use gateway_codec::{DecodeError, Decoder};

use crate::Session;
use crate::connect::{Socket, connect};
use crate::identify::BoxFuture;
use crate::outbox::SMALL_EVENT;

/// `Instant::now()` as tokio sees it, so that tests can pause the clock.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The steps of opening a websocket.
pub(crate) enum Opening {
    /// A handshake slot is ours (or none is needed): the attempt's clock starts now.
    Slot(Option<OwnedSemaphorePermit>),
    /// The websocket is open, or why not (boxed: a socket is large, and this is once per
    /// connection).
    Opened(Result<Box<Socket>, String>),
}

/// How to open a websocket.
pub(crate) struct Dialer {
    pub(crate) connect_limit: Option<Arc<Semaphore>>,
    pub(crate) proxy: Option<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_message: usize,
    /// The TLS connector when extra roots are trusted.
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
}

impl Dialer {
    /// Waits for a handshake slot, so that a group's mass reconnect goes a few at a time.
    pub(crate) fn slot(&self) -> BoxFuture<'static, Opening> {
        let limit = self.connect_limit.clone();
        Box::pin(async move {
            match limit {
                Some(limit) => match limit.acquire_owned().await {
                    Ok(permit) => Opening::Slot(Some(permit)),
                    Err(e) => Opening::Opened(Err(e.to_string())),
                },
                None => Opening::Slot(None),
            }
        })
    }

    /// Connects within the handshake timeout, holding the slot until the handshake ends.
    pub(crate) fn open(
        &self,
        url: String,
        slot: Option<OwnedSemaphorePermit>,
    ) -> BoxFuture<'static, Opening> {
        let proxy = self.proxy.clone();
        let (timeout, max_message) = (self.handshake_timeout, self.max_message);
        let tls = self.tls.clone();
        Box::pin(async move {
            let _slot = slot;
            let connecting = connect(&url, proxy.as_deref(), max_message, tls);
            Opening::Opened(match tokio::time::timeout(timeout, connecting).await {
                Ok(Ok(socket)) => Ok(Box::new(socket)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("websocket handshake timed out".to_owned()),
            })
        })
    }
}

/// Sends a close frame and waits (2 s at most) for the close to finish.
pub(crate) fn shut(mut socket: Socket, code: u16) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let frame = CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        match tokio::time::timeout(Duration::from_secs(2), socket.close(Some(frame))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "close frame not delivered"),
            Err(_) => tracing::debug!("close handshake timed out"),
        }
    })
}

/// What the socket did: a message came (or the stream ended), frames went out, or sending
/// failed.
pub(crate) enum Io {
    Received(Option<Result<Message, WsError>>),
    Sent,
    SendFailed(WsError),
}

/// An open websocket and the frames on their way into it.
pub(crate) struct Link {
    socket: Socket,
    /// Frames the session gave that the socket has not taken yet (bounded by the session's rate
    /// limit).
    outgoing: VecDeque<Message>,
    /// Whether the socket owes a flush.
    flushing: bool,
}

impl Link {
    pub(crate) fn new(socket: Socket) -> Self {
        Self {
            socket,
            outgoing: VecDeque::new(),
            flushing: false,
        }
    }

    /// Queues a text frame after those before it.
    pub(crate) fn send(&mut self, frame: String) {
        self.outgoing.push_back(Message::text(frame));
    }

    /// Whether [`io`](Self::io) has anything to do: reading, or frames to move or flush.
    pub(crate) fn busy(&self, reading: bool) -> bool {
        reading || self.flushing || !self.outgoing.is_empty()
    }

    /// The socket, for closing (frames not taken yet are lost with the connection).
    pub(crate) fn into_socket(self) -> Socket {
        self.socket
    }

    /// Moves pending frames into the socket and flushes them, and reads when `reading`.
    /// Reading and sending share the socket without splitting it. Cancel-safe: a frame stays in
    /// `outgoing` until the socket took it, and `flushing` says a flush is owed.
    pub(crate) async fn io(&mut self, reading: bool) -> Io {
        std::future::poll_fn(|cx| {
            while !self.outgoing.is_empty() {
                match self.socket.poll_ready_unpin(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(frame) = self.outgoing.pop_front() {
                            if let Err(e) = self.socket.start_send_unpin(frame) {
                                return Poll::Ready(Io::SendFailed(e));
                            }
                            self.flushing = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Io::SendFailed(e)),
                    Poll::Pending => break,
                }
            }
            if self.flushing {
                match self.socket.poll_flush_unpin(cx) {
                    Poll::Ready(Ok(())) => {
                        self.flushing = false;
                        return Poll::Ready(Io::Sent);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Io::SendFailed(e)),
                    Poll::Pending => {}
                }
            }
            if reading && let Poll::Ready(message) = self.socket.poll_next_unpin(cx) {
                return Poll::Ready(Io::Received(message));
            }
            Poll::Pending
        })
        .await
    }
}

/// Feeds what the socket did to the session; says whether the connection is still there.
pub(crate) fn receive(
    session: &mut Session,
    decoder: &mut Decoder,
    max_message: usize,
    io: Io,
    size: &mut usize,
) -> bool {
    let message = match io {
        Io::Sent => return true,
        Io::SendFailed(e) => {
            tracing::debug!(error = %e, "send failed");
            session.handle_closed(now(), None);
            return false;
        }
        Io::Received(message) => message,
    };
    match message {
        Some(Ok(Message::Text(text))) => *size = decode(session, decoder, text.as_bytes()),
        Some(Ok(Message::Binary(bytes))) => *size = decode(session, decoder, &bytes),
        Some(Ok(Message::Close(frame))) => {
            session.handle_closed(now(), frame.map(|f| u16::from(f.code)));
            return false;
        }
        Some(Ok(_)) => {}
        Some(Err(WsError::Capacity(e))) => {
            // The websocket refused a message over the limit before the decoder saw it: the same
            // as an oversize payload, which a resume would replay.
            tracing::debug!(error = %e, "message over the limit");
            let limit = max_message;
            session.handle_decode_error(now(), &DecodeError::MessageTooLarge { limit });
            return false;
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "connection lost");
            session.handle_closed(now(), None);
            return false;
        }
        None => {
            session.handle_closed(now(), None);
            return false;
        }
    }
    true
}

/// Feeds one websocket message to the session; returns what the event it yields, if any, is
/// counted as in the outbox (the payload's `d`).
fn decode(session: &mut Session, decoder: &mut Decoder, bytes: &[u8]) -> usize {
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    #[cfg(feature = "metrics")]
    metrics::counter!("gateway_bytes_received_total").increment(bytes.len() as u64);
    let size = match decoder.push(bytes) {
        Ok(Some(payload)) => {
            #[cfg(feature = "metrics")]
            {
                metrics::histogram!("gateway_decode_seconds")
                    .record(started.elapsed().as_secs_f64());
                let data = payload.data.map_or(0, str::len) as u64;
                metrics::counter!("gateway_data_bytes_decoded_total").increment(data);
            }
            let size = payload.data.map_or(0, str::len) + SMALL_EVENT;
            session.handle_payload(now(), &payload);
            size
        }
        Ok(None) => SMALL_EVENT,
        Err(e) => {
            session.handle_decode_error(now(), &e);
            SMALL_EVENT
        }
    };
    decoder.trim();
    size
}
