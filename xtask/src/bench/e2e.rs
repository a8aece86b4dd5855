//! End to end and recovery: the testkit's fake gateway (in this process, on its own runtime
//! thread) sends to one real shard over a loopback websocket. The shard's driver and the user's
//! loop share one current-thread runtime on the bench's main thread, so that thread's CPU time is
//! what the shard cost.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_codec::{Compression, Decoder};
use gateway_model::{DispatchEvent, Intents, Token};
use gateway_shard::identify::LocalIdentifyQueue;
use gateway_shard::{Backoff, Shard, ShardConfig, ShardEvent, ShardEvents};
use gateway_testkit::{ConnectionHandle, FakeGateway, Fault, WorldConfig};
use serde::Serialize;

use super::corpus::Corpus;
use super::rig::Rig;
use super::{decode, sys};

/// Guilds in the fake gateway's world (re-sent after a new session).
const GUILDS: usize = 4;
/// Members per guild.
const MEMBERS: usize = 1_000;
/// Dispatches lost with each dropped connection, for RESUME to replay.
const LOST: usize = 100;

/// Throughput of one compression, gateway to user.
#[derive(Debug, Serialize)]
pub(crate) struct EndToEndFigure {
    pub(crate) compression: String,
    pub(crate) events: usize,
    pub(crate) json_bytes: usize,
    /// Dispatches the user's loop received per second (median pass).
    pub(crate) events_per_s: f64,
    pub(crate) mb_s: f64,
    /// CPU time of the shard's thread (websocket, decode, session, typing, channel to the user,
    /// the user's loop) per event.
    pub(crate) shard_cpu_us_per_event: Option<f64>,
    /// CPU time of the fake gateway's thread (JSON framing, compression, websocket) per event.
    pub(crate) server_cpu_us_per_event: Option<f64>,
    /// The codec alone (decompress + envelope) on the same payloads, in this run.
    pub(crate) decode_us_per_event: f64,
    /// `shard_cpu_us_per_event / decode_us_per_event`: the whole shard against its codec.
    pub(crate) shard_cpu_over_decode: Option<f64>,
}

/// Time to recover from one kind of failure.
#[derive(Debug, Serialize)]
pub(crate) struct RecoveryFigure {
    pub(crate) compression: String,
    pub(crate) scenario: String,
    /// Dispatches that came back: replayed before RESUMED, or GUILD_CREATEs after READY.
    pub(crate) events_back: usize,
    pub(crate) runs: usize,
    /// From the fault to RESUMED or READY at the user's loop.
    pub(crate) median_ms: f64,
    pub(crate) p90_ms: f64,
    /// To the last GUILD_CREATE after READY (new sessions only).
    pub(crate) all_guilds_median_ms: Option<f64>,
}

/// What [`run`] measured.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Figures {
    pub(crate) end_to_end: Vec<EndToEndFigure>,
    pub(crate) recovery: Vec<RecoveryFigure>,
}

/// A dispatch to send: name and `d`.
pub(crate) type Event = (String, String);

/// The steady-state traffic of the corpus (messages, presences, typing) as dispatches, split by
/// the codec's own envelope scan.
pub(crate) fn traffic(corpus: &Corpus) -> Result<Vec<Event>, String> {
    let mut decoder = Decoder::new(Compression::None).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for item in corpus.items[corpus.steady_from..]
        .iter()
        .filter(|i| (4..=6).contains(&i.kind))
    {
        let payload = decoder
            .push(item.json.as_bytes())
            .map_err(|e| e.to_string())?
            .ok_or("incomplete payload")?;
        let (Some(name), Some(d)) = (payload.event_name, payload.data) else {
            return Err("a corpus dispatch without t or d".into());
        };
        events.push((name.into_owned(), d.to_owned()));
    }
    Ok(events)
}

