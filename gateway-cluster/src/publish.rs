//! Event fan-out: every dispatch appended to its shard's Redis stream, trimmed by `MAXLEN ~`,
//! with the fields `t` (event name), `shard`, `session`, `seq`, `fence` (the lease's fencing
//! token) and `d` (the raw `d`, exactly as the codec found it). The append is one script per
//! shard and batch (`APPEND`): it refuses a node that lost the shard, skips what the stream
//! has already (so a resume after a crash repeats nothing there), and numbers entries
//! contiguously. READY (sequence 1, its whole `d`) and RESUMED (its own sequence number, `d`
//! empty) are published too: a new session, and the point where a resume picked up. A READY also
//! becomes the shard's session start ([`Keys::ready`]), where a reader of the stream begins.
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

/// Appends one shard's entries to its stream, fenced and without repeats. The stream says where
/// it stands (`XINFO STREAM`): its last generated id (`ms-n`; `0-n` for a stream this script
/// began) and its last entry's `t`, `session`, `seq` and `fence`.
///
/// - Refused whole: entries under a lower fencing token than the last entry's (another node took
///   the shard since), or under a higher one than the shard's fencing counter holds (tokens from
///   before Redis lost its data: the counter starts again, and so must the tokens).
/// - Skipped: a run that holds the stream's last entry itself, up to it (a batch written whose
///   reply was lost, sent again); then, in the last entry's session, dispatches at or below its
///   `seq` and RESUMED below it (a resume's replay of what a node that died had published).
/// - The rest take the next ids, `ms-(n+1)`, `ms-(n+2)`…: positions contiguous per stream, kept
///   across handoffs and resumes.
///
/// A READY written also becomes the shard's session start (KEYS[3]: its id, session and `d`).
///
/// KEYS: stream, fencing counter, session start. ARGV: fence, maxlen, shard, then `t`, `session`, `seq`, `d` per
/// entry. Returns `{written, skipped}`, or `{-1, last fence}` when refused.
const APPEND: &str = r"
local fence = tonumber(ARGV[1])
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local ms, n = '0', 0
local last = {t = false, session = false, seq = 0, fence = 0}
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local id = info[i + 1]
      local dash = string.find(id, '-', 1, true)
      ms = string.sub(id, 1, dash - 1)
      n = tonumber(string.sub(id, dash + 1))
    elseif info[i] == 'last-entry' and info[i + 1] then
      local f = info[i + 1][2]
      for j = 1, #f, 2 do
        if f[j] == 't' or f[j] == 'session' then last[f[j]] = f[j + 1]
        elseif f[j] == 'seq' or f[j] == 'fence' then last[f[j]] = tonumber(f[j + 1]) end
      end
    end
  end
end
if fence < last.fence or fence > counter then return {-1, math.max(last.fence, counter)} end
local from = 4
for i = 4, #ARGV, 4 do
  if ARGV[i] == last.t and ARGV[i + 1] == last.session and tonumber(ARGV[i + 2]) == last.seq then
    from = i + 4
  end
end
local written, skipped = 0, (from - 4) / 4
for i = from, #ARGV, 4 do
  local t, session, seq = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local seen = session == last.session
    and (seq < last.seq or (seq == last.seq and t ~= 'RESUMED'))
  if seen then
    skipped = skipped + 1
  else
    n = n + 1
    local id = ms .. '-' .. string.format('%d', n)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id,
      't', t, 'shard', ARGV[3], 'session', session, 'seq', ARGV[i + 2],
      'fence', ARGV[1], 'd', ARGV[i + 3])
    if t == 'READY' then
      redis.call('HSET', KEYS[3], 'id', id, 'session', session, 'd', ARGV[i + 3])
    end
    last.t, last.session, last.seq = t, session, seq
    written = written + 1
  end
end
return {written, skipped}
";

