//! The websocket under a shard's driver: opening it a few at a time within the handshake
//! timeout, moving frames into it and reading from it in one cancel-safe future, and closing it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_tungstenite::tungstenite::Bytes;
use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connect::{Socket, connect};
use crate::identify::BoxFuture;

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

/// A message read off the websocket, as the session takes it.
pub(crate) enum Received {
    /// A text or binary message's bytes (the websocket's own buffer, not a copy).
    Message(Bytes),
    /// A ping or pong (the websocket answers pings itself).
    Nothing,
    /// The websocket refused a message over its limit.
    TooLarge,
    /// The connection closed: with the gateway's close code, or without a close frame.
    Closed(Option<u16>),
}

impl From<Option<Result<Message, WsError>>> for Received {
    fn from(message: Option<Result<Message, WsError>>) -> Self {
        match message {
            Some(Ok(Message::Text(text))) => Self::Message(text.into()),
            Some(Ok(Message::Binary(bytes))) => Self::Message(bytes),
            Some(Ok(Message::Close(frame))) => Self::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => Self::Nothing,
            Some(Err(WsError::Capacity(e))) => {
                tracing::debug!(error = %e, "message over the limit");
                Self::TooLarge
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "connection lost");
                Self::Closed(None)
            }
            None => Self::Closed(None),
        }
    }
}