/// Runs the end-to-end and recovery measurements for each compression.
pub(crate) fn run(
    corpus: &Corpus,
    seed: u64,
    passes: usize,
    recovery_runs: usize,
) -> Result<Figures, String> {
    let events = traffic(corpus)?;
    let rig = Rig::new()?;
    let server = &rig.server;
    let server_tid = server
        .block_on(server.spawn(async { sys::current_tid() }))
        .ok()
        .flatten();
    let shard_rt = &rig.clients;
    let mut figures = Figures {
        end_to_end: Vec::new(),
        recovery: Vec::new(),
    };
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        let gateway = rig.gateway(WorldConfig::uniform(seed, GUILDS, MEMBERS))?;
        let run = Run {
            server,
            server_tid,
            gateway: &gateway,
            compression,
        };
        eprintln!(
            "[bench] end to end: {} dispatches, {compression}, ×{passes}…",
            events.len()
        );
        let (e2e, recovery) = shard_rt.block_on(run.measure(&events, passes, recovery_runs))?;
        figures.end_to_end.push(e2e);
        figures.recovery.extend(recovery);
        gateway.shutdown();
    }
    Ok(figures)
}

struct Run<'a> {
    server: &'a tokio::runtime::Runtime,
    server_tid: Option<u32>,
    gateway: &'a FakeGateway,
    compression: Compression,
}

/// Waits for the next event (bounded: a stalled run is an error, not a hang).
async fn next(events: &mut ShardEvents) -> Result<ShardEvent, String> {
    match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err("the shard's events ended".into()),
        Err(_) => Err("no event for 60 s".into()),
    }
}

/// Waits for READY and every guild's GUILD_CREATE; returns when READY came.
async fn ready_and_guilds(events: &mut ShardEvents) -> Result<Instant, String> {
    let mut ready = None;
    let mut guilds = 0;
    while ready.is_none() || guilds < GUILDS {
        match next(events).await? {
            ShardEvent::Ready(_) => ready = Some(Instant::now()),
            ShardEvent::Dispatch(d) if matches!(d.event, DispatchEvent::GuildCreate(_)) => {
                guilds += 1;
            }
            _ => {}
        }
    }
    ready.ok_or_else(|| "no READY".into())
}

fn percentile(times: &[Duration], p: f64) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, |t| t.as_secs_f64() * 1e3)
}

