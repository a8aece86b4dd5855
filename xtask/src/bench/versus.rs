//! Ours beside twilight-gateway 0.18, each client in a process of its own against the same fake
//! gateway in a third (see `peer`): memory per connected shard, and client CPU per event end to
//! end. The clients alternate run by run, and every run starts a fresh gateway and a fresh
//! client process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gateway_codec::Compression;
use serde::Serialize;

use super::Target;
use super::e2e::Event;
use super::figures::{ClientRun, MemoryFigure};
use super::peer::{Client, Probes, run_probe, serve};

/// The scenario after one GUILD_CREATE of about 100 KB per shard.
pub(crate) const AFTER_100_KB: &str = "after 100 KB";
/// The scenario after ten GUILD_CREATEs, about 1 MB, per shard.
pub(crate) const AFTER_1_MB: &str = "after 1 MB";
/// The mixed-traffic scenario: one GUILD_CREATE, then [`MIX_EVENTS`] dispatches of the corpus's
/// steady traffic (messages, presences, typing) per shard.
pub(crate) const MIX: &str = "mix";
/// Dispatches per shard in the mixed scenario.
const MIX_EVENTS: usize = 200;
/// Members per guild: a GUILD_CREATE of about 100 KB with presences.
const MEMBERS: usize = 250;

/// One memory scenario.
struct Scenario {
    name: &'static str,
    /// GUILD_CREATEs of about 100 KB per shard.
    guilds_per_shard: usize,
    /// Dispatches of mixed traffic per shard, after the guilds.
    mix: usize,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "idle",
        guilds_per_shard: 0,
        mix: 0,
    },
    Scenario {
        name: AFTER_100_KB,
        guilds_per_shard: 1,
        mix: 0,
    },
    Scenario {
        name: AFTER_1_MB,
        guilds_per_shard: 10,
        mix: 0,
    },
    Scenario {
        name: MIX,
        guilds_per_shard: 1,
        mix: MIX_EVENTS,
    },
];

/// The issue's goal for ours / twilight, by compression.
fn goal_ratio(compression: &str) -> Option<f64> {
    match compression {
        "zlib-stream" => Some(0.6),
        "zstd-stream" => Some(0.7),
        _ => None,
    }
}

/// The issue's absolute goal, KiB per shard.
fn goal_kib(compression: &str, scenario: &str) -> Option<f64> {
    (compression == "zstd-stream" && scenario == AFTER_1_MB).then_some(400.0)
}

/// One scenario, ours beside twilight.
#[derive(Debug, Serialize)]
pub(crate) struct MemoryComparison {
    pub(crate) compression: String,
    pub(crate) scenario: String,
    pub(crate) shards: usize,
    pub(crate) runs: usize,
    /// Resident KiB per connected shard, median of the runs.
    pub(crate) ours_kib: f64,
    pub(crate) twilight_kib: f64,
    pub(crate) ours_over_twilight: f64,
    /// Ours built against tungstenite with the read-buffer patch, when measured.
    pub(crate) ours_patched_kib: Option<f64>,
}

