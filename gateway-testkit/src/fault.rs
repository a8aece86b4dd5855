//! Faults a test injects on cue.

use std::time::Duration;

/// Something going wrong, on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Close the websocket with this code.
    Close(u16),
    /// Drop the TCP connection with no close frame.
    Drop,
    /// Stop acknowledging heartbeats (a zombied connection).
    Zombie,
    /// Send INVALID_SESSION with this `d`.
    InvalidSession {
        /// Whether the session may be resumed.
        resumable: bool,
    },
    /// Send RECONNECT (op 7).
    Reconnect,
    /// Send a heartbeat request (op 1); the client must answer at once.
    RequestHeartbeat,
    /// Split the next message's compressed bytes into several websocket messages at these points
    /// (points outside the message are ignored; [`SplitAt::FromEnd(2)`](SplitAt::FromEnd) cuts
    /// through zlib's `00 00 ff ff`).
    SplitNext(Vec<SplitAt>),
    /// Corrupt the next compressed message (a no-op without compression: the JSON is corrupted
    /// instead).
    CorruptNext,
    /// Lose the next this many dispatches: they take their sequence numbers and go into the
    /// session's resume buffer but never onto the wire, as if they died with a failing connection.
    /// Follow with [`Fault::Drop`] and a RESUME replays them.
    LoseNext(usize),
    /// Send a dispatch whose decompressed size is about this many bytes.
    Oversize(usize),
    /// On a connection not yet given HELLO (see
    /// [`FakeGateway::on_next_connection`](crate::FakeGateway::on_next_connection)): never send it.
    StallHello,
    /// Send RECONNECT before HELLO, then close (only through `on_next_connection`).
    ReconnectBeforeHello,
    /// Never answer the next IDENTIFY with READY.
    StallReady,
    /// Replay the next RESUME's dispatches but never send RESUMED.
    StallResumed,
    /// Alter the answer to the next REQUEST_GUILD_MEMBERS.
    Chunks(ChunkFault),
}

/// A byte offset in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitAt {
    /// This many bytes from the start.
    FromStart(usize),
    /// This many bytes before the end.
    FromEnd(usize),
}

/// How the chunks answering one member request go wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkFault {
    /// Send none of them.
    DropAll,
    /// Leave out these chunk indices.
    Drop(Vec<u32>),
    /// Send these chunk indices this much later than the rest.
    Delay(Vec<u32>, Duration),
    /// Send the chunks last to first.
    Reverse,
    /// Send these chunk indices twice.
    Duplicate(Vec<u32>),
}

/// When an injected fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// At once.
    Now,
    /// Right after the dispatch with this sequence number was sent.
    AfterSeq(u64),
    /// This long after injection (tokio time: paused clocks apply).
    After(Duration),
}
