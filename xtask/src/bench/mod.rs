//! `cargo xtask bench`: decode speed and allocations, chunking, end to end, recovery and memory
//! per shard, as ratios against baselines measured in the same run.

mod alloc;
mod backlog;
mod chunking;
mod cluster;
mod corpus;
mod decode;
mod e2e;
// Shared file for file with the probes (xtask/shard-probe, xtask/twilight-probe), which use
// what xtask does not.
#[allow(dead_code)]
mod figures;
mod patched;
pub(crate) mod peer;
mod proxy;
mod proxy_cluster;
mod proxy_latency;
mod report;
mod rig;
#[allow(dead_code)]
mod sys;
mod versus;

pub(crate) use cluster::{NodeProbeOptions, node_probe};

use std::path::PathBuf;
use std::time::Instant;

use gateway_codec::Compression;
use gateway_model::EventTypes;
use serde::Serialize;

use decode::{CompressionReport, KindFigure};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// `cargo xtask bench` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// A reduced run (a tenth of the corpus, fewer passes) for smoke tests.
    #[arg(long)]
    quick: bool,
    /// An earlier report.json to compare with.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Where to write the report.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: PathBuf,
    /// Seed of the corpus.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shards connected at once for the memory figures (default 1,000; 50 with --quick).
    #[arg(long)]
    shards: Option<usize>,
    /// Run only these sections (comma-separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
}

/// A part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Section {
    /// The codec alone: decode, typed decoding, allocations, envelope parsers.
    Decode,
    /// Member chunks through the tracker against decoding them.
    Chunking,
    /// Gateway to user over loopback, and recovery times.
    EndToEnd,
    /// Memory per connected shard.
    Memory,
    /// The cluster on a real redis-server: handoff, publish + consume, Redis memory.
    Cluster,
    /// A backlog of 50,000 dispatches at a 1 s heartbeat, ours beside twilight-gateway.
    Backlog,
    /// The proxy's core: CPU per event per client, cache memory against its JSON; over
    /// sockets; and on Redis (`proxy-cluster` alone).
    Proxy,
    /// The proxy on Redis alone: two processes, 1,000 shards, 2,000 clients, the handoff.
    #[value(name = "proxy-cluster")]
    ProxyCluster,
}

impl Options {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) quick: bool,
    pub(crate) machine: Machine,
    pub(crate) git_revision: String,
    pub(crate) corpus: CorpusFigures,
    pub(crate) decode: Vec<CompressionReport>,
    pub(crate) envelope: Vec<EnvelopeFigure>,
    pub(crate) chunking: Vec<chunking::ChunkingFigure>,
    pub(crate) end_to_end: Vec<e2e::EndToEndFigure>,
    pub(crate) recovery: Vec<e2e::RecoveryFigure>,
    pub(crate) memory: Vec<figures::MemoryFigure>,
    pub(crate) memory_versus: Vec<versus::MemoryComparison>,
    pub(crate) client_cpu: Vec<versus::ClientCpuFigure>,
    pub(crate) cluster: Vec<cluster::ClusterFigure>,
    pub(crate) backlog: Vec<backlog::BacklogFigure>,
    pub(crate) proxy: Vec<proxy::ProxyFigure>,
    pub(crate) targets: Vec<Target>,
}

/// The machine the run was on.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) os: String,
}

/// The corpus's size.
#[derive(Debug, Serialize)]
pub(crate) struct CorpusFigures {
    pub(crate) seed: u64,
    pub(crate) messages: usize,
    pub(crate) json_bytes: usize,
    pub(crate) steady_state_from: usize,
}

/// One envelope parser's throughput.
#[derive(Debug, Serialize)]
pub(crate) struct EnvelopeFigure {
    pub(crate) parser: &'static str,
    pub(crate) mb_s: f64,
    pub(crate) ratio_to_ours: f64,
}

/// A target from the issue, and whether this run met it.
#[derive(Debug, Serialize)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) goal: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
}

fn mb_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-12)
}

