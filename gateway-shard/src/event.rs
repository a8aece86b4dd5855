//! What a shard tells its user.

use std::time::Duration;

use gateway_model::{Dispatch, Ready};

/// What happens after a disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Reconnect and RESUME the session.
    Resume,
    /// Reconnect and IDENTIFY a new session.
    Reidentify,
    /// Stop: the shard is closed or hit a fatal error.
    Stop,
}

/// An event from a shard.
///
/// Order on connect: [`Connected`](Self::Connected) (HELLO received), then
/// [`Ready`](Self::Ready) or [`Resumed`](Self::Resumed) — after any replayed dispatches — then
/// dispatches. Every `Connected` is followed, when that connection ends, by exactly one
/// [`Disconnected`](Self::Disconnected) before the next `Connected`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ShardEvent {
    /// A connection is up and HELLO arrived.
    Connected {
        /// Whether the session will be resumed (else identified).
        resuming: bool,
    },
    /// READY: a new session.
    Ready(Box<Ready>),
    /// RESUMED: the session continues; `replayed` dispatches were replayed before it.
    Resumed {
        /// Dispatches received between RESUME and RESUMED.
        replayed: u64,
        /// RESUMED's own sequence number (it takes one, as dispatches do), or the last one
        /// received when it carried none.
        seq: u64,
    },
    /// A dispatch the filter lets through (READY and RESUMED come as their own events).
    Dispatch(Dispatch),
    /// A heartbeat was acknowledged.
    HeartbeatAck {
        /// Time from the heartbeat to its ACK.
        latency: Duration,
    },
    /// The websocket could not be opened (refused, timed out, or the handshake answered with an
    /// HTTP error); the shard tries again after `retry_in`.
    ConnectFailed {
        /// Why, as the transport said it.
        reason: String,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// Identifying is paused: the session start budget is down to its reserve (or spent). The
    /// connection closes, and the shard tries again after `retry_in`, when the budget resets.
    IdentifyPaused {
        /// Why.
        reason: String,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// The session ended with member requests still queued for it: they are dropped, and their
    /// nonces will not be answered (a `ChunkTracker` asks again by itself in the next session).
    MemberRequestsDropped {
        /// How many.
        count: usize,
    },
    /// The connection ended.
    Disconnected {
        /// The close code, if the gateway (or this shard) closed with one.
        code: Option<u16>,
        /// Why, in a few words.
        reason: String,
        /// What happens next.
        next: Reconnect,
    },
}

/// A dispatch whose `d` does not fit its type still took its sequence number, so a resume will not
/// replay it: the user gets it raw (as [`DispatchEvent::Other`](gateway_model::DispatchEvent))
/// rather than never. Only a payload without a name or sequence, or whose `d` is not JSON at all,
/// gives `None`, with the reason logged.
pub(crate) fn untyped(
    shard: gateway_model::ShardId,
    payload: &gateway_model::Payload<'_>,
    error: &gateway_model::EventError,
) -> Option<ShardEvent> {
    let shard = shard.number();
    let (Some(seq), Some(name)) = (payload.seq, payload.event_name.as_deref()) else {
        tracing::warn!(shard, %error, "undecodable payload ignored");
        return None;
    };
    match gateway_model::RawJson::from_string(payload.data.unwrap_or("null")) {
        Ok(data) => {
            tracing::warn!(shard, seq, event = name, %error, "dispatch does not fit its type: delivered raw");
            Some(ShardEvent::Dispatch(Dispatch {
                seq,
                event: gateway_model::DispatchEvent::Other(gateway_model::RawDispatch::new(
                    name, data,
                )),
            }))
        }
        Err(json) => {
            tracing::error!(shard, seq, event = name, error = %json, "dispatch is not JSON: resuming, so that the gateway replays it");
            None
        }
    }
}
