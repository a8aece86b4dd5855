//! The PASS/FAIL table, for the terminal and for `target/interop/report.md`.

use super::pair::{CHECKS, PairResult};

/// Longest reason in the terminal's failure list.
const MAX_REASON: usize = 300;

/// The table and one line per failure, for the terminal.
pub(crate) fn terminal(results: &[PairResult]) -> String {
    let mut out = table(results);
    let failures: Vec<&PairResult> = results.iter().filter(|r| !r.passed).collect();
    if !failures.is_empty() {
        out.push('\n');
        for r in failures {
            let reason = r.reason.as_deref().unwrap_or("?");
            out.push_str(&format!(
                "FAIL {} {}: {}\n",
                r.client.name(),
                r.compression.as_str(),
                shorten(reason, MAX_REASON)
            ));
            for line in &r.evidence {
                out.push_str(&format!("    {}\n", shorten(line, MAX_REASON)));
            }
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    out.push_str(&format!(
        "\n{passed} passed, {} failed",
        results.len() - passed
    ));
    out
}

/// The whole report as Markdown: the table, then every pair's checks and failure evidence.
pub(crate) fn markdown(results: &[PairResult], title: &str) -> String {
    let mut out = format!("# Interop report\n\n{title} (see `interop/CONTRACT.md`).\n\n");
    out.push_str(&table(results));
    let passed = results.iter().filter(|r| r.passed).count();
    out.push_str(&format!(
        "\n{passed} passed, {} failed\n\n",
        results.len() - passed
    ));
    out.push_str("## Details\n");
    for r in results {
        let verdict = if r.passed { "PASS" } else { "FAIL" };
        out.push_str(&format!(
            "\n### {} ({}) {}: {verdict}\n\n",
            r.client.name(),
            r.version,
            r.compression.as_str()
        ));
        if let Some(reason) = &r.reason {
            out.push_str(&format!("Reason: {}\n\n", reason.replace('\n', " ")));
        }
        if !r.checks.is_empty() || !r.evidence.is_empty() {
            out.push_str("```text\n");
            for c in &r.checks {
                let word = if c.ok { "ok" } else { "fail" };
                out.push_str(&format!("CHECK {} {word} {}\n", c.name, c.detail));
            }
            for line in &r.evidence {
                out.push_str(&format!("{line}\n"));
            }
            out.push_str("```\n");
        }
    }
    out
}

/// The PASS/FAIL table: a Markdown table with aligned columns.
fn table(results: &[PairResult]) -> String {
    let mut header: Vec<String> = ["client", "version", "compression", "result"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    header.extend(CHECKS.iter().map(|s| (*s).to_owned()));
    header.push("time".to_owned());
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let mut row = vec![
                r.client.name().to_owned(),
                r.version.clone(),
                r.compression.as_str().to_owned(),
                if r.passed { "PASS" } else { "FAIL" }.to_owned(),
            ];
            row.extend(CHECKS.iter().map(|name| {
                match r.check(name) {
                    Some(true) => "ok",
                    Some(false) => "fail",
                    None => "-",
                }
                .to_owned()
            }));
            row.push(format!("{:.1}s", r.elapsed.as_secs_f64()));
            row
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// `text` cut to `max` characters.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}