/// Runs the bench and writes the report.
pub(crate) fn run(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    let (scale, passes) = if options.quick { (0.1, 3) } else { (1.0, 7) };
    eprintln!(
        "[bench] building the corpus (seed {}, scale {scale})…",
        options.seed
    );
    let corpus = corpus::build(options.seed, scale);
    let json_bytes = corpus.bytes();
    eprintln!(
        "[bench] {} messages, {:.1} MB of JSON ({} of startup)",
        corpus.items.len(),
        json_bytes as f64 / 1e6,
        corpus.steady_from
    );
    let (decode_reports, envelope) = if options.runs(Section::Decode) {
        decode_section(&corpus, passes)?
    } else {
        (Vec::new(), Vec::new())
    };

    let chunking = if options.runs(Section::Chunking) {
        let guilds = if options.quick { 2 } else { 8 };
        chunking::run(options.seed, guilds, passes)?
    } else {
        Vec::new()
    };

    // The clients side by side, each in a process of its own: ours and twilight-gateway's.
    let side_by_side = options.runs(Section::EndToEnd)
        || options.runs(Section::Memory)
        || options.runs(Section::Backlog);
    let peers = if side_by_side {
        let root = crate::workspace_root();
        // The patched tungstenite is measured in full memory runs only.
        let patched = options.runs(Section::Memory) && !options.quick;
        Some((
            peer::testkit_binary(&root)?,
            peer::Probes::build(&root, patched)?,
        ))
    } else {
        None
    };
    let traffic = e2e::traffic(&corpus)?;

    let (e2e, client_cpu) = if options.runs(Section::EndToEnd) {
        let (e2e_passes, recovery_runs) = if options.quick { (1, 5) } else { (3, 20) };
        let e2e = e2e::run(&corpus, options.seed, e2e_passes, recovery_runs)?;
        let cpu = match &peers {
            Some((testkit, probes)) => {
                let runs = if options.quick { 1 } else { 7 };
                versus::client_cpu(testkit, probes, &options.out, &traffic, runs)?
            }
            None => Vec::new(),
        };
        (e2e, cpu)
    } else {
        (e2e::Figures::default(), Vec::new())
    };

    let (memory, memory_versus) = match (&peers, options.runs(Section::Memory)) {
        (Some((testkit, probes)), true) => {
            let shards = options
                .shards
                .unwrap_or(if options.quick { 50 } else { 1000 });
            let runs = if options.quick { 1 } else { 2 };
            versus::memory(testkit, probes, &options.out, shards, runs, &traffic)?
        }
        _ => (Vec::new(), Vec::new()),
    };

    let backlog = match (&peers, options.runs(Section::Backlog)) {
        (Some((testkit, probes)), true) => {
            let give_up_ms = if options.quick { 40_000 } else { 60_000 };
            backlog::run(testkit, probes, &options.out, &traffic, give_up_ms)?
        }
        _ => Vec::new(),
    };

    let cluster = if options.runs(Section::Cluster) {
        cluster::run(options.quick)?
    } else {
        Vec::new()
    };

    let mut proxy = if options.runs(Section::Proxy) {
        let mut figures = proxy::run(options.quick)?;
        figures.extend(proxy_latency::run(&crate::workspace_root(), options.quick)?);
        figures
    } else {
        Vec::new()
    };
    if options.runs(Section::Proxy) || options.only.contains(&Section::ProxyCluster) {
        proxy.extend(proxy_cluster::run(&crate::workspace_root(), options.quick)?);
    }

    let report = Report {
        targets: report::targets(&decode_reports, &chunking)
            .into_iter()
            .chain(versus::targets(&memory_versus, &client_cpu))
            .chain(backlog::targets(&backlog))
            .chain(proxy::targets(&proxy))
            .chain(cluster::targets(&cluster))
            .collect(),
        cluster,
        proxy,
        backlog,
        memory_versus,
        client_cpu,
        chunking,
        end_to_end: e2e.end_to_end,
        recovery: e2e.recovery,
        memory,
        quick: options.quick,
        machine: report::machine(),
        git_revision: report::git_revision(),
        corpus: CorpusFigures {
            seed: options.seed,
            messages: corpus.items.len(),
            json_bytes,
            steady_state_from: corpus.steady_from,
        },
        decode: decode_reports,
        envelope,
    };
    report::write(&report, &options.out, options.baseline.as_deref())?;
    eprintln!("[bench] done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Decode (the codec alone) and the envelope parsers.
fn decode_section(
    corpus: &corpus::Corpus,
    passes: usize,
) -> Result<(Vec<CompressionReport>, Vec<EnvelopeFigure>), String> {
    let json_bytes = corpus.bytes();
    let largest = corpus.items.iter().map(|i| i.json.len()).max().unwrap_or(0);
    let mut raw_buffer = vec![0u8; largest + 1];

    let mut decode_reports = Vec::new();
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        eprintln!("[bench] {compression}: compressing…");
        let stream = decode::compress(corpus, compression)?;
        eprintln!("[bench] {compression}: decode and raw decompression, alternated ×{passes}…");
        let (decode_t, raw_t) = match compression {
            Compression::None => (
                decode::median(passes, || decode::decode_pass(&stream))?.as_secs_f64(),
                None,
            ),
            _ => {
                let (d, r) = decode::median_pair(
                    passes,
                    || decode::decode_pass(&stream),
                    || decode::raw_pass(&stream, &mut raw_buffer),
                )?;
                (d.as_secs_f64(), Some(r.as_secs_f64()))
            }
        };
        eprintln!("[bench] {compression}: typed decoding…");
        let stack_t = decode::median(passes, || decode::typed_pass(&stream, EventTypes::STACK))?
            .as_secs_f64();
        let all_t = decode::median(passes, || decode::typed_pass(&stream, EventTypes::all()))?
            .as_secs_f64();
        eprintln!("[bench] {compression}: per event type and allocations…");
        let kinds = decode::per_kind(&stream, corpus)?;
        let raw_kinds = decode::raw_per_kind(&stream, corpus, &mut raw_buffer)?;
        let allocations = decode::allocations_per_message(&stream, corpus.steady_from)?;
        let per_kind_us: Vec<KindFigure> = corpus::KINDS
            .iter()
            .zip(kinds.iter().zip(&raw_kinds))
            .map(|(kind, ((us, count), raw))| KindFigure {
                kind,
                count: *count,
                decode_us: *us,
                raw_us: (compression != Compression::None).then_some(*raw),
            })
            .collect();
        let message_create = per_kind_us.iter().find(|k| k.kind == "MESSAGE_CREATE");
        let message_create_decode_over_raw =
            message_create.and_then(|k| k.raw_us.map(|raw| raw / k.decode_us.max(1e-9)));
        decode_reports.push(CompressionReport {
            compression: compression.to_string(),
            messages: corpus.items.len(),
            json_bytes,
            compressed_bytes: stream.compressed_bytes,
            decode_mb_s: mb_s(json_bytes, decode_t),
            decode_msg_s: corpus.items.len() as f64 / decode_t,
            raw_decompress_mb_s: raw_t.map(|t| mb_s(json_bytes, t)),
            decode_over_raw: raw_t.map(|t| t / decode_t),
            typed_stack_mb_s: mb_s(json_bytes, stack_t),
            typed_all_mb_s: mb_s(json_bytes, all_t),
            allocations_per_message_warm: allocations,
            per_kind_us,
            message_create_decode_over_raw,
        });
    }

    eprintln!("[bench] envelope parsers ×{passes}…");
    let envelopes = decode::envelopes(corpus, passes)?;
    let ours = envelopes.first().map_or(1.0, |(_, t)| t.as_secs_f64());
    let envelope = envelopes
        .iter()
        .map(|(parser, t)| EnvelopeFigure {
            parser,
            mb_s: mb_s(json_bytes, t.as_secs_f64()),
            ratio_to_ours: ours / t.as_secs_f64(),
        })
        .collect();

    Ok((decode_reports, envelope))
}
