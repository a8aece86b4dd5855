//! The node's driver: runs the [`NodeCore`] over Redis and tokio. It holds no rule of its own:
//! it does what the core outputs, feeds back what came of it, and waits on everything at once in
//! one `select!`. Redis work runs beside the loop, so that a slow Redis never delays a lease
//! deadline.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use gateway_model::ShardId;
use gateway_shard::RedisConnection;
use gateway_shard::drive::{Timer, now, wait};
use gateway_shard::identify::{BoxFuture, IdentifyQueue, RedisIdentifyQueue};
use gateway_shard::{Commander, ResumeInfo, Shard, ShardEvent};
use tokio::sync::{mpsc, oneshot, watch};

use super::NodeConfig;
use crate::core::{
    Acquired, NodeCore, NodeEvent, NodeOutput, Renewal, Renewed, UpkeepDone, UpkeepRequest,
};
use crate::entry::Entry;
use crate::error::ClusterError;
use crate::keys::Keys;
use crate::lease::Lease;
use crate::leases::Leases;
use crate::publish::{Publisher, Written};
use crate::sessions::SessionStore;

/// What woke the loop.
enum Wake {
    Timer,
    Shutdown,
    Upkeep(UpkeepDone),
    Saved(Vec<(u32, u64, bool)>),
    Wrote,
    Closed(u32, Option<ResumeInfo>),
    Flushed(Written),
    HandedOff,
    PublisherReady,
    Event(Option<(u32, ShardEvent)>),
    ReleaseNotice,
}

/// Everything the driver waits on, beside the core.
struct Driver {
    core: NodeCore,
    config: NodeConfig,
    leases: Leases,
    store: SessionStore,
    queue: Arc<RedisIdentifyQueue>,
    /// `None` once it is flushing.
    publisher: Option<Publisher>,
    shards: BTreeMap<u32, Shard>,
    /// The shards' one event channel; the driver's sender goes once every event must be read.
    events_tx: Option<mpsc::Sender<(u32, ShardEvent)>>,
    events: mpsc::Receiver<(u32, ShardEvent)>,
    /// Until every sender is gone (after a flush was asked): a closed channel is read once.
    events_open: bool,
    /// An entry the full publisher gave back; no event is read until it is taken.
    pending: Option<Entry>,
    /// The core asked for a flush: it starts once every shard's events are read.
    draining: bool,
    timer: Timer,
    upkeep: Option<BoxFuture<'static, UpkeepDone>>,
    saving: Option<BoxFuture<'static, Vec<(u32, u64, bool)>>>,
    closing: FuturesUnordered<BoxFuture<'static, (u32, Option<ResumeInfo>)>>,
    flushing: Option<BoxFuture<'static, Written>>,
    handing_off: Option<BoxFuture<'static, ()>>,
    tx: mpsc::UnboundedSender<NodeEvent>,
    /// Other nodes' releases (see `notice`), unless the node ignores them.
    notices: Option<mpsc::Receiver<()>>,
    /// The shards running, for the reader of their command streams (see `commands`).
    commanders: watch::Sender<BTreeMap<u32, Commander>>,
}

pub(super) async fn run(
    config: NodeConfig,
    connection: RedisConnection,
    queue: Arc<RedisIdentifyQueue>,
    mut stopped: oneshot::Receiver<()>,
    tx: mpsc::UnboundedSender<NodeEvent>,
) -> Result<(), ClusterError> {
    let keys = Keys::new(config.app.clone());
    let core = NodeCore::new(config.core(), now());
    let call_limit = core.config().call_limit();
    let leases = Leases::new(
        connection.clone(),
        keys.clone(),
        config.node.clone(),
        config.lease_ttl,
    );
    let store = SessionStore::new(connection.clone(), keys.clone(), call_limit);
    let notices = (config.release_notices)
        .then(|| super::notice::spawn(config.redis.clone(), keys.released()));
    let (commanders, held) = watch::channel(BTreeMap::new());
    super::commands::spawn(
        config.redis.clone(),
        keys.clone(),
        config.node.clone(),
        held,
    );
    let publisher = Publisher::spawn(connection, keys, config.publish);
    let (events_tx, events) = mpsc::channel(1024);
    let mut driver = Driver {
        core,
        config,
        leases,
        store,
        queue,
        publisher: Some(publisher),
        shards: BTreeMap::new(),
        events_tx: Some(events_tx),
        events,
        events_open: true,
        pending: None,
        draining: false,
        timer: Timer::new(),
        upkeep: None,
        saving: None,
        closing: FuturesUnordered::new(),
        flushing: None,
        handing_off: None,
        tx,
        notices,
        commanders,
    };
    let mut stopping = false;
    while driver.act() {
        driver.timer.set(driver.core.poll_timeout());
        let wake = driver.wake(&mut stopped, stopping).await;
        stopping |= matches!(wake, Wake::Shutdown);
        driver.handle(wake);
    }
    Ok(())
}

