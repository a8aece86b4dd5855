//! What the session asks of its driver: [`Output`], polled with [`Session::poll_output`].
//!
//! # The drain rule
//!
//! Every sans-IO state machine of the stack (the shard [`Session`], the identify schedule, the
//! member chunk tracker, the fake gateway's core) has the same shape, learned from str0m and
//! quinn-proto: inputs are `handle_*(now, ..)` methods, time always first; output is polled with
//! `poll_output(now)`; and `poll_timeout()` says when `handle_timeout(now)` is due. After every
//! input, the driver calls `poll_output` until it returns `None`, acts on each output in the order
//! given, then waits for the next input or for `poll_timeout`, whichever comes first. Nothing is
//! lost by draining late, but time-based outputs (heartbeats, rate-limited frames) are only
//! produced by a poll, and a timeout is only honoured by `handle_timeout`.
//!
//! [`Session`]: crate::Session

use crate::ShardEvent;

/// What the driver must do with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a websocket to this URL (query string included), then call
    /// [`Session::handle_connected`] or [`Session::handle_connect_failed`].
    Connect {
        /// The URL.
        url: String,
    },
    /// Close the connection with this code. The session already counts it as gone: events from
    /// it must not be fed back.
    Close {
        /// The close code (never 1000 or 1001 unless the session is meant to end).
        code: u16,
    },
    /// Wait for this shard's turn to identify, then call [`Session::handle_identify_permitted`]
    /// (or, if the queue refuses or fails, [`Session::handle_identify_refused`] or
    /// [`Session::handle_identify_failed`]).
    AwaitIdentify,
    /// The connection asked for with [`Action::Connect`] is given up on (its handshake took too
    /// long, or the session closed meanwhile): stop opening it, and drop it if it opens.
    CancelConnect,
    /// The wait for the identify turn is over without it (the connection that waited is gone):
    /// give the place in the queue up.
    CancelIdentify,
}

/// One thing the session asks of its driver, from [`Session::poll_output`](crate::Session::poll_output).
#[must_use = "the driver must act on every output"]
pub enum Output {
    /// Do this with the connection.
    Action(Action),
    /// Send this text frame on the open connection, after those before it. Frames come only
    /// while a connection is open and within the rate limit; a frame on its way when the
    /// connection is lost is lost with it.
    Transmit(String),
    /// Give this event to the user.
    Event {
        /// The event.
        event: ShardEvent,
        /// The bytes it is counted as while it waits for the user: its payload's `d`, plus a
        /// small fixed amount. A driver that bounds what waits counts this.
        cost: usize,
    },
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Action(action) => f.debug_tuple("Action").field(action).finish(),
            // An IDENTIFY or RESUME frame holds the token: only its size is shown.
            Self::Transmit(frame) => write!(f, "Transmit({} bytes)", frame.len()),
            Self::Event { event, cost } => f
                .debug_struct("Event")
                .field("event", event)
                .field("cost", cost)
                .finish(),
        }
    }
}
