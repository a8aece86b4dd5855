//! The report: a table on stdout, report.json, report.md and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use std::collections::BTreeMap;

use serde_json::Value;

use super::chunking::ChunkingFigure;
use super::corpus::KINDS;
use super::decode::CompressionReport;
use super::{Machine, Report, Target};

pub(crate) fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        os: std::env::consts::OS.to_owned(),
    }
}

pub(crate) fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The issue's targets, checked against this run.
pub(crate) fn targets(decode: &[CompressionReport], chunking: &[ChunkingFigure]) -> Vec<Target> {
    let mut targets = Vec::new();
    for (name, goal) in [("zlib-stream", 0.9), ("zstd-stream", 0.9)] {
        if let Some(r) = decode.iter().find(|r| r.compression == name) {
            if let Some(ratio) = r.decode_over_raw {
                targets.push(Target {
                    name: format!("{name}: decode / raw decompression, overall"),
                    goal: format!("≥ {goal}"),
                    measured: format!("{ratio:.3}"),
                    met: ratio >= goal,
                });
            }
            if let Some(ratio) = r.message_create_decode_over_raw {
                targets.push(Target {
                    name: format!("{name}: decode / raw decompression, MESSAGE_CREATE"),
                    goal: format!("≥ {goal}"),
                    measured: format!("{ratio:.3}"),
                    met: ratio >= goal,
                });
            }
        }
    }
    for r in decode {
        targets.push(Target {
            name: format!(
                "{}: allocations per message once warm (raw d)",
                r.compression
            ),
            goal: "0".to_owned(),
            measured: format!("{:.4}", r.allocations_per_message_warm),
            met: r.allocations_per_message_warm < 0.01,
        });
    }
    for c in chunking {
        targets.push(Target {
            name: format!(
                "{}: the tracker over decoding the chunks into the shard's typed events",
                c.compression
            ),
            goal: "< +5%".to_owned(),
            measured: format!("{:+.1}%", c.tracker_over_typed * 100.0),
            met: c.tracker_over_typed < 0.05,
        });
    }
    targets
}

