//! Events waiting for the user, counted in bytes: past the budget the driver stops reading the
//! socket (TCP pushes back on the gateway) until the user catches up.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::ShardEvent;
use crate::sink::EventSink;

/// Queue slots kept once the queue is empty.
const RETAIN: usize = 16;

/// Events not yet handed to the user, in order.
#[derive(Debug)]
pub(crate) struct Outbox {
    events: VecDeque<(ShardEvent, usize)>,
    bytes: usize,
    budget: usize,
    peak: usize,
}

impl Outbox {
    /// An outbox that asks to stop reading at `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            budget: budget.max(1),
            peak: 0,
        }
    }

    /// Queues an event counted as `size` bytes.
    pub(crate) fn push(&mut self, event: ShardEvent, size: usize) {
        self.bytes += size;
        self.peak = self.peak.max(self.bytes);
        self.events.push_back((event, size));
    }

    /// The oldest event.
    pub(crate) fn pop(&mut self) -> Option<ShardEvent> {
        let (event, size) = self.events.pop_front()?;
        self.bytes -= size;
        self.release_if_drained();
        Some(event)
    }

    /// Gives back the room a burst needed once it is delivered: a shard that is idle again holds
    /// no queue sized for its busiest moment.
    fn release_if_drained(&mut self) {
        if self.events.is_empty() && self.events.capacity() > RETAIN {
            self.events = VecDeque::new();
        }
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether the driver should stop reading the socket.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= self.budget
    }

    /// Bytes waiting now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The most bytes that ever waited.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// Hands over every event the channel has room for now, without waiting. When the user has
    /// dropped the receiver, the events have nobody to go to and are discarded.
    pub(crate) fn deliver_ready(&mut self, tx: &EventSink) {
        while let Some((event, size)) = self.events.pop_front() {
            match tx.try_send(event) {
                Ok(()) => {
                    self.bytes -= size;
                    self.release_if_drained();
                }
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.events.push_front((event, size));
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.events.clear();
                    self.bytes = 0;
                    return;
                }
            }
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

    #[test]
    fn counts_bytes_and_delivers_in_order_as_room_allows() {
        let (tx, mut rx) = mpsc::channel(2);
        let tx = EventSink::Shard(tx);
        let mut outbox = Outbox::new(100);
        for size in [40, 40, 40] {
            outbox.push(ack(), size);
        }
        assert!(outbox.is_full());
        outbox.deliver_ready(&tx);
        assert_eq!((outbox.bytes(), outbox.peak()), (40, 120));
        assert!(!outbox.is_full());
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
        outbox.deliver_ready(&tx);
        assert!(outbox.is_empty());
        drop(rx);
        outbox.push(ack(), 10);
        outbox.deliver_ready(&tx);
        assert!(outbox.is_empty(), "nobody listens: discarded");
    }
}