impl Run<'_> {
    fn server_cpu(&self) -> Option<Duration> {
        self.server_tid.and_then(sys::thread_cpu_of)
    }

    fn connection(&self) -> Result<ConnectionHandle, String> {
        self.gateway
            .shard_connection(0)
            .ok_or_else(|| "the shard has no connection".into())
    }

    async fn measure(
        &self,
        events: &[Event],
        passes: usize,
        recovery_runs: usize,
    ) -> Result<(EndToEndFigure, Vec<RecoveryFigure>), String> {
        let config = ShardConfig::new(
            Token::new(self.gateway.config().token.clone()),
            Intents::GUILDS | Intents::GUILD_MEMBERS,
        )
        .with_gateway_url(self.gateway.url())
        .with_compression(self.compression)
        .with_seed(1)
        // A connection up 50 ms counts as stable, so each run's reconnect is immediate, as the
        // first failure after a stable connection is (the default is 60 s).
        .with_backoff(Backoff {
            stable_after: Duration::from_millis(50),
            ..Backoff::default()
        })
        // The identify window is the gateway's rule, not the shard's speed: zero here.
        .with_identify_queue(Arc::new(LocalIdentifyQueue::with_window(Duration::ZERO)), 1);
        let (shard, mut stream) = Shard::start(config).await.map_err(|e| e.to_string())?;
        ready_and_guilds(&mut stream).await?;
        let e2e = self.throughput(&mut stream, events, passes).await?;
        let mut recovery = vec![self.resume_runs(&mut stream, events, recovery_runs).await?];
        recovery.push(self.identify_runs(&mut stream, recovery_runs).await?);
        shard.close(false).await;
        Ok((e2e, recovery))
    }

    async fn throughput(
        &self,
        stream: &mut ShardEvents,
        events: &[Event],
        passes: usize,
    ) -> Result<EndToEndFigure, String> {
        // The payloads as the gateway frames them: the end-to-end MB/s and the codec-alone
        // baseline are over these bytes.
        let framed = Corpus::of_dispatches(events);
        let json_bytes = framed.bytes();
        let (mut walls, mut shard_cpu, mut server_cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..passes.max(1) {
            let batch = events.to_vec();
            let conn = self.connection()?;
            let (start, cpu0, server0) = (Instant::now(), sys::thread_cpu(), self.server_cpu());
            self.server.spawn(async move {
                for (name, d) in batch {
                    conn.dispatch(name, d);
                }
            });
            let mut received = 0;
            while received < events.len() {
                match next(stream).await? {
                    ShardEvent::Dispatch(d) => {
                        black_box(&d);
                        received += 1;
                    }
                    ShardEvent::Disconnected { reason, .. } => {
                        return Err(format!("disconnected during the run: {reason}"));
                    }
                    _ => {}
                }
            }
            walls.push(start.elapsed());
            if let (Some(a), Some(b)) = (cpu0, sys::thread_cpu()) {
                shard_cpu.push(b.saturating_sub(a));
            }
            if let (Some(a), Some(b)) = (server0, self.server_cpu()) {
                server_cpu.push(b.saturating_sub(a));
            }
        }
        let n = events.len().max(1) as f64;
        let per_event = |times: Vec<Duration>| {
            (!times.is_empty()).then(|| decode::middle(times).as_secs_f64() * 1e6 / n)
        };
        let wall = decode::middle(walls).as_secs_f64();
        // The codec alone on the same payloads, compressed as the gateway does.
        let stream = decode::compress(&framed, self.compression)?;
        let decode_t = decode::median(passes.max(3), || decode::decode_pass(&stream))?;
        let decode_us = decode_t.as_secs_f64() * 1e6 / n;
        let shard_us = per_event(shard_cpu);
        Ok(EndToEndFigure {
            compression: self.compression.to_string(),
            events: events.len(),
            json_bytes,
            events_per_s: n / wall.max(1e-12),
            mb_s: json_bytes as f64 / 1e6 / wall.max(1e-12),
            shard_cpu_us_per_event: shard_us,
            server_cpu_us_per_event: per_event(server_cpu),
            decode_us_per_event: decode_us,
            shard_cpu_over_decode: shard_us.map(|s| s / decode_us.max(1e-12)),
        })
    }

    /// Dropped connections, each losing [`LOST`] dispatches: time to RESUMED with them replayed.
    async fn resume_runs(
        &self,
        stream: &mut ShardEvents,
        events: &[Event],
        runs: usize,
    ) -> Result<RecoveryFigure, String> {
        let lost: Vec<Event> = events.iter().take(LOST).cloned().collect();
        let mut times = Vec::new();
        for _ in 0..runs {
            // Outlive the backoff's stable_after, so that the reconnect is immediate.
            tokio::time::sleep(Duration::from_millis(60)).await;
            let conn = self.connection()?;
            let batch = lost.clone();
            let start = Instant::now();
            self.server.spawn(async move {
                conn.inject(Fault::LoseNext(batch.len()));
                for (name, d) in batch {
                    conn.dispatch(name, d);
                }
                conn.inject(Fault::Drop);
            });
            let mut back = 0;
            loop {
                match next(stream).await? {
                    ShardEvent::Dispatch(_) => back += 1,
                    ShardEvent::Resumed { replayed, .. } => {
                        if back != lost.len() || replayed != lost.len() as u64 {
                            return Err(format!(
                                "{back} dispatches back ({replayed} replayed) of {}",
                                lost.len()
                            ));
                        }
                        break;
                    }
                    ShardEvent::Ready(_) => return Err("a new session instead of RESUME".into()),
                    _ => {}
                }
            }
            times.push(start.elapsed());
        }
        Ok(RecoveryFigure {
            compression: self.compression.to_string(),
            scenario: "drop → RESUMED".to_owned(),
            events_back: lost.len(),
            runs,
            median_ms: percentile(&times, 0.5),
            p90_ms: percentile(&times, 0.9),
            all_guilds_median_ms: None,
        })
    }

    /// 4009 (session timed out): time to READY of a new session, and to its last GUILD_CREATE.
    async fn identify_runs(
        &self,
        stream: &mut ShardEvents,
        runs: usize,
    ) -> Result<RecoveryFigure, String> {
        let (mut to_ready, mut to_guilds) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let conn = self.connection()?;
            let start = Instant::now();
            conn.inject(Fault::Close(4009));
            let ready = ready_and_guilds(stream).await?;
            to_guilds.push(start.elapsed());
            to_ready.push(ready.duration_since(start));
        }
        Ok(RecoveryFigure {
            compression: self.compression.to_string(),
            scenario: "4009 → READY".to_owned(),
            events_back: GUILDS,
            runs,
            median_ms: percentile(&to_ready, 0.5),
            p90_ms: percentile(&to_ready, 0.9),
            all_guilds_median_ms: Some(percentile(&to_guilds, 0.5)),
        })
    }
}
