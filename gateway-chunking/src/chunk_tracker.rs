//! The async `ChunkTracker`: the core beside a shard group.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use gateway_model::{RequestGuildMembers, RequestGuildMembersBuilder};
use gateway_shard::drive::{Timer, now};
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

/// The core and the handles waiting on it, under one lock: a request's waiter is registered in
/// the same step that opens the request, so it cannot finish first.
#[derive(Debug)]
struct Locked {
    core: Tracker,
    waiters: HashMap<String, oneshot::Sender<ChunkRequestFinished>>,
}

#[derive(Debug)]
struct Inner {
    locked: Mutex<Locked>,
    wake: Notify,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Locked> {
        self.locked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Tracks member chunks for a [`ShardGroup`]; cheap to clone and use from many tasks.
#[derive(Debug, Clone)]
pub struct ChunkTracker {
    inner: Arc<Inner>,
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
            locked: Mutex::new(Locked {
                core: Tracker::new(config),
                waiters: HashMap::new(),
            }),
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
            let mut locked = self.inner.lock();
            let nonce = locked.core.handle_request(now(), request, guild)?;
            locked.waiters.insert(nonce.clone(), tx);
            nonce
        };
        self.inner.wake.notify_one();
        Ok(ChunkRequestHandle { nonce, rx })
    }

    /// Turns automatic chunking of large guilds on or off.
    pub fn set_auto_chunk_members(&self, on: bool, chunk_presences: bool) {
        self.inner
            .lock()
            .core
            .set_auto_chunk_members(on, chunk_presences);
    }

    /// Requests open now.
    pub fn open_requests(&self) -> usize {
        self.inner.lock().core.open_requests()
    }
}

/// Shard events read ahead of the user, at most.
const AHEAD: usize = 1024;

/// A member request on its way into its shard: the shard, the request's nonce, and how it went.
type Sending = BoxFuture<'static, (u32, Option<String>, Result<(), String>)>;

/// Member requests waiting to go, each shard's in order, at most one in flight per shard: a
/// shard slow to take one does not hold the others back.
#[derive(Default)]
struct Outgoing {
    queued: BTreeMap<u32, VecDeque<RequestGuildMembers>>,
    in_flight: BTreeSet<u32>,
    sending: FuturesUnordered<Sending>,
}

impl Outgoing {
    fn push(&mut self, shard: u32, request: RequestGuildMembers) {
        self.queued.entry(shard).or_default().push_back(request);
    }

    /// Starts the next request of every shard that has none in flight.
    fn start(&mut self, group: &Arc<ShardGroup>) {
        for (shard, queue) in &mut self.queued {
            if self.in_flight.contains(shard) {
                continue;
            }
            let Some(request) = queue.pop_front() else {
                continue;
            };
            self.in_flight.insert(*shard);
            let (group, shard) = (Arc::clone(group), *shard);
            let nonce = request.nonce().map(str::to_owned);
            self.sending.push(Box::pin(async move {
                let sent = match group.shard(shard) {
                    Some(s) => s
                        .request_guild_members(request)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("no shard {shard} in the group")),
                };
                (shard, nonce, sent)
            }));
        }
        self.queued.retain(|_, queue| !queue.is_empty());
    }

    /// One shard's request went (or failed): its next may go.
    fn sent(&mut self, shard: u32) {
        self.in_flight.remove(&shard);
    }

    fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.sending.is_empty()
    }
}

/// Drains the core: requests to send, events for the user (and the handles waiting on them).
fn drain(inner: &Inner, outgoing: &mut Outgoing, delivering: &mut VecDeque<TrackedEvent>) {
    let mut locked = inner.lock();
    let Locked { core, waiters } = &mut *locked;
    while let Some(output) = core.poll_output(now()) {
        match output {
            TrackerOutput::Send { shard, request } => outgoing.push(shard, request),
            TrackerOutput::Event(event) => {
                #[cfg(feature = "metrics")]
                if let ChunkEvent::RequestFinished(f) = &event {
                    let outcome = format!("{:?}", f.outcome).to_lowercase();
                    metrics::counter!("gateway_chunk_requests_total", "outcome" => outcome)
                        .increment(1);
                }
                if let ChunkEvent::RequestFinished(f) = &event
                    && let Some(waiter) = waiters.remove(&f.nonce)
                {
                    // A handle that stopped waiting needs no answer.
                    drop(waiter.send(f.clone()));
                }
                delivering.push_back(TrackedEvent::Chunk(event));
            }
        }
    }
}

/// The tracker's driver: every wait (shard events, sending requests, handing an event to the
/// user, the core's timer, a new request) is a branch of one `select!`, so a slow user or a
/// busy shard never stalls the rest.
async fn run(
    inner: Arc<Inner>,
    group: Arc<ShardGroup>,
    events: GroupEvents,
    tx: mpsc::Sender<TrackedEvent>,
) {
    drive(&inner, group, events, tx).await;
    // Nothing will finish the requests still open: their handles hear `None` now.
    inner.lock().waiters.clear();
}

async fn drive(
    inner: &Arc<Inner>,
    group: Arc<ShardGroup>,
    mut events: GroupEvents,
    tx: mpsc::Sender<TrackedEvent>,
) {
    let mut outgoing = Outgoing::default();
    let mut delivering: VecDeque<TrackedEvent> = VecDeque::new();
    let mut reading = true;
    let mut timer = Timer::new();
    loop {
        drain(inner, &mut outgoing, &mut delivering);
        outgoing.start(&group);
        if !reading && delivering.is_empty() && outgoing.is_idle() {
            break;
        }
        timer.set(inner.lock().core.poll_timeout());
        tokio::select! {
            event = events.next(), if reading && delivering.len() < AHEAD => match event {
                Some((shard, event)) => {
                    inner.lock().core.handle_shard_event(now(), shard, &event);
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
            Some((shard, nonce, sent)) = outgoing.sending.next(), if !outgoing.sending.is_empty() => {
                outgoing.sent(shard);
                if let Err(e) = sent {
                    tracing::warn!(shard, error = %e, "member request not sent");
                    if let Some(nonce) = nonce {
                        inner.lock().core.handle_send_failed(now(), &nonce);
                    }
                }
            }
            () = timer.fired(), if timer.is_set() => inner.lock().core.handle_timeout(now()),
            () = inner.wake.notified() => {}
        }
    }
}
