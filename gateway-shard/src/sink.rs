//! Where a driver hands its events: the shard's own channel ([`ShardEvents`](crate::ShardEvents)),
//! or its group's channel, tagged with the shard's number
//! ([`GroupEvents`](crate::GroupEvents)). A group's shards send to the group's channel directly:
//! no channel and no forwarding task per shard, and one hop instead of two per event.

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendError, TrySendError};

use crate::ShardEvent;

/// The sending side of the user's events.
#[derive(Debug, Clone)]
pub(crate) enum EventSink {
    /// One shard's channel.
    Shard(mpsc::Sender<ShardEvent>),
    /// A group's channel; events carry this shard's number.
    Group {
        shard: u32,
        tx: mpsc::Sender<(u32, ShardEvent)>,
    },
}

/// Room reserved in the channel for one event.
pub(crate) enum Permit<'a> {
    Shard(mpsc::Permit<'a, ShardEvent>),
    Group(u32, mpsc::Permit<'a, (u32, ShardEvent)>),
}

impl Permit<'_> {
    /// Sends `event` into the reserved room.
    pub(crate) fn send(self, event: ShardEvent) {
        match self {
            Self::Shard(p) => p.send(event),
            Self::Group(shard, p) => p.send((shard, event)),
        }
    }
}

impl EventSink {
    /// Sends now if there is room.
    pub(crate) fn try_send(&self, event: ShardEvent) -> Result<(), TrySendError<ShardEvent>> {
        match self {
            Self::Shard(tx) => tx.try_send(event),
            Self::Group { shard, tx } => tx.try_send((*shard, event)).map_err(|e| match e {
                TrySendError::Full((_, event)) => TrySendError::Full(event),
                TrySendError::Closed((_, event)) => TrySendError::Closed(event),
            }),
        }
    }

    /// Waits for room for one event (cancel-safe: the place in line is given up when dropped).
    pub(crate) async fn reserve(&self) -> Result<Permit<'_>, SendError<()>> {
        match self {
            Self::Shard(tx) => tx.reserve().await.map(Permit::Shard),
            Self::Group { shard, tx } => tx.reserve().await.map(|p| Permit::Group(*shard, p)),
        }
    }

    /// Whether the user dropped the receiver.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Shard(tx) => tx.is_closed(),
            Self::Group { tx, .. } => tx.is_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack() -> ShardEvent {
        ShardEvent::HeartbeatAck {
            latency: std::time::Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_group_sink_tags_events_and_reports_full_and_closed() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = EventSink::Group { shard: 7, tx };
        assert!(sink.try_send(ack()).is_ok());
        assert!(matches!(sink.try_send(ack()), Err(TrySendError::Full(_))));
        assert!(matches!(
            rx.recv().await,
            Some((7, ShardEvent::HeartbeatAck { .. }))
        ));
        sink.reserve().await.unwrap().send(ack());
        assert!(matches!(rx.recv().await, Some((7, _))));
        drop(rx);
        assert!(sink.is_closed());
        assert!(matches!(sink.try_send(ack()), Err(TrySendError::Closed(_))));
    }
}
