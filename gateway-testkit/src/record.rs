//! What clients did, for assertions.

use std::time::Duration;

use gateway_model::{Command, ShardId};

/// A payload a client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A valid command.
    Command(Command),
    /// Something the server could not read as a command, with why.
    Invalid {
        /// The text sent (or a description, for binary messages).
        raw: String,
        /// What was wrong.
        reason: String,
    },
}

/// One received payload, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The connection it came on (numbered from 1 in accept order).
    pub connection: u64,
    /// Time since the server started (tokio time).
    pub at: Duration,
    /// What it was.
    pub received: Received,
}

impl Recorded {
    /// The command, if valid.
    pub fn command(&self) -> Option<&Command> {
        match &self.received {
            Received::Command(c) => Some(c),
            Received::Invalid { .. } => None,
        }
    }
}

/// A connection as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    /// Its number, from 1.
    pub id: u64,
    /// The compression its URL asked for.
    pub compression: gateway_codec::Compression,
    /// Its shard, once it identified or resumed.
    pub shard: Option<ShardId>,
    /// Its session, once it identified or resumed.
    pub session_id: Option<String>,
    /// Whether it is still open.
    pub open: bool,
    /// The close code the server sent, if it closed it.
    pub closed_with: Option<u16>,
    /// When it was accepted (time since the server started).
    pub accepted_at: Duration,
    /// When it closed (time since the server started), once it has.
    pub closed_at: Option<Duration>,
    /// The handshake's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// The code of the close frame the client sent, if it closed first (`Some(None)`: a close
    /// frame with no code).
    pub client_closed_with: Option<Option<u16>>,
    /// Why the server dropped it without a close frame, if it did.
    pub dropped: Option<DropReason>,
}

/// Why the server dropped a connection without a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// A test's [`Fault::Drop`](crate::Fault::Drop).
    Fault,
    /// The server restarted and forgot every session.
    Restart,
    /// The client read nothing while more than
    /// [`max_unread_bytes`](crate::GatewayConfig::max_unread_bytes) waited for it.
    NotReading {
        /// The bytes waiting when it was dropped.
        pending_bytes: usize,
    },
    /// The server could not compress for it (a bug of the testkit's, logged).
    Compression,
}

/// Counters (served as JSON at `GET /testkit/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Connections accepted (websocket handshakes completed).
    pub connections: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// IDENTIFYs received.
    pub identifies: u64,
    /// READYs sent.
    pub readies: u64,
    /// RESUMEs received.
    pub resumes: u64,
    /// RESUMEDs sent (successful resumes).
    pub resumed: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Member requests received.
    pub member_requests: u64,
    /// Dispatches sent, replays included.
    pub dispatches: u64,
}
