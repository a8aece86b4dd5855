//! One (client, compression) pair: a fresh server, one probe run, and what came of it.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::process::{Server, TOKEN, create, read_all, wait};
use super::setup::Probe;
use super::{Client, Compression, Layout};

/// The checks of the contract, in order.
pub(crate) const CHECKS: [&str; 5] = [
    "ready",
    "guilds_typed",
    "heartbeat_acks",
    "member_chunks",
    "resume",
];
/// Lines of the probe's stderr, and of the server's log, quoted for a failure.
const TAIL: usize = 8;

/// One `CHECK` line of a probe.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// The check's name.
    pub(crate) name: String,
    /// `ok` (true) or `fail`.
    pub(crate) ok: bool,
    /// The detail or the reason.
    pub(crate) detail: String,
}

/// What one pair's run came to.
#[derive(Debug)]
pub(crate) struct PairResult {
    /// The client.
    pub(crate) client: Client,
    /// Its library and version, `?` when unknown.
    pub(crate) version: String,
    /// The compression.
    pub(crate) compression: Compression,
    /// The probe's `CHECK` lines.
    pub(crate) checks: Vec<Check>,
    /// Every check ok and exit code 0.
    pub(crate) passed: bool,
    /// For a failure: why, in one line.
    pub(crate) reason: Option<String>,
    /// For a failure: the probe's last stderr lines and the server's warnings and closes.
    pub(crate) evidence: Vec<String>,
    /// How long the probe ran.
    pub(crate) elapsed: Duration,
}

impl PairResult {
    /// A pair whose probe could not be prepared.
    pub(crate) fn setup_failed(client: Client, compression: Compression, error: &str) -> Self {
        Self {
            client,
            version: "?".to_owned(),
            compression,
            checks: Vec::new(),
            passed: false,
            reason: Some(error.to_owned()),
            evidence: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// The verdict of check `name`: `Some(true)` ok, `Some(false)` failed, `None` not reported.
    pub(crate) fn check(&self, name: &str) -> Option<bool> {
        self.checks.iter().find(|c| c.name == name).map(|c| c.ok)
    }
}

/// The binaries a pair starts: the fake gateway, and the proxy in front of it if asked.
pub(crate) struct Servers<'a> {
    pub(crate) testkit: &'a Path,
    pub(crate) proxy: Option<&'a Path>,
}

/// Runs `probe` for `compression` against its own fresh server, saying so on stderr first.
pub(crate) fn run(
    layout: &Layout,
    servers: &Servers<'_>,
    probe: &Probe,
    client: Client,
    compression: Compression,
    timeout: Duration,
) -> PairResult {
    eprintln!(
        "[interop] {} ({}) with {}…",
        client.name(),
        probe.version,
        compression.as_str()
    );
    let via = if servers.proxy.is_some() {
        "-proxy"
    } else {
        ""
    };
    let name = format!("{}-{}{via}", client.name(), compression.as_str());
    let server_log = layout.logs().join(format!("{name}.server.log"));
    let probe_log = layout.logs().join(format!("{name}.probe.log"));
    let mut result = PairResult {
        version: probe.version.clone(),
        ..PairResult::setup_failed(client, compression, "")
    };
    let outcome = run_probe(
        servers,
        &server_log,
        probe,
        compression,
        timeout,
        &probe_log,
    );
    let server_lines = server_notes(&server_log)
        .into_iter()
        .map(|l| format!("server: {l}"));
    let run = match outcome {
        Ok(run) => run,
        Err(e) => {
            result.reason = Some(e);
            result.evidence = server_lines.collect();
            return result;
        }
    };
    result.elapsed = run.elapsed;
    result.checks = parse_checks(&run.stdout);
    result.reason = failure(&result.checks, &run);
    result.passed = result.reason.is_none();
    if !result.passed {
        let probe_text = std::fs::read_to_string(&probe_log).unwrap_or_default();
        result.evidence = tail(&probe_text, TAIL)
            .into_iter()
            .map(|l| format!("probe: {l}"))
            .chain(server_lines)
            .collect();
        let logs = format!("logs: {} and {}", probe_log.display(), server_log.display());
        result.evidence.push(logs);
    }
    result
}

/// How a probe's process ended.
#[derive(Debug)]
struct ProbeRun {
    /// Its stdout.
    stdout: String,
    /// Its exit status, `None` if it was killed at the timeout.
    status: Option<ExitStatus>,
    /// The timeout it had.
    timeout: Duration,
    /// How long it ran.
    elapsed: Duration,
}

/// Starts a server, runs the probe against it with a timeout, and stops the server.
fn run_probe(
    servers: &Servers<'_>,
    server_log: &Path,
    probe: &Probe,
    compression: Compression,
    timeout: Duration,
    probe_log: &Path,
) -> Result<ProbeRun, String> {
    let mut server = Server::start(servers.testkit, server_log, TOKEN)?;
    let mut proxy = match servers.proxy {
        Some(binary) => {
            let log = server_log.with_extension("proxy.log");
            Some(Server::start_proxy(binary, &log, TOKEN, &server.rest)?)
        }
        None => None,
    };
    let rest = proxy.as_ref().map_or(&server.rest, |p| &p.rest).clone();
    let outcome = (|| {
        let mut command = probe.command(compression)?;
        command
            .arg("--rest")
            .arg(&rest)
            .args(["--token", TOKEN, "--compression", compression.as_str()])
            .env("PYTHONUNBUFFERED", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(create(probe_log)?);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the probe {:?}: {e}", command.get_program()))?;
        let stdout = read_all(&mut child);
        let status = wait(&mut child, timeout);
        let elapsed = started.elapsed();
        let stdout = stdout
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        Ok(ProbeRun {
            stdout,
            status,
            timeout,
            elapsed,
        })
    })();
    if let Some(proxy) = &mut proxy {
        proxy.stop();
    }
    server.stop();
    outcome
}

/// Why a run failed, or `None` if it passed.
fn failure(checks: &[Check], run: &ProbeRun) -> Option<String> {
    let Some(status) = run.status else {
        return Some(format!(
            "killed after {}s without finishing",
            run.timeout.as_secs()
        ));
    };
    if let Some(failed) = checks.iter().find(|c| !c.ok) {
        return Some(format!("{}: {}", failed.name, failed.detail));
    }
    let missing: Vec<&str> = CHECKS
        .iter()
        .copied()
        .filter(|name| !checks.iter().any(|c| c.name == *name))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "no CHECK line for {} ({status})",
            missing.join(", ")
        ));
    }
    (!status.success()).then(|| format!("every check ok, but the probe exited with {status}"))
}

