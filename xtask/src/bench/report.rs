//! The report: a table on stdout, report.json, report.md and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

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
pub(crate) fn targets(
    decode: &[CompressionReport],
    memory: &[super::memory::MemoryFigure],
) -> Vec<Target> {
    let mut targets = Vec::new();
    for (compression, scenario, goal) in [
        ("zlib-stream", "idle", 56.0),
        ("zlib-stream", "after traffic", 72.0),
        ("zstd-stream", "after traffic", 400.0),
    ] {
        if let Some(m) = memory
            .iter()
            .find(|m| m.compression == compression && m.scenario == scenario)
        {
            targets.push(Target {
                name: format!(
                    "{compression}: resident KiB per shard, {scenario} ({} shards)",
                    m.shards
                ),
                goal: format!("≤ {goal}"),
                measured: format!("{:.1}", m.rss_per_shard_kib),
                met: m.rss_per_shard_kib <= goal,
            });
        }
    }
    for (name, goal) in [("zlib-stream", 0.85), ("zstd-stream", 0.75)] {
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
    targets
}

fn markdown(report: &Report, baseline: Option<&serde_json::Value>) -> String {
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
    let _ = writeln!(
        md,
        "\n## Memory per connected shard (this process; the server in another)\n"
    );
    let _ = writeln!(
        md,
        "| compression | shards | scenario | JSON received per shard | RSS per shard KiB | Rust heap per shard KiB |\n|---|---:|---|---:|---:|---:|"
    );
    for m in &report.memory {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} KB | {:.1} | {:.1} |",
            m.compression,
            m.shards,
            m.scenario,
            m.received_per_shard as f64 / 1000.0,
            m.rss_per_shard_kib,
            m.rust_heap_per_shard_kib
        );
    }
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
        let _ = writeln!(
            md,
            "\n## Against the baseline (this run / baseline)\n\n| compression | decode MB/s | decode / raw |\n|---|---:|---:|"
        );
        for r in &report.decode {
            let old = base["decode"].as_array().and_then(|a| {
                a.iter()
                    .find(|b| b["compression"] == r.compression.as_str())
            });
            let ratio = |new: f64, key: &str| {
                old.and_then(|o| o[key].as_f64())
                    .map_or("–".to_owned(), |o| format!("{:.3}", new / o))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                r.compression,
                ratio(r.decode_mb_s, "decode_mb_s"),
                r.decode_over_raw
                    .map_or("–".to_owned(), |v| ratio(v, "decode_over_raw"))
            );
        }
    }
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
                serde_json::from_str::<serde_json::Value>(&text)
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
    ] {
        let path = out.join(name);
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{md}");
    eprintln!(
        "[bench] wrote {}/report.json, report.md and decode-us-per-message.svg",
        out.display()
    );
    Ok(())
}