impl Driver {
    /// Waits for the next thing to happen. The timer comes first: a node that wakes late (a
    /// paused process) stops its overdue shards before it reads anything else.
    async fn wake(&mut self, stopped: &mut oneshot::Receiver<()>, stopping: bool) -> Wake {
        let publisher = self.publisher.as_ref();
        let reading = self.pending.is_none() && self.events_open;
        tokio::select! {
            biased;
            () = self.timer.fired() => Wake::Timer,
            // A dropped handle stops the node too.
            _ = stopped, if !stopping => Wake::Shutdown,
            done = wait(&mut self.upkeep) => Wake::Upkeep(done),
            saved = wait(&mut self.saving) => Wake::Saved(saved),
            Some((shard, session)) = self.closing.next(), if !self.closing.is_empty() => {
                Wake::Closed(shard, session)
            }
            written = wait(&mut self.flushing) => Wake::Flushed(written),
            () = wait(&mut self.handing_off) => Wake::HandedOff,
            () = wrote(publisher) => Wake::Wrote,
            () = ready(publisher), if self.pending.is_some() => Wake::PublisherReady,
            event = self.events.recv(), if reading => Wake::Event(event),
            Some(()) = notice(&mut self.notices) => Wake::ReleaseNotice,
        }
    }

    fn handle(&mut self, wake: Wake) {
        let now = now();
        match wake {
            Wake::Timer => self.core.handle_timeout(now),
            Wake::ReleaseNotice => self.core.handle_release_notice(now),
            Wake::Shutdown => self.core.handle_shutdown(now),
            Wake::Upkeep(done) => {
                self.upkeep = None;
                self.core.handle_upkeep(now, done);
            }
            Wake::Saved(saved) => {
                self.saving = None;
                self.core.handle_saved(now, saved);
            }
            Wake::Wrote => {
                let written = self.publisher.as_ref().map(Publisher::take_written);
                self.written(written.unwrap_or_default());
            }
            Wake::Closed(shard, session) => self.core.handle_closed(now, shard, session),
            Wake::Flushed(written) => {
                self.flushing = None;
                self.written(written);
                self.core.handle_flushed(now);
            }
            Wake::HandedOff => {
                self.handing_off = None;
                self.core.handle_handed_off(now);
            }
            Wake::PublisherReady => {
                if let Some(entry) = self.pending.take() {
                    self.publish(entry);
                }
            }
            Wake::Event(Some((shard, event))) => {
                crate::metrics::shard_event(shard, &event);
                self.core.handle_shard_event(now, shard, event);
            }
            // Every shard ended and dropped its sender, and so did the driver: all is read.
            Wake::Event(None) => {
                self.events_open = false;
                if self.draining && self.flushing.is_none() {
                    self.draining = false;
                    self.flushing = (self.publisher.take())
                        .map(|p| -> BoxFuture<'static, Written> { Box::pin(p.flush()) });
                }
            }
        }
    }

    fn written(&mut self, written: Written) {
        let now = now();
        for (shard, (session, seq)) in written {
            self.core.handle_written(now, shard, session, seq);
        }
    }

    /// Does everything the core asks; false once it stopped.
    fn act(&mut self) -> bool {
        let now = now();
        while let Some(output) = self.core.poll_output(now) {
            match output {
                NodeOutput::Upkeep(request) => self.upkeep = Some(self.upkeep(request)),
                NodeOutput::Start { lease, resuming } => self.start(&lease, resuming),
                NodeOutput::Stop { shard } => self.stop(shard),
                NodeOutput::Release(lease) => self.release(lease),
                NodeOutput::Save(saves) => self.saving = Some(self.save(saves)),
                NodeOutput::Publish(entry) => self.publish(entry),
                NodeOutput::Close(shards) => self.close(&shards),
                NodeOutput::Flush => {
                    self.draining = true;
                    self.events_tx = None;
                }
                NodeOutput::Handoff(handoff) => self.handing_off = Some(self.handoff(handoff)),
                NodeOutput::Event(event) => self.event(event),
                NodeOutput::Stopped => return false,
            }
        }
        true
    }

    fn event(&self, event: NodeEvent) {
        let change = match &event {
            NodeEvent::Took { .. } => Some("taken"),
            NodeEvent::Lost { .. } => Some("lost"),
            NodeEvent::Released { .. } => Some("released"),
            _ => None,
        };
        if let Some(change) = change {
            metrics::counter!("gateway_lease_changes_total", "change" => change).increment(1);
            metrics::gauge!("gateway_shards_held").set(self.core.held().count() as f64);
        }
        // The operator may not listen.
        drop(self.tx.send(event));
    }

    fn publish(&mut self, entry: Entry) {
        self.pending = match &self.publisher {
            Some(publisher) => publisher.try_publish(entry).err(),
            None => {
                tracing::error!(
                    shard = entry.shard,
                    "an entry after the flush; not published"
                );
                None
            }
        };
    }

    fn start(&mut self, lease: &Lease, resuming: Option<ResumeInfo>) {
        let id = lease.shard;
        match self.spawn_shard(id, resuming) {
            Ok(shard) => {
                self.shards.insert(id, shard);
                self.shards_changed();
            }
            Err(e) => self.core.handle_start_failed(now(), id, &e.to_string()),
        }
    }

    fn spawn_shard(&self, id: u32, resuming: Option<ResumeInfo>) -> Result<Shard, ClusterError> {
        let Some(events) = self.events_tx.clone() else {
            return Err(ClusterError::Stopped);
        };
        let shard_id = ShardId::new(id, self.config.total)
            .map_err(|e| gateway_shard::ShardError::Config(e.to_string()))?;
        let queue: Arc<dyn IdentifyQueue> = Arc::clone(&self.queue) as _;
        let mut shard_config = (self.config.shard.clone())
            .with_shard(shard_id)
            .with_identify_queue(queue, self.config.max_concurrency)
            .with_raw_dispatches(true);
        shard_config.resume = resuming;
        Ok(Shard::spawn_tagged(shard_config, events)?)
    }

    /// Stops a shard at once, still resumable by whoever takes it; nothing waits for it.
    fn stop(&mut self, shard: u32) {
        if let Some(shard) = self.shards.remove(&shard) {
            self.shards_changed();
            tokio::spawn(async move { shard.close(true).await });
        }
    }

    /// The shards running changed: their command streams are read for them.
    fn shards_changed(&self) {
        let commanders = self
            .shards
            .iter()
            .map(|(id, shard)| (*id, shard.commander()))
            .collect();
        self.commanders.send_replace(commanders);
    }

    fn close(&mut self, shards: &[u32]) {
        for &id in shards {
            let Some(shard) = self.shards.remove(&id) else {
                self.closing.push(Box::pin(async move { (id, None) }));
                continue;
            };
            self.closing
                .push(Box::pin(async move { (id, shard.close(true).await) }));
        }
        self.shards_changed();
    }

    fn release(&self, lease: Lease) {
        let leases = self.leases.clone();
        tokio::spawn(async move {
            if let Err(e) = leases.release(&lease).await {
                tracing::warn!(shard = lease.shard, error = %e, "lease not released; it expires");
            }
        });
    }

    /// Renews every lease asked (all at once), then takes free ones up to the room.
    fn upkeep(&self, request: UpkeepRequest) -> BoxFuture<'static, UpkeepDone> {
        let (leases, store) = (self.leases.clone(), self.store.clone());
        Box::pin(async move {
            let renewals = request.renew.into_iter().map(|mut lease| {
                let leases = leases.clone();
                async move {
                    let sent = now();
                    let outcome = match leases.renew(&mut lease).await {
                        Ok(true) => Renewed::Held,
                        Ok(false) => Renewed::Lost,
                        Err(e) => Renewed::Failed(e.to_string()),
                    };
                    let (shard, token) = (lease.shard, lease.token);
                    Renewal {
                        shard,
                        token,
                        sent,
                        outcome,
                    }
                }
            });
            let renewed = futures_util::future::join_all(renewals).await;
            let mut acquired = Vec::new();
            if request.room > 0 && !request.candidates.is_empty() {
                match leases.acquire_many(&request.candidates, request.room).await {
                    Ok(taken) => {
                        for lease in taken {
                            let session = store.load(lease.shard).await.map_err(|e| e.to_string());
                            acquired.push(Acquired { lease, session });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot take leases"),
                }
            }
            UpkeepDone { renewed, acquired }
        })
    }

    fn save(&self, saves: Vec<(Lease, ResumeInfo)>) -> BoxFuture<'static, Vec<(u32, u64, bool)>> {
        let store = self.store.clone();
        Box::pin(async move {
            let mut done = Vec::with_capacity(saves.len());
            for (lease, info) in saves {
                let stored = match store.save(&lease, &info).await {
                    Ok(true) => true,
                    Ok(false) => {
                        tracing::warn!(
                            shard = lease.shard,
                            "session not stored: the lease is another node's"
                        );
                        false
                    }
                    Err(e) => {
                        tracing::warn!(shard = lease.shard, error = %e, "session not stored");
                        false
                    }
                };
                done.push((lease.shard, info.sequence, stored));
            }
            done
        })
    }

    fn handoff(&self, handoff: Vec<(Lease, Option<ResumeInfo>)>) -> BoxFuture<'static, ()> {
        let (store, leases) = (self.store.clone(), self.leases.clone());
        Box::pin(async move {
            for (lease, session) in handoff {
                let id = lease.shard;
                if let Some(info) = &session
                    && let Err(e) = store.save(&lease, info).await
                {
                    tracing::warn!(shard = id, error = %e, "session not stored on shutdown");
                }
                if let Err(e) = leases.release_announced(&lease).await {
                    tracing::warn!(shard = id, error = %e, "lease not released; it expires");
                }
            }
        })
    }
}

/// The next release notice; never without a subscription.
async fn notice(notices: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match notices {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Until the publisher wrote more; never once it is flushing.
async fn wrote(publisher: Option<&Publisher>) {
    match publisher {
        Some(p) => p.wrote().await,
        None => std::future::pending().await,
    }
}

/// Until the publisher has room; never once it is flushing.
async fn ready(publisher: Option<&Publisher>) {
    match publisher {
        Some(p) => p.ready().await,
        None => std::future::pending().await,
    }
}