fn markdown(report: &Report, baseline: Option<&Value>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Bench report\n");
    let _ = writeln!(
        md,
        "Revision `{}`, {} ({} cores), {}{}. Corpus seed {}: {} messages, {:.1} MB of JSON.\n",
        report.git_revision,
        report.machine.cpu,
        report.machine.cores,
        report.machine.os,
        if report.quick { ", **quick run**" } else { "" },
        report.corpus.seed,
        report.corpus.messages,
        report.corpus.json_bytes as f64 / 1e6
    );
    let _ = writeln!(md, "## Decode (decompress + envelope, one core)\n");
    let _ = writeln!(
        md,
        "| compression | compressed MB | decode MB/s | msg/s | raw decompress MB/s | decode / raw | typed (stack) MB/s | typed (all) MB/s | allocs/msg warm |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &report.decode {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} | {:.4} |",
            r.compression,
            r.compressed_bytes as f64 / 1e6,
            r.decode_mb_s,
            r.decode_msg_s,
            r.raw_decompress_mb_s
                .map_or("–".into(), |v| format!("{v:.0}")),
            r.decode_over_raw.map_or("–".into(), |v| format!("{v:.3}")),
            r.typed_stack_mb_s,
            r.typed_all_mb_s,
            r.allocations_per_message_warm
        );
    }
    let _ = writeln!(
        md,
        "\n## µs per message by event type (decode; raw decompression in brackets)\n"
    );
    let _ = write!(md, "| event | count |");
    for r in &report.decode {
        let _ = write!(md, " {} |", r.compression);
    }
    let _ = writeln!(md, "\n|---|---:|{}", "---:|".repeat(report.decode.len()));
    for (i, kind) in KINDS.iter().enumerate() {
        let count = report.decode.first().map_or(0, |r| r.per_kind_us[i].count);
        let _ = write!(md, "| {kind} | {count} |");
        for r in &report.decode {
            let k = &r.per_kind_us[i];
            match k.raw_us {
                Some(raw) => {
                    let _ = write!(md, " {:.2} ({raw:.2}) |", k.decode_us);
                }
                None => {
                    let _ = write!(md, " {:.2} |", k.decode_us);
                }
            }
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "\n## Envelope parsers (uncompressed corpus)\n");
    let _ = writeln!(md, "| parser | MB/s | vs ours |\n|---|---:|---:|");
    for e in &report.envelope {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} |",
            e.parser, e.mb_s, e.ratio_to_ours
        );
    }
    super::versus::markdown(&mut md, &report.memory_versus, &report.client_cpu);
    super::backlog::markdown(&mut md, &report.backlog);
    let _ = writeln!(
        md,
        "\n## Memory per connected shard, every figure (each client in its own process; the server in another)\n"
    );
    let kib = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
    let _ = writeln!(
        md,
        "| client | compression | shards | scenario | JSON received per shard | RSS per shard KiB | Rust heap per shard KiB | C malloc in use per shard KiB | of which not Rust KiB | malloc committed per shard KiB |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    for m in &report.memory {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} KB | {:.1} | {:.1} | {} | {} | {} |",
            m.client,
            m.compression,
            m.shards,
            m.scenario,
            m.received_per_shard as f64 / 1000.0,
            m.rss_per_shard_kib,
            m.rust_heap_per_shard_kib,
            kib(m.malloc_in_use_per_shard_kib),
            kib(m.c_only_per_shard_kib),
            kib(m.malloc_committed_per_shard_kib),
        );
    }
    let _ = writeln!(
        md,
        "\n## Chunking (one core): member chunks of a startup, decoded, typed and tracked\n"
    );
    let _ = writeln!(
        md,
        "| compression | guilds | members | chunks | MB | decode ms | + typed ms | + tracked ms | typed + tracked over decode | tracker over typed | typed peak heap KiB | tracked peak heap KiB | tracker holds after KiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in &report.chunking {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1}% | {:+.1}% | {:.1} | {:.1} | {:.1} |",
            c.compression,
            c.guilds,
            c.members,
            c.chunks,
            c.json_bytes as f64 / 1e6,
            c.decode_ms,
            c.typed_ms,
            c.tracked_ms,
            c.typed_and_tracked_over_decode * 100.0,
            c.tracker_over_typed * 100.0,
            c.typed_peak_heap_kib,
            c.tracked_peak_heap_kib,
            c.tracker_heap_after_kib,
        );
    }
    let us = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
    let _ = writeln!(
        md,
        "\n## End to end: fake gateway → loopback websocket → shard → user loop\n"
    );
    let _ = writeln!(
        md,
        "| compression | dispatches | events/s | MB/s | shard CPU µs/event | gateway CPU µs/event | codec alone µs/event | shard CPU / codec |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for e in &report.end_to_end {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {:.2} | {} |",
            e.compression,
            e.events,
            e.events_per_s,
            e.mb_s,
            us(e.shard_cpu_us_per_event),
            us(e.server_cpu_us_per_event),
            e.decode_us_per_event,
            us(e.shard_cpu_over_decode),
        );
    }
    let _ = writeln!(
        md,
        "\n## Recovery (loopback, reconnect not delayed by backoff, identify window zero)\n"
    );
    let _ = writeln!(
        md,
        "| compression | scenario | events back | runs | median ms | p90 ms | to the last GUILD_CREATE, median ms |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for r in &report.recovery {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            r.compression,
            r.scenario,
            r.events_back,
            r.runs,
            r.median_ms,
            r.p90_ms,
            us(r.all_guilds_median_ms),
        );
    }
    let cluster = report
        .cluster
        .iter()
        .map(|c| (c.name, c.value, c.unit, c.detail.as_str()));
    figure_table(
        &mut md,
        "Cluster on Redis (a real redis-server on loopback)",
        1,
        cluster,
    );
    let proxy = report
        .proxy
        .iter()
        .map(|p| (p.name.as_str(), p.value, p.unit, p.detail.as_str()));
    figure_table(
        &mut md,
        "Proxy (its core in this process, one thread)",
        2,
        proxy,
    );
    let _ = writeln!(
        md,
        "\n## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|"
    );
    for t in &report.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.name,
            t.goal,
            t.measured,
            if t.met { "yes" } else { "**no**" }
        );
    }
    if let Some(base) = baseline {
        let _ = write!(md, "{}", compare(report, base));
    }
    md
}

/// Every number in a report, by path; array items are named by their `compression`, `kind`,
/// `scenario` or `parser` (so figures match across runs whatever the order).
fn flatten(value: &Value, path: &str, out: &mut BTreeMap<String, f64>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.insert(path.to_owned(), f);
            }
        }
        Value::Object(map) => {
            for (key, v) in map {
                flatten(v, &join(key), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let name: Vec<&str> = ["client", "compression", "kind", "scenario", "parser"]
                    .iter()
                    .filter_map(|k| v.get(k).and_then(Value::as_str))
                    .collect();
                let key = if name.is_empty() {
                    i.to_string()
                } else {
                    format!("[{}]", name.join(", "))
                };
                flatten(v, &join(&key), out);
            }
        }
        _ => {}
    }
}