/// Writes `events` as the testkit's `--replay` file (JSON lines of `{"t", "d"}`).
fn replay_file(path: &Path, events: &[Event]) -> Result<(), String> {
    let mut text = String::new();
    for (name, d) in events {
        let _ = writeln!(
            text,
            r#"{{"t":{},"d":{d}}}"#,
            serde_json::Value::from(name.as_str())
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The median of the runs' figures (the mean of the middle two for an even count).
fn median(mut figures: Vec<MemoryFigure>) -> Option<MemoryFigure> {
    figures.sort_by(|a, b| a.rss_per_shard_kib.total_cmp(&b.rss_per_shard_kib));
    let n = figures.len();
    if n == 0 {
        return None;
    }
    let (a, b) = (&figures[(n - 1) / 2], &figures[n / 2]);
    let mean = |x: f64, y: f64| (x + y) / 2.0;
    let mean_opt = |x: Option<f64>, y: Option<f64>| x.zip(y).map(|(x, y)| mean(x, y));
    Some(MemoryFigure {
        rss_per_shard_kib: mean(a.rss_per_shard_kib, b.rss_per_shard_kib),
        rust_heap_per_shard_kib: mean(a.rust_heap_per_shard_kib, b.rust_heap_per_shard_kib),
        malloc_in_use_per_shard_kib: mean_opt(
            a.malloc_in_use_per_shard_kib,
            b.malloc_in_use_per_shard_kib,
        ),
        malloc_committed_per_shard_kib: mean_opt(
            a.malloc_committed_per_shard_kib,
            b.malloc_committed_per_shard_kib,
        ),
        c_only_per_shard_kib: mean_opt(a.c_only_per_shard_kib, b.c_only_per_shard_kib),
        ..a.clone()
    })
}

/// Memory per connected shard: for each compression and scenario, `runs` runs of each client,
/// alternated. Without compression only ours runs (the connection's own cost, for reference).
pub(crate) fn memory(
    testkit: &Path,
    probes: &Probes,
    out: &Path,
    shards: usize,
    runs: usize,
    mix: &[Event],
) -> Result<(Vec<MemoryFigure>, Vec<MemoryComparison>), String> {
    let mix_file = out.join("replay-mix.jsonl");
    replay_file(&mix_file, &mix[..mix.len().min(MIX_EVENTS)])?;
    let mix_len = mix.len().min(MIX_EVENTS);
    let mut figures = Vec::new();
    let mut comparisons = Vec::new();
    let plan = std::iter::once((Compression::None, &SCENARIOS[0])).chain(
        [Compression::ZlibStream, Compression::ZstdStream]
            .into_iter()
            .flat_map(|c| SCENARIOS.iter().map(move |s| (c, s))),
    );
    for (compression, scenario) in plan {
        let clients: &[Client] = match (compression, &probes.ours_patched) {
            (Compression::None, _) => &[Client::Ours],
            (_, Some(_)) => &[Client::Ours, Client::Twilight, Client::OursPatched],
            (_, None) => &[Client::Ours, Client::Twilight],
        };
        let mut by_client: Vec<Vec<MemoryFigure>> = vec![Vec::new(); clients.len()];
        for run in 0..runs.max(1) {
            for k in 0..clients.len() {
                // Alternate who goes first.
                let i = (k + run) % clients.len();
                let client = clients[i];
                eprintln!(
                    "[bench] memory: {shards} shards, {compression}, {}, {} (run {})…",
                    scenario.name,
                    client.name(),
                    run + 1
                );
                let guilds = scenario.guilds_per_shard * shards;
                let then = if scenario.mix > 0 {
                    mix_len * shards
                } else {
                    0
                };
                let mut server_args: Vec<String> = [
                    "--guilds",
                    &guilds.to_string(),
                    "--members",
                    &MEMBERS.to_string(),
                    "--shards",
                    &shards.to_string(),
                    "--max-concurrency",
                    "16",
                ]
                .map(str::to_owned)
                .to_vec();
                if scenario.mix > 0 {
                    server_args.push("--replay".to_owned());
                    server_args.push(mix_file.display().to_string());
                }
                let (_server, url) = serve(testkit, &server_args)?;
                let args = [
                    "--shards".to_owned(),
                    shards.to_string(),
                    "--guilds".to_owned(),
                    guilds.to_string(),
                    "--then".to_owned(),
                    then.to_string(),
                ];
                let command = probes.command(client, compression, "memory", &url, &args)?;
                let trigger = (then > 0).then_some("/testkit/replay");
                let line = run_probe(command, &url, trigger)?;
                let figure: MemoryFigure =
                    serde_json::from_str(&line).map_err(|e| format!("memory probe: {e}"))?;
                by_client[i].push(MemoryFigure {
                    client: client.name().to_owned(),
                    compression: compression.to_string(),
                    scenario: scenario.name.to_owned(),
                    ..figure
                });
            }
        }
        let medians: Vec<MemoryFigure> = by_client.into_iter().filter_map(median).collect();
        if let [ours, twilight, rest @ ..] = medians.as_slice() {
            comparisons.push(MemoryComparison {
                compression: compression.to_string(),
                scenario: scenario.name.to_owned(),
                shards,
                runs: runs.max(1),
                ours_kib: ours.rss_per_shard_kib,
                twilight_kib: twilight.rss_per_shard_kib,
                ours_over_twilight: ours.rss_per_shard_kib / twilight.rss_per_shard_kib.max(1e-9),
                ours_patched_kib: rest.first().map(|p| p.rss_per_shard_kib),
            });
        }
        figures.extend(medians);
    }
    Ok((figures, comparisons))
}

/// Client CPU per event, ours beside twilight.
#[derive(Debug, Serialize)]
pub(crate) struct ClientCpuFigure {
    pub(crate) compression: String,
    pub(crate) events: usize,
    pub(crate) runs: usize,
    /// The client process's CPU time per dispatch, median of the runs: ours, twilight's raw
    /// messages, twilight's typed events.
    pub(crate) ours_us_per_event: f64,
    pub(crate) twilight_us_per_event: f64,
    pub(crate) twilight_typed_us_per_event: f64,
    pub(crate) ours_over_twilight: f64,
    pub(crate) ours_over_twilight_typed: f64,
    /// Rust allocations per dispatch, median of the runs.
    pub(crate) ours_allocations_per_event: f64,
    pub(crate) twilight_allocations_per_event: f64,
    pub(crate) twilight_typed_allocations_per_event: f64,
    /// Dispatches per second reaching the user's loop, median of the runs.
    pub(crate) ours_events_per_s: f64,
    pub(crate) twilight_events_per_s: f64,
}

fn middle(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

/// Client CPU per event end to end: the gateway in another process is handed `events` as
/// prepared dispatches, all compressed before the first is written; each client's process
/// counts them and reports its CPU time.
pub(crate) fn client_cpu(
    testkit: &Path,
    probes: &Probes,
    out: &Path,
    events: &[Event],
    runs: usize,
) -> Result<Vec<ClientCpuFigure>, String> {
    let file: PathBuf = out.join("replay-e2e.jsonl");
    replay_file(&file, events)?;
    let guilds = 4;
    let server_args: Vec<String> = [
        "--guilds",
        "4",
        "--members",
        "1000",
        "--shards",
        "1",
        // No heartbeat during a run: its ACK would be one more message.
        "--heartbeat-ms",
        "600000",
        "--replay",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([file.display().to_string()])
    .collect();
    let clients = [Client::Ours, Client::Twilight, Client::TwilightTyped];
    let mut figures = Vec::new();
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let mut cpu: [Vec<f64>; 3] = Default::default();
        let mut allocations: [Vec<f64>; 3] = Default::default();
        let mut rate: [Vec<f64>; 3] = Default::default();
        for run in 0..runs.max(1) {
            for k in 0..clients.len() {
                // Alternate who goes first.
                let i = (k + run) % clients.len();
                let client = clients[i];
                eprintln!(
                    "[bench] client CPU: {} dispatches, {compression}, {} (run {})…",
                    events.len(),
                    client.name(),
                    run + 1
                );
                let (_server, url) = serve(testkit, &server_args)?;
                let args = [
                    "--guilds".to_owned(),
                    guilds.to_string(),
                    "--events".to_owned(),
                    events.len().to_string(),
                ];
                let command = probes.command(client, compression, "e2e", &url, &args)?;
                let line = run_probe(command, &url, Some("/testkit/shards/0/replay?at-once"))?;
                let run: ClientRun =
                    serde_json::from_str(&line).map_err(|e| format!("e2e probe: {e}"))?;
                let n = run.events.max(1) as f64;
                cpu[i].push(run.cpu_ns as f64 / 1e3 / n);
                allocations[i].push(run.allocations as f64 / n);
                rate[i].push(n / (run.wall_ns.max(1) as f64 / 1e9));
            }
        }
        let [ours_cpu, twilight_cpu, typed_cpu] = cpu.map(middle);
        let [ours_allocs, twilight_allocs, typed_allocs] = allocations.map(middle);
        let [ours_rate, twilight_rate, _] = rate.map(middle);
        figures.push(ClientCpuFigure {
            compression: compression.to_string(),
            events: events.len(),
            runs: runs.max(1),
            ours_us_per_event: ours_cpu,
            twilight_us_per_event: twilight_cpu,
            twilight_typed_us_per_event: typed_cpu,
            ours_over_twilight: ours_cpu / twilight_cpu.max(1e-9),
            ours_over_twilight_typed: ours_cpu / typed_cpu.max(1e-9),
            ours_allocations_per_event: ours_allocs,
            twilight_allocations_per_event: twilight_allocs,
            twilight_typed_allocations_per_event: typed_allocs,
            ours_events_per_s: ours_rate,
            twilight_events_per_s: twilight_rate,
        });
    }
    Ok(figures)
}

/// The issue's goals, checked against this run.
pub(crate) fn targets(memory: &[MemoryComparison], cpu: &[ClientCpuFigure]) -> Vec<Target> {
    let mut targets = Vec::new();
    for m in memory {
        if let Some(goal) = goal_ratio(&m.compression) {
            targets.push(Target {
                name: format!(
                    "{}: resident per shard, {}, ours / twilight ({} shards)",
                    m.compression, m.scenario, m.shards
                ),
                goal: format!("≤ {goal}"),
                measured: format!(
                    "{:.2} ({:.1} / {:.1} KiB)",
                    m.ours_over_twilight, m.ours_kib, m.twilight_kib
                ),
                met: m.ours_over_twilight <= goal,
            });
        }
        if let Some(goal) = goal_kib(&m.compression, &m.scenario) {
            targets.push(Target {
                name: format!(
                    "{}: resident KiB per shard, {} ({} shards)",
                    m.compression, m.scenario, m.shards
                ),
                goal: format!("≤ {goal}"),
                measured: format!("{:.1}", m.ours_kib),
                met: m.ours_kib <= goal,
            });
        }
    }
    for c in cpu {
        let against = [
            (
                "raw messages",
                c.ours_over_twilight,
                c.twilight_us_per_event,
            ),
            (
                "typed events",
                c.ours_over_twilight_typed,
                c.twilight_typed_us_per_event,
            ),
        ];
        for (read, ratio, theirs) in against {
            targets.push(Target {
                name: format!(
                    "{}: client CPU per event, ours / twilight reading {read}",
                    c.compression
                ),
                goal: "≤ 0.5".to_owned(),
                measured: format!("{ratio:.2} ({:.2} / {theirs:.2} µs)", c.ours_us_per_event),
                met: ratio <= 0.5,
            });
        }
    }
    targets
}

/// The side-by-side tables of the report.
pub(crate) fn markdown(md: &mut String, memory: &[MemoryComparison], cpu: &[ClientCpuFigure]) {
    if !memory.is_empty() {
        let shards = memory.first().map_or(0, |m| m.shards);
        let runs = memory.first().map_or(0, |m| m.runs);
        let _ = writeln!(
            md,
            "\n## Memory per connected shard, beside twilight-gateway 0.18\n\n{shards} shards per process, each run a fresh process of each client (alternated; median of {runs}), the same fake gateway in another process. Resident KiB per shard.\n"
        );
        let patched = |m: &MemoryComparison| {
            m.ours_patched_kib.map_or("–".to_owned(), |p| {
                format!("{p:.1} ({:.2})", p / m.twilight_kib.max(1e-9))
            })
        };
        let _ = writeln!(
            md,
            "| compression | scenario | ours | twilight | ours / twilight | ours, tungstenite patched (/ twilight) | goal |\n|---|---|---:|---:|---:|---:|---|"
        );
        for m in memory {
            let mut goal = goal_ratio(&m.compression)
                .map(|g| format!("≤ {g}×"))
                .unwrap_or_default();
            if let Some(kib) = goal_kib(&m.compression, &m.scenario) {
                let _ = write!(goal, ", ≤ {kib} KiB");
            }
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | **{:.2}** | {} | {goal} |",
                m.compression,
                m.scenario,
                m.ours_kib,
                m.twilight_kib,
                m.ours_over_twilight,
                patched(m)
            );
        }
    }
    if !cpu.is_empty() {
        let runs = cpu.first().map_or(0, |c| c.runs);
        let _ = writeln!(
            md,
            "\n## Client CPU per event, beside twilight-gateway 0.18\n\nOne shard per client process on a current-thread runtime; the fake gateway in another process sends prepared dispatches (compressed before the first is written). CPU = every thread of the client's process, from `ready` to the last dispatch; median of {runs} runs per client, alternated. Ours hands the user raw dispatches (`d` unparsed); twilight is measured both ways its users read: raw messages (the lightest) and typed events (`next_event(EventTypeFlags::all())`).\n"
        );
        let _ = writeln!(
            md,
            "| compression | dispatches | ours µs/event | twilight, raw messages | twilight, typed events | ours / twilight raw | ours / twilight typed | allocations per event: ours, raw, typed | goal |\n|---|---:|---:|---:|---:|---:|---:|---|---|"
        );
        for c in cpu {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:.2} | **{:.2}** | **{:.2}** | {:.2}, {:.2}, {:.2} | ≤ 0.5× |",
                c.compression,
                c.events,
                c.ours_us_per_event,
                c.twilight_us_per_event,
                c.twilight_typed_us_per_event,
                c.ours_over_twilight,
                c.ours_over_twilight_typed,
                c.ours_allocations_per_event,
                c.twilight_allocations_per_event,
                c.twilight_typed_allocations_per_event,
            );
        }
    }
}

/// A bar chart of resident memory per connected shard, ours beside twilight for each compression
/// and scenario, with the goals marked.
pub(crate) fn memory_svg(memory: &[MemoryComparison]) -> String {
    let colours = ["#4e79a7", "#e15759", "#9ecae9"];
    let (width, row, label) = (900.0, 20.0, 230.0);
    let max = memory
        .iter()
        .flat_map(|m| {
            [
                m.ours_kib,
                m.twilight_kib,
                m.ours_patched_kib.unwrap_or(0.0),
            ]
        })
        .fold(400.0f64, f64::max)
        * 1.1;
    let plot = width - label - 130.0;
    let bars = if memory.iter().any(|m| m.ours_patched_kib.is_some()) {
        3.0
    } else {
        2.0
    };
    let group = row * bars + 14.0;
    let height = 70.0 + memory.len() as f64 * group + 30.0;
    let shards = memory.first().map_or(0, |m| m.shards);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<text x="10" y="20" font-size="15">Resident memory per connected shard, KiB ({shards} shards; lower is better; red line: goal)</text>
<rect x="10" y="32" width="10" height="10" fill="{}"/><text x="24" y="41">ours</text>
<rect x="80" y="32" width="10" height="10" fill="{}"/><text x="94" y="41">twilight-gateway 0.18</text>
<rect x="260" y="32" width="10" height="10" fill="{}"/><text x="274" y="41">ours, tungstenite patched</text>
"#,
        colours[0], colours[1], colours[2]
    );
    let mut y = 56.0;
    for m in memory {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}">{} {}</text>"#,
            y + row * 1.2,
            m.compression,
            m.scenario
        );
        let values = [Some(m.ours_kib), Some(m.twilight_kib), m.ours_patched_kib];
        for (i, v) in values.into_iter().enumerate() {
            let Some(v) = v else { continue };
            let w = (v / max).clamp(0.0, 1.0) * plot;
            let by = y + row * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{label}" y="{by:.1}" width="{w:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{v:.1}</text>"#,
                row - 3.0,
                colours[i],
                label + w + 4.0,
                by + row * 0.7
            );
        }
        let goal = goal_ratio(&m.compression).map(|r| r * m.twilight_kib);
        let goal = match (goal, goal_kib(&m.compression, &m.scenario)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(goal) = goal {
            let x = label + goal / max * plot;
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="red" stroke-width="2"/>"#,
                y - 2.0,
                y + row * bars
            );
        }
        y += group;
    }
    s.push_str("</svg>\n");
    s
}
