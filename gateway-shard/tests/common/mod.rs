//! What every loopback test of the shard checks, whatever else it asserts: the user's stream is
//! whole. The dispatches of a session arrive with no gap and no repeat across every resume, and a
//! new session is marked by READY (whose own sequence number is 1).

#![allow(dead_code, clippy::expect_used)]

use std::time::Duration;

use gateway_shard::{ShardEvent, ShardEvents};

/// Checks each event against the sequence it must follow.
#[derive(Debug, Default)]
pub(crate) struct Continuity {
    expected: Option<u64>,
    /// Dispatches seen.
    pub(crate) dispatches: u64,
    /// Sessions seen start (READYs).
    pub(crate) sessions: u64,
}

impl Continuity {
    /// Checks one event; panics on a gap or a repeat.
    pub(crate) fn see(&mut self, event: &ShardEvent, scenario: &str) {
        match event {
            ShardEvent::Ready(_) => {
                self.sessions += 1;
                self.expected = Some(2);
            }
            // RESUMED takes a sequence number of its own, as Discord's does.
            ShardEvent::Resumed { .. } => self.expected = self.expected.map(|e| e + 1),
            ShardEvent::Dispatch(d) => {
                // A shard that started by resuming another's session starts where it stood.
                let expected = self.expected.unwrap_or(d.seq);
                assert_eq!(
                    d.seq, expected,
                    "{scenario}: a gap or a repeat in the user's stream"
                );
                self.expected = Some(expected + 1);
                self.dispatches += 1;
            }
            _ => {}
        }
    }
}

/// A shard's events, each checked for continuity as it is read.
#[derive(Debug)]
pub(crate) struct Checked {
    events: ShardEvents,
    /// What has been seen.
    pub(crate) seen: Continuity,
    scenario: String,
}

impl Checked {
    /// Checks `events`; failures name `scenario`.
    pub(crate) fn new(events: ShardEvents, scenario: impl Into<String>) -> Self {
        Self {
            events,
            seen: Continuity::default(),
            scenario: scenario.into(),
        }
    }

    /// The next event, which must come (bounded on tokio's clock, which tests may pause).
    pub(crate) async fn next(&mut self) -> ShardEvent {
        let event = tokio::time::timeout(Duration::from_secs(3600), self.events.next())
            .await
            .expect("no event in time")
            .expect("events ended");
        self.seen.see(&event, &self.scenario);
        event
    }

    /// Reads events until one matches.
    pub(crate) async fn until(&mut self, mut want: impl FnMut(&ShardEvent) -> bool) -> ShardEvent {
        loop {
            let event = self.next().await;
            if want(&event) {
                return event;
            }
        }
    }

    /// Reads until `n` more dispatches came.
    pub(crate) async fn dispatches(&mut self, n: u64) {
        let before = self.seen.dispatches;
        while self.seen.dispatches < before + n {
            self.next().await;
        }
    }

    /// The events, unchecked from here on.
    pub(crate) fn into_inner(self) -> ShardEvents {
        self.events
    }
}

/// The `i` of a raw dispatch named `name` whose `d` starts `{"i":N,`: the number a test gave
/// each event of a backlog, to check every one arrives once and in order.
pub(crate) fn numbered(dispatch: &gateway_model::Dispatch, name: &str) -> Option<u64> {
    let gateway_model::DispatchEvent::Other(raw) = &dispatch.event else {
        return None;
    };
    if &*raw.name != name {
        return None;
    }
    let text = raw.data.get();
    text.strip_prefix("{\"i\":")?
        .split(',')
        .next()?
        .parse()
        .ok()
}