/// A figure with as many decimals as its size needs.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 1000.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.4}"),
    }
}

/// This run against an earlier report: every figure both have that changed, as a ratio.
fn compare(report: &Report, base: &Value) -> String {
    let mut md = String::new();
    let (mut new, mut old) = (BTreeMap::new(), BTreeMap::new());
    match serde_json::to_value(report) {
        Ok(v) => flatten(&v, "", &mut new),
        Err(e) => return format!("\n(cannot compare with the baseline: {e})\n"),
    }
    flatten(base, "", &mut old);
    let revision = base["git_revision"].as_str().unwrap_or("unknown");
    let _ = writeln!(
        md,
        "\n## Against the baseline (revision `{revision}`): this run / baseline\n\nFor times and memory lower is better; for MB/s, events/s and ratios to raw decompression higher is better.\n"
    );
    if base["quick"].as_bool() != Some(report.quick) {
        let _ = writeln!(
            md,
            "**One of the two runs is a quick run**: sizes differ, so compare ratios, not times.\n"
        );
    }
    let _ = writeln!(
        md,
        "| figure | baseline | this run | ratio |\n|---|---:|---:|---:|"
    );
    let (mut same, mut only_new) = (0, 0);
    for (path, value) in &new {
        match old.get(path) {
            Some(before) if before == value => same += 1,
            Some(before) => {
                let ratio = if *before == 0.0 {
                    "–".to_owned()
                } else {
                    format!("{:.3}", value / before)
                };
                let _ = writeln!(
                    md,
                    "| {path} | {} | {} | {ratio} |",
                    num(*before),
                    num(*value)
                );
            }
            None => only_new += 1,
        }
    }
    let _ = writeln!(
        md,
        "\n{same} figures unchanged; {only_new} new in this run; {} only in the baseline.",
        old.keys().filter(|k| !new.contains_key(*k)).count()
    );
    md
}

/// A bar chart of decode µs per message by event type, one colour per compression.
fn svg(report: &Report) -> String {
    let colours = ["#4e79a7", "#f28e2b", "#59a14f"];
    let (width, row, label) = (900.0, 26.0, 190.0);
    let max = report
        .decode
        .iter()
        .flat_map(|r| r.per_kind_us.iter().map(|k| k.decode_us.max(1e-3).log10()))
        .fold(0.0f64, f64::max)
        + 0.5;
    let height = 60.0 + KINDS.len() as f64 * row * report.decode.len() as f64 + 20.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<text x="10" y="20" font-size="15">Decode µs per message by event type (log scale, lower is better)</text>
"#
    );
    let mut y = 40.0;
    for (i, kind) in KINDS.iter().enumerate() {
        let _ = writeln!(s, r#"<text x="10" y="{}">{kind}</text>"#, y + row * 0.8);
        for (c, r) in report.decode.iter().enumerate() {
            let us = r.per_kind_us[i].decode_us;
            let w = ((us.max(1e-3).log10() + 2.0) / (max + 2.0)).clamp(0.0, 1.0)
                * (width - label - 120.0);
            let _ = writeln!(
                s,
                r#"<rect x="{label}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{us:.2} µs ({})</text>"#,
                row - 4.0,
                colours[c % colours.len()],
                label + w + 4.0,
                y + row * 0.65,
                r.compression
            );
            y += row;
        }
    }
    s.push_str("</svg>\n");
    s
}

pub(crate) fn write(report: &Report, out: &Path, baseline: Option<&Path>) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let baseline = match baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let md = markdown(report, baseline.as_ref());
    for (name, body) in [
        ("report.json", json.as_str()),
        ("report.md", md.as_str()),
        ("decode-us-per-message.svg", svg(report).as_str()),
        (
            "memory-per-shard.svg",
            super::versus::memory_svg(&report.memory_versus).as_str(),
        ),
    ] {
        let path = out.join(name);
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{md}");
    eprintln!(
        "[bench] wrote {}/report.json, report.md, decode-us-per-message.svg and memory-per-shard.svg",
        out.display()
    );
    Ok(())
}

/// A section of `(figure, value, unit, how)` rows, values with `decimals`; nothing if empty.
fn figure_table<'a>(
    md: &mut String,
    title: &str,
    decimals: usize,
    rows: impl Iterator<Item = (&'a str, f64, &'a str, &'a str)>,
) {
    let rows: Vec<_> = rows.collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## {title}\n\n| figure | value | unit | how |\n|---|---:|---|---|"
    );
    for (name, value, unit, how) in rows {
        let _ = writeln!(md, "| {name} | {value:.decimals$} | {unit} | {how} |");
    }
}