/// The `CHECK <name> ok|fail <detail>` lines of a probe's stdout.
fn parse_checks(stdout: &str) -> Vec<Check> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut parts = line.trim_end().splitn(4, ' ');
            if parts.next()? != "CHECK" {
                return None;
            }
            let name = parts.next()?.to_owned();
            let ok = match parts.next()? {
                "ok" => true,
                "fail" => false,
                _ => return None,
            };
            let detail = parts.next().unwrap_or_default().to_owned();
            Some(Check { name, ok, detail })
        })
        .collect()
}

/// The server log's warnings, errors and closes (the reasons it ended connections).
fn server_notes(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let notes: Vec<String> = text
        .lines()
        .map(str::to_owned)
        .filter(|l| {
            l.contains(" WARN ")
                || l.contains(" ERROR ")
                || l.contains("closing")
                || l.contains("refused")
        })
        .collect();
    notes[notes.len().saturating_sub(TAIL)..].to_vec()
}

/// The last `n` non-empty lines of `text` (children run with `NO_COLOR`).
fn tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::{ProbeRun, failure, parse_checks};

    #[test]
    fn check_lines_are_parsed() {
        let checks = parse_checks(
            "noise\nCHECK ready ok session s\nCHECK resume fail no RESUMED: x y\nCHECK bad maybe\n",
        );
        assert_eq!(checks.len(), 2);
        assert!(checks[0].ok);
        assert_eq!(checks[0].detail, "session s");
        assert_eq!(checks[1].name, "resume");
        assert!(!checks[1].ok);
        assert_eq!(checks[1].detail, "no RESUMED: x y");
    }

    #[test]
    fn missing_checks_and_exit_codes_fail_the_pair() {
        let Ok(status) = Command::new("true").status() else {
            return;
        };
        let run = |stdout: &str| ProbeRun {
            stdout: stdout.to_owned(),
            status: Some(status),
            timeout: Duration::from_secs(90),
            elapsed: Duration::ZERO,
        };
        let all_ok = "CHECK ready ok a\nCHECK guilds_typed ok b\nCHECK heartbeat_acks ok c\n\
                      CHECK member_chunks ok d\nCHECK resume ok e\n";
        let passing = run(all_ok);
        assert_eq!(failure(&parse_checks(&passing.stdout), &passing), None);
        let short = run("CHECK ready ok a\n");
        let reason = failure(&parse_checks(&short.stdout), &short).unwrap_or_default();
        assert!(
            reason.starts_with("no CHECK line for guilds_typed"),
            "{reason}"
        );
        let failed = run("CHECK ready ok a\nCHECK guilds_typed fail 1 of 8 failed\n");
        let reason = failure(&parse_checks(&failed.stdout), &failed).unwrap_or_default();
        assert_eq!(reason, "guilds_typed: 1 of 8 failed");
    }
}