/// How events are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishConfig {
    /// Entries kept per stream (about: `MAXLEN ~`; at least 1, as the last entry says where
    /// the stream stands). Default 100,000.
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
    let append = redis::Script::new(APPEND);
    let mut batch = Vec::with_capacity(config.batch.max(1));
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < config.batch.max(1)
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        // One script call per shard: its entries together, in their order (a stable sort;
        // streams are per shard, so the order across shards is no one's).
        batch.sort_by_key(|e| e.shard);
        let runs = runs(&batch);
        let pipe = append_pipeline(&append, &keys, &config, &batch, &runs);
        let replies = write(&mut connection, &append, &pipe, batch.len()).await;
        let mut last = lock(&progress.written);
        for (run, reply) in runs.iter().zip(replies) {
            let shard = batch[run.start].shard;
            let last_fence = match reply {
                Appended::Done { written, skipped } => {
                    // Written, or in the stream already: either way the stream has it.
                    let e = &batch[run.end - 1];
                    last.insert(shard, (Arc::clone(&e.session), e.seq));
                    metrics::counter!("gateway_published_total").increment(written);
                    metrics::counter!("gateway_publish_repeats_skipped_total").increment(skipped);
                    continue;
                }
                Appended::Fenced { last_fence } => last_fence,
            };
            let fence = batch[run.start].fence;
            tracing::warn!(
                shard,
                fence,
                last_fence,
                entries = run.len(),
                "not published: another node holds the shard under a later lease, or the lease is from before Redis lost its data"
            );
            metrics::counter!("gateway_publish_fenced_total")
                .increment(u64::try_from(run.len()).unwrap_or(u64::MAX));
        }
        drop(last);
        for e in batch.drain(..) {
            metrics::histogram!("gateway_publish_lag_seconds")
                .record(e.queued.elapsed().as_secs_f64());
        }
        progress.notify.notify_one();
    }
}

/// The batch, sorted by shard, cut into runs of one shard and one fencing token: one script
/// call each.
fn runs(batch: &[Entry]) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, e) in batch.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if batch[run.start].shard == e.shard && batch[run.start].fence == e.fence => {
                run.end = i + 1;
            }
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

fn append_pipeline(
    append: &redis::Script,
    keys: &Keys,
    config: &PublishConfig,
    batch: &[Entry],
    runs: &[std::ops::Range<usize>],
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for run in runs {
        let first = &batch[run.start];
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(append.get_hash())
            .arg(3)
            .arg(keys.stream(first.shard))
            .arg(keys.fence(first.shard))
            .arg(keys.ready(first.shard))
            .arg(first.fence)
            .arg(config.maxlen.max(1))
            .arg(first.shard);
        for e in &batch[run.clone()] {
            cmd.arg(&*e.name).arg(&*e.session).arg(e.seq).arg(&*e.data);
        }
    }
    pipe
}

/// Runs `pipe` until Redis answers it (loading the script where it is missing), and reads each
/// call's reply.
async fn write(
    connection: &mut RedisConnection,
    append: &redis::Script,
    pipe: &redis::Pipeline,
    entries: usize,
) -> Vec<Appended> {
    let mut wait = Duration::from_millis(50);
    loop {
        match pipe.query_async::<Vec<(i64, i64)>>(connection).await {
            Ok(replies) => return replies.into_iter().map(Appended::from_reply).collect(),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // A new primary (a restart, a failover) has no scripts: load it and go again.
                match append.prepare_invoke().load_async(connection).await {
                    Ok(_) => continue,
                    Err(e) => tracing::warn!(error = %e, "the append script not loaded"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, entries, retry_in = ?wait, "publishing failed; retrying");
                metrics::counter!("gateway_publish_retries_total").increment(1);
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// What one run's append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Appended {
    /// Its entries are in the stream: `written` new, `skipped` there already.
    Done { written: u64, skipped: u64 },
    /// Refused: the stream's last entry came under a later lease, or the token is from before
    /// Redis lost its data.
    Fenced { last_fence: u64 },
}

impl Appended {
    fn from_reply((written, other): (i64, i64)) -> Self {
        let other = u64::try_from(other).unwrap_or(0);
        match u64::try_from(written) {
            Ok(written) => Self::Done {
                written,
                skipped: other,
            },
            Err(_) => Self::Fenced { last_fence: other },
        }
    }
}
