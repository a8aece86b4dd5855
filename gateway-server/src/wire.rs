//! One websocket under its connection task: frames on their way into the socket, and reading and
//! writing in one cancel-safe future, so that a client that reads slowly (TCP pushes back) is
//! still read: its heartbeats and commands reach the core on time, as they reach Discord.

use std::collections::VecDeque;
use std::task::Poll;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};

use crate::Frame;
use crate::head::Replayed;

/// The websocket as the server holds it.
pub type Ws = WebSocketStream<TokioAdapter<Replayed>>;

/// What the socket did.
pub enum Io {
    /// A message came, or the stream ended (`None`).
    Received(Option<Result<Message, WsError>>),
    /// The socket took frames of this many bytes (not flushed yet, perhaps).
    Taken(usize),
    /// Everything queued before [`Wire::end`] was flushed: the connection is done.
    Ended,
    /// Writing failed.
    Failed(WsError),
}

/// An open websocket and the frames waiting to go into it.
pub struct Wire {
    ws: Ws,
    /// Messages the socket has not taken yet, with their payload bytes.
    outgoing: VecDeque<(Message, usize)>,
    /// Whether the socket owes a flush.
    flushing: bool,
    /// Nothing more is queued: once what waits is flushed, the connection ends.
    ending: bool,
}

impl Wire {
    /// Holds `ws`, with nothing queued.
    pub fn new(ws: Ws) -> Self {
        Self {
            ws,
            outgoing: VecDeque::new(),
            flushing: false,
            ending: false,
        }
    }

    /// Queues frames after those before them.
    pub fn send(&mut self, frames: Vec<Frame>) {
        if self.ending {
            return;
        }
        self.outgoing
            .extend(frames.into_iter().map(|frame| match frame {
                Frame::Text(t) => {
                    let bytes = t.len();
                    (Message::text(t), bytes)
                }
                Frame::Binary(b) => {
                    let bytes = b.len();
                    (Message::binary(b), bytes)
                }
            }));
    }

    /// Ends the connection after what is queued: with this close frame, or (`None`) by letting
    /// the socket go once it is flushed. An answer to the client's close frame, which the
    /// websocket queued itself, is flushed the same way.
    pub fn end(&mut self, close: Option<CloseFrame>) {
        if self.ending {
            return;
        }
        if let Some(frame) = close {
            self.outgoing.push_back((Message::Close(Some(frame)), 0));
        }
        // A close frame the websocket queued (its answer to the client's) goes with this flush.
        self.flushing = true;
        self.ending = true;
    }

    /// Frames queued that the socket has not taken yet.
    pub fn queued(&self) -> usize {
        self.outgoing.len()
    }

    /// Forgets the frames the socket has not taken yet (a client too slow for them is closed
    /// without them); the bytes forgotten.
    pub fn discard(&mut self) -> usize {
        self.outgoing.drain(..).map(|(_, bytes)| bytes).sum()
    }

    /// Whether the connection is ending (no more reading, only flushing).
    pub fn is_ending(&self) -> bool {
        self.ending
    }

    /// Moves queued frames into the socket and flushes them, and reads while not ending.
    /// Cancel-safe: a frame stays queued until the socket took it, and `flushing` says a flush
    /// is owed.
    pub async fn io(&mut self) -> Io {
        std::future::poll_fn(|cx| {
            let mut taken = 0;
            while !self.outgoing.is_empty() {
                match self.ws.poll_ready_unpin(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some((message, bytes)) = self.outgoing.pop_front() {
                            if let Err(e) = self.ws.start_send_unpin(message) {
                                return Poll::Ready(Io::Failed(e));
                            }
                            taken += bytes;
                            self.flushing = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Io::Failed(e)),
                    Poll::Pending => break,
                }
            }
            if taken > 0 {
                return Poll::Ready(Io::Taken(taken));
            }
            if self.flushing {
                match self.ws.poll_flush_unpin(cx) {
                    Poll::Ready(Ok(())) => self.flushing = false,
                    // A close already sent or answered: nothing more goes out, as wanted.
                    Poll::Ready(Err(WsError::ConnectionClosed)) if self.ending => {
                        self.flushing = false;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Io::Failed(e)),
                    Poll::Pending => {}
                }
            }
            if self.ending {
                if !self.flushing && self.outgoing.is_empty() {
                    return Poll::Ready(Io::Ended);
                }
                return Poll::Pending;
            }
            if let Poll::Ready(message) = self.ws.poll_next_unpin(cx) {
                return Poll::Ready(Io::Received(message));
            }
            Poll::Pending
        })
        .await
    }
}
