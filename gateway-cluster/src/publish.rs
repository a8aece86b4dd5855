//! Event fan-out: every dispatch appended to its shard's Redis stream, trimmed by `MAXLEN ~`,
//! with the fields `t` (event name), `shard`, `session`, `seq` and `d` (the raw `d`, exactly as
//! the codec found it). READY (sequence 1) and RESUMED (with its own sequence number) are
//! published too, with `d` empty: a new session, and the point where a resume picked up.
//!
//! Entries wait in a bounded buffer and go out in pipelined batches. When the buffer is full
//! the node stops taking its shards' events ([`Publisher::try_publish`] gives the entry back),
//! so the shards' own event buffers fill and, past their byte budget, the shards stop reading
//! their sockets: TCP pushes back on Discord, heartbeats go on, and nothing is dropped. A batch
//! that Redis refuses is retried until it is written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_shard::RedisConnection;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::entry::Entry;
use crate::keys::Keys;

/// How events are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishConfig {
    /// Entries kept per stream (about: `MAXLEN ~`). Default 100,000.
    pub maxlen: usize,
    /// Entries that may wait to be written. Default 4096.
    pub buffer: usize,
    /// Entries per pipelined batch. Default 256.
    pub batch: usize,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            maxlen: 100_000,
            buffer: 4096,
            batch: 256,
        }
    }
}

/// The last entry written per shard since the last look: `(session, seq)`.
pub type Written = BTreeMap<u32, (Arc<str>, u64)>;

/// What the write loop shares with the handle: what it wrote since the handle last took it, and
/// a wake-up for the taker.
#[derive(Debug, Default)]
struct Progress {
    written: Mutex<Written>,
    notify: Notify,
}

/// A running publisher.
#[derive(Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Entry>,
    progress: Arc<Progress>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing to `keys`' streams.
    pub fn spawn(connection: RedisConnection, keys: Keys, config: PublishConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let progress = Arc::new(Progress::default());
        let task = tokio::spawn(write_loop(
            connection,
            keys,
            config,
            rx,
            Arc::clone(&progress),
        ));
        Self { tx, progress, task }
    }

    /// Queues `entry`, or gives it back when the buffer is full.
    #[allow(clippy::result_large_err)] // the entry itself comes back, to be offered again
    pub fn try_publish(&self, entry: Entry) -> Result<(), Entry> {
        match self.tx.try_send(entry) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) => {
                Err(e)
            }
        }
    }

    /// Waits until the buffer has room.
    pub async fn ready(&self) {
        if let Ok(permit) = self.tx.reserve().await {
            drop(permit);
        }
    }

    /// Waits until something more was written (cancel-safe).
    pub async fn wrote(&self) {
        self.progress.notify.notified().await;
    }

    /// The last `(session, seq)` written per shard since the last call.
    pub fn take_written(&self) -> Written {
        std::mem::take(&mut *lock(&self.progress.written))
    }

    /// Writes everything queued, then stops; what it wrote since the last
    /// [`take_written`](Self::take_written).
    pub async fn flush(self) -> Written {
        drop(self.tx);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the publisher task failed");
        }
        std::mem::take(&mut *lock(&self.progress.written))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn write_loop(
    mut connection: RedisConnection,
    keys: Keys,
    config: PublishConfig,
    mut rx: mpsc::Receiver<Entry>,
    progress: Arc<Progress>,
) {
    let mut batch = Vec::with_capacity(config.batch.max(1));
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < config.batch.max(1)
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        let mut pipe = redis::pipe();
        for e in &batch {
            pipe.cmd("XADD")
                .arg(keys.stream(e.shard))
                .arg("MAXLEN")
                .arg("~")
                .arg(config.maxlen)
                .arg("*")
                .arg("t")
                .arg(&*e.name)
                .arg("shard")
                .arg(e.shard)
                .arg("session")
                .arg(&*e.session)
                .arg("seq")
                .arg(e.seq)
                .arg("d")
                .arg(&*e.data)
                .ignore();
        }
        let mut wait = Duration::from_millis(50);
        loop {
            match pipe.query_async::<()>(&mut connection).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, entries = batch.len(), retry_in = ?wait, "publishing failed; retrying");
                    metrics::counter!("gateway_publish_retries_total").increment(1);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        metrics::counter!("gateway_published_total")
            .increment(u64::try_from(batch.len()).unwrap_or(u64::MAX));
        let mut last = lock(&progress.written);
        for e in batch.drain(..) {
            metrics::histogram!("gateway_publish_lag_seconds")
                .record(e.queued.elapsed().as_secs_f64());
            last.insert(e.shard, (e.session, e.seq));
        }
        drop(last);
        progress.notify.notify_one();
    }
}
