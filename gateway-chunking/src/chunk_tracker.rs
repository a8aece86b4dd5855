//! The async `ChunkTracker`: the core beside a shard group.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dashmap::DashMap;
use gateway_model::{RequestGuildMembers, RequestGuildMembersBuilder};
use gateway_shard::identify::BoxFuture;
use gateway_shard::{GroupEvents, ShardEvent, ShardGroup};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::{ChunkEvent, ChunkRequestFinished, TrackError, Tracker, TrackerConfig, TrackerOutput};

/// What a tracked group reports: every shard event, and the tracker's own.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackedEvent {
    /// A shard's event, passed through.
    Shard(u32, ShardEvent),
    /// A chunk tracker event.
    Chunk(ChunkEvent),
}

/// The tracked group's events, as a `Stream`.
#[derive(Debug)]
pub struct TrackedEvents {
    rx: mpsc::Receiver<TrackedEvent>,
}

impl TrackedEvents {
    /// The next event.
    pub async fn next(&mut self) -> Option<TrackedEvent> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for TrackedEvents {
    type Item = TrackedEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<TrackedEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// A request's result, once it finishes.
#[derive(Debug)]
pub struct ChunkRequestHandle {
    nonce: String,
    rx: oneshot::Receiver<ChunkRequestFinished>,
}

impl ChunkRequestHandle {
    /// The request's nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Waits for the request to finish; `None` if the tracker stopped first.
    pub async fn finished(self) -> Option<ChunkRequestFinished> {
        self.rx.await.ok()
    }
}

#[derive(Debug)]
struct Inner {
    core: Mutex<Tracker>,
    waiters: DashMap<String, oneshot::Sender<ChunkRequestFinished>>,
    wake: Notify,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Tracks member chunks for a [`ShardGroup`]; cheap to clone and use from many tasks.
#[derive(Debug, Clone)]
pub struct ChunkTracker {
    inner: Arc<Inner>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl ChunkTracker {
    /// Runs a tracker beside `group`, reading its events; every event comes out of the returned
    /// stream, the group's and the tracker's.
    pub fn spawn(
        group: Arc<ShardGroup>,
        events: GroupEvents,
        config: TrackerConfig,
    ) -> (Self, TrackedEvents) {
        let inner = Arc::new(Inner {
            core: Mutex::new(Tracker::new(config)),
            waiters: DashMap::new(),
            wake: Notify::new(),
        });
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(Arc::clone(&inner), group, events, tx));
        (Self { inner }, TrackedEvents { rx })
    }

    /// Requests guild members through the guild's shard, with a nonce of the tracker's, and
    /// tracks the answer. The handle resolves when the request finishes.
    pub fn request_guild_members(
        &self,
        request: RequestGuildMembersBuilder,
        guild: gateway_model::Snowflake,
    ) -> Result<ChunkRequestHandle, TrackError> {
        let (tx, rx) = oneshot::channel();
        let nonce = {
            // Registered under the core's lock, so the request cannot finish before its waiter exists.
            let mut core = self.inner.lock();
            let nonce = core.handle_request(now(), request, guild)?;
            self.inner.waiters.insert(nonce.clone(), tx);
            nonce
        };
        self.inner.wake.notify_one();
        Ok(ChunkRequestHandle { nonce, rx })
    }

    /// Turns automatic chunking of large guilds on or off.
    pub fn set_auto_chunk_members(&self, on: bool, chunk_presences: bool) {
        self.inner
            .lock()
            .set_auto_chunk_members(on, chunk_presences);
    }

    /// Requests open now.
    pub fn open_requests(&self) -> usize {
        self.inner.lock().open_requests()
    }
}

/// Shard events read ahead of the user, at most.
const AHEAD: usize = 1024;

async fn wait<T>(slot: &mut Option<BoxFuture<'static, T>>) -> T {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The tracker's driver: every wait (shard events, sending a request, handing an event to the
/// user, the core's timer, a new request) is a branch of one `select!`, so a slow user or a
/// busy shard never stalls the rest.
async fn run(
    inner: Arc<Inner>,
    group: Arc<ShardGroup>,
    mut events: GroupEvents,
    tx: mpsc::Sender<TrackedEvent>,
) {
    let mut outgoing: VecDeque<(u32, RequestGuildMembers)> = VecDeque::new();
    let mut sending: Option<BoxFuture<'static, (u32, Result<(), String>)>> = None;
    let mut delivering: VecDeque<TrackedEvent> = VecDeque::new();
    let mut reading = true;
    loop {
        {
            let mut core = inner.lock();
            while let Some(output) = core.poll_output(now()) {
                match output {
                    TrackerOutput::Send { shard, request } => outgoing.push_back((shard, request)),
                    TrackerOutput::Event(event) => {
                        #[cfg(feature = "metrics")]
                        if let ChunkEvent::RequestFinished(f) = &event {
                            let outcome = format!("{:?}", f.outcome).to_lowercase();
                            metrics::counter!("gateway_chunk_requests_total", "outcome" => outcome)
                                .increment(1);
                        }
                        if let ChunkEvent::RequestFinished(f) = &event
                            && let Some((_, waiter)) = inner.waiters.remove(&f.nonce)
                        {
                            // A handle that stopped waiting needs no answer.
                            drop(waiter.send(f.clone()));
                        }
                        delivering.push_back(TrackedEvent::Chunk(event));
                    }
                }
            }
        }
        if sending.is_none()
            && let Some((shard, request)) = outgoing.pop_front()
        {
            let group = Arc::clone(&group);
            sending = Some(Box::pin(async move {
                let sent = match group.shard(shard) {
                    Some(s) => s
                        .request_guild_members(request)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("no shard {shard} in the group")),
                };
                (shard, sent)
            }));
        }
        if !reading && delivering.is_empty() && sending.is_none() {
            break;
        }
        let deadline = inner.lock().poll_timeout();
        tokio::select! {
            event = events.next(), if reading && delivering.len() < AHEAD => match event {
                Some((shard, event)) => {
                    inner.lock().handle_shard_event(now(), shard, &event);
                    delivering.push_back(TrackedEvent::Shard(shard, event));
                }
                None => reading = false,
            },
            permit = tx.reserve(), if !delivering.is_empty() => match permit {
                Ok(permit) => {
                    if let Some(event) = delivering.pop_front() {
                        permit.send(event);
                    }
                }
                // The user dropped the events: nobody is left to track for.
                Err(_) => return,
            },
            (shard, sent) = wait(&mut sending) => {
                sending = None;
                if let Err(e) = sent {
                    // The request stays tracked and times out.
                    tracing::warn!(shard, error = %e, "member request not sent");
                }
            }
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            } => inner.lock().handle_timeout(now()),
            () = inner.wake.notified() => {}
        }
    }
}
