//! A backlog on the wall clock, ours beside twilight-gateway 0.18 (issue 20): the fake gateway in
//! another process heartbeats every second, and 50,000 MESSAGE_CREATEs are queued for the
//! client's session at once, while its user's loop reads at once, spends 300 µs on each (a
//! backlog of many intervals), or pauses 15 s first. Each
//! client's probe counts what reached its loop; the gateway counts the connections and sessions
//! it took. Outcomes, not durations: one run of each client per scenario.

use std::fmt::Write as _;
use std::path::Path;

use gateway_codec::Compression;
use serde::Serialize;

use super::Target;
use super::e2e::Event;
use super::figures::BacklogRun;
use super::peer::{Client, Probes, get, run_probe, serve};

/// Dispatches queued at once.
const EVENTS: u64 = 50_000;
/// The heartbeat interval the gateway sends in HELLO.
const HEARTBEAT_MS: u64 = 1_000;

/// One consumer scenario.
struct Scenario {
    name: &'static str,
    /// How long the user's loop leaves its events unread after `ready`.
    pause_ms: u64,
    /// CPU time the user's loop spends on each dispatch.
    work_us: u64,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "reads at once",
        pause_ms: 0,
        work_us: 0,
    },
    Scenario {
        name: "spends 300 µs on each (15 s of handling)",
        pause_ms: 0,
        work_us: 300,
    },
    Scenario {
        name: "pauses 15 s after READY",
        pause_ms: 15_000,
        work_us: 0,
    },
];

/// One client through one scenario.
#[derive(Debug, Serialize)]
pub(crate) struct BacklogFigure {
    pub(crate) client: String,
    pub(crate) scenario: String,
    pub(crate) compression: String,
    pub(crate) heartbeat_ms: u64,
    /// What the client's loop saw.
    pub(crate) run: BacklogRun,
    /// Connections the gateway accepted past the first.
    pub(crate) disconnects: u64,
    /// IDENTIFYs the gateway answered past the first.
    pub(crate) new_sessions: u64,
    /// RESUMEs the gateway received.
    pub(crate) resumes: u64,
    /// How long the probe waited before it gave up.
    pub(crate) give_up_ms: u64,
}

impl BacklogFigure {
    /// Every dispatch once and in order, on one connection and one session.
    pub(crate) fn clean(&self) -> bool {
        self.run.whole() && self.disconnects == 0 && self.new_sessions == 0
    }
}

/// The gateway's counters after a run.
#[derive(serde::Deserialize)]
struct Stats {
    connections: u64,
    identifies: u64,
    resumes: u64,
}

/// Writes the backlog as the testkit's `--replay` file: the corpus's messages in turn, each
/// numbered by an `i` that opens its `d`.
fn replay_file(path: &Path, traffic: &[Event]) -> Result<(), String> {
    let messages: Vec<&str> = traffic
        .iter()
        .filter(|(name, _)| name == "MESSAGE_CREATE")
        .filter_map(|(_, d)| d.strip_prefix('{'))
        .collect();
    if messages.is_empty() {
        return Err("the corpus has no MESSAGE_CREATE".into());
    }
    let mut text = String::new();
    for (i, rest) in (0..EVENTS).zip(messages.iter().cycle()) {
        let _ = writeln!(text, r#"{{"t":"MESSAGE_CREATE","d":{{"i":{i},{rest}}}"#);
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs every scenario for ours and twilight's zlib-stream probes, the backlog made of the
/// corpus's messages; `give_up_ms` bounds each run.
pub(crate) fn run(
    testkit: &Path,
    probes: &Probes,
    out: &Path,
    traffic: &[Event],
    give_up_ms: u64,
) -> Result<Vec<BacklogFigure>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let file = out.join("replay-backlog.jsonl");
    replay_file(&file, traffic)?;
    let server_args: Vec<String> = [
        "--shards",
        "1",
        "--guilds",
        "1",
        "--members",
        "5",
        "--heartbeat-ms",
        &HEARTBEAT_MS.to_string(),
        "--replay",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([file.display().to_string()])
    .collect();
    let compression = Compression::ZlibStream;
    let mut figures = Vec::new();
    for scenario in &SCENARIOS {
        for client in [Client::Ours, Client::Twilight] {
            eprintln!(
                "[bench] backlog: {EVENTS} dispatches, heartbeat {HEARTBEAT_MS} ms, {}, {}…",
                scenario.name,
                client.name()
            );
            let (_server, url) = serve(testkit, &server_args)?;
            let args = [
                "--events".to_owned(),
                EVENTS.to_string(),
                "--pause-ms".to_owned(),
                scenario.pause_ms.to_string(),
                "--work-us".to_owned(),
                scenario.work_us.to_string(),
                "--give-up-ms".to_owned(),
                give_up_ms.to_string(),
            ];
            let command = probes.command(client, compression, "backlog", &url, &args)?;
            let line = run_probe(command, &url, Some("/testkit/shards/0/replay"))?;
            let run: BacklogRun =
                serde_json::from_str(&line).map_err(|e| format!("backlog probe: {e}"))?;
            let stats: Stats = serde_json::from_str(&get(&url, "/testkit/stats")?)
                .map_err(|e| format!("/testkit/stats: {e}"))?;
            figures.push(BacklogFigure {
                client: client.name().to_owned(),
                scenario: scenario.name.to_owned(),
                compression: compression.to_string(),
                heartbeat_ms: HEARTBEAT_MS,
                run,
                disconnects: stats.connections.saturating_sub(1),
                new_sessions: stats.identifies.saturating_sub(1),
                resumes: stats.resumes,
                give_up_ms,
            });
        }
    }
    Ok(figures)
}

/// The issue's goal: ours takes every dispatch once, in order, on one connection and session.
pub(crate) fn targets(figures: &[BacklogFigure]) -> Vec<Target> {
    figures
        .iter()
        .filter(|f| f.client == Client::Ours.name())
        .map(|f| Target {
            name: format!(
                "backlog of {} at heartbeat {} ms, consumer {}: once, in order, no disconnect",
                f.run.queued, f.heartbeat_ms, f.scenario
            ),
            goal: "all, 0 disconnects, 0 new sessions".to_owned(),
            measured: format!(
                "{} of {} in order, {} disconnects, {} new sessions",
                f.run.in_order, f.run.queued, f.disconnects, f.new_sessions
            ),
            met: f.clean(),
        })
        .collect()
}

/// The report's table.
pub(crate) fn markdown(md: &mut String, figures: &[BacklogFigure]) {
    let Some(first) = figures.first() else {
        return;
    };
    let _ = writeln!(
        md,
        "\n## A backlog on the wall clock, beside twilight-gateway 0.18\n\nThe fake gateway in another process, heartbeat {} ms, {}; {} MESSAGE_CREATEs (the corpus's messages, numbered) queued for the client's session at once after READY. One shard per client process on a current-thread runtime. A twilight shard runs inside the user's loop, so a loop that pauses also stops its heartbeats; ours runs its driver beside the loop. Each run gives up {:.0} s after READY. Disconnects and new sessions are the gateway's counts (connections and IDENTIFYs past the first).\n",
        first.heartbeat_ms,
        first.compression,
        first.run.queued,
        first.give_up_ms as f64 / 1e3
    );
    let _ = writeln!(
        md,
        "| client | consumer | received (repeats) | in order | missing | finished | disconnects | new sessions | resumes | time, s |\n|---|---|---:|---:|---:|---|---:|---:|---:|---:|"
    );
    for f in figures {
        let _ = writeln!(
            md,
            "| {} | {} | {} ({}) | **{}** | {} | {} | **{}** | **{}** | {} | {:.1} |",
            f.client,
            f.scenario,
            f.run.received,
            f.run.repeats,
            f.run.in_order,
            f.run.missing,
            if f.run.finished { "yes" } else { "no" },
            f.disconnects,
            f.new_sessions,
            f.resumes,
            f.run.wall_ms as f64 / 1e3
        );
    }
}
