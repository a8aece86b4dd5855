//! The clients measured side by side, each in a process of its own: ours (`xtask/shard-probe`,
//! built on its own so that gateway-shard has its default features) and twilight-gateway 0.18
//! (`xtask/twilight-probe`, built once per compression), against `gateway-testkit serve` in a
//! third process.
//!
//! A probe prints `ready` once its shards are connected with their guilds, when the bench asks the
//! gateway for the traffic to measure (`POST /testkit/replay`), and then one JSON line: its
//! figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use gateway_codec::Compression;

/// A child process killed when dropped (the fake gateway).
pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // Killing a process that already exited fails, and either way it is gone after `wait`.
        if let Err(e) = self.0.kill() {
            eprintln!("[bench] the fake gateway: {e}");
        }
        if let Err(e) = self.0.wait() {
            eprintln!("[bench] the fake gateway: {e}");
        }
    }
}

/// The workspace's target directory.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Builds one binary package of the workspace in release, on its own (its features alone), and
/// returns its path.
fn build_release(root: &Path, package: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            package,
            "--bin",
            package,
        ])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cargo build -p {package}: {e}"))?;
    if !status.success() {
        return Err(format!("building {package} failed"));
    }
    Ok(target_dir(root).join("release").join(package))
}

/// Builds `gateway-proxy` in release and returns its path.
pub(crate) fn proxy_binary(root: &Path) -> Result<PathBuf, String> {
    build_release(root, "gateway-proxy")
}

/// Builds `gateway-testkit` in release and returns its path.
pub(crate) fn testkit_binary(root: &Path) -> Result<PathBuf, String> {
    build_release(root, "gateway-testkit")
}

/// A client measured in the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    /// Our `Shard` / `ShardGroup`.
    Ours,
    /// The same, built against tungstenite with our read-buffer patch (memory only).
    OursPatched,
    /// twilight-gateway, pinned in `xtask/twilight-probe/Cargo.lock`: the user's loop reads its
    /// raw messages, the lightest way to use it.
    Twilight,
    /// The same, the user's loop reading typed events (`next_event(EventTypeFlags::all())`), as
    /// most twilight bots do (end to end only).
    TwilightTyped,
}

impl Client {
    /// The name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::OursPatched => "ours, tungstenite patched",
            Self::Twilight => "twilight-gateway 0.18",
            Self::TwilightTyped => "twilight-gateway 0.18, typed events",
        }
    }
}

/// The probes' binaries.
pub(crate) struct Probes {
    ours: PathBuf,
    /// Ours against the patched tungstenite, when built.
    pub(crate) ours_patched: Option<PathBuf>,
    twilight_zlib: PathBuf,
    twilight_zstd: PathBuf,
}

impl Probes {
    /// Builds our probe, and twilight's for zlib-stream and for zstd-stream (twilight fixes the
    /// compression at compile time) in release, into `target/bench-twilight`; with `patched`, our
    /// probe against the patched tungstenite too (see `patched`).
    pub(crate) fn build(root: &Path, patched: bool) -> Result<Self, String> {
        eprintln!("[bench] building our probe (xtask/shard-probe)…");
        let ours = build_release(root, "shard-probe")?;
        let ours_patched = if patched {
            Some(super::patched::build(root, &target_dir(root))?)
        } else {
            None
        };
        let dir = root.join("xtask").join("twilight-probe");
        let target = target_dir(root).join("bench-twilight");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut built = Vec::new();
        for feature in ["zlib", "zstd"] {
            eprintln!("[bench] building twilight-gateway's probe ({feature})…");
            let status = Command::new(&cargo)
                .args([
                    "build",
                    "--quiet",
                    "--release",
                    "--locked",
                    "--features",
                    feature,
                ])
                .arg("--target-dir")
                .arg(&target)
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("cargo build (twilight-probe): {e}"))?;
            if !status.success() {
                return Err(format!(
                    "building twilight-probe --features {feature} failed"
                ));
            }
            let to = target.join(format!("twilight-probe-{feature}"));
            std::fs::copy(target.join("release").join("twilight-probe"), &to)
                .map_err(|e| format!("{}: {e}", to.display()))?;
            built.push(to);
        }
        let [twilight_zlib, twilight_zstd] =
            <[PathBuf; 2]>::try_from(built).map_err(|_| "two probes expected")?;
        Ok(Self {
            ours,
            ours_patched,
            twilight_zlib,
            twilight_zstd,
        })
    }

    /// The command that starts `client`'s probe for `compression`: `memory` or `e2e`, with
    /// `args` after the URL.
    pub(crate) fn command(
        &self,
        client: Client,
        compression: Compression,
        task: &str,
        url: &str,
        args: &[String],
    ) -> Result<Command, String> {
        let mut command = match client {
            Client::Ours | Client::OursPatched => {
                let binary = match (client, &self.ours_patched) {
                    (Client::OursPatched, Some(patched)) => patched,
                    (Client::OursPatched, None) => {
                        return Err("the patched probe was not built".into());
                    }
                    _ => &self.ours,
                };
                let mut c = Command::new(binary);
                c.arg(task)
                    .args(["--compression", &compression.to_string()]);
                c
            }
            Client::Twilight | Client::TwilightTyped => {
                let binary = match compression {
                    Compression::ZlibStream => &self.twilight_zlib,
                    Compression::ZstdStream => &self.twilight_zstd,
                    _ => return Err(format!("no twilight probe for {compression}")),
                };
                let mut c = Command::new(binary);
                c.arg(task);
                if client == Client::TwilightTyped {
                    c.arg("--typed");
                }
                c
            }
        };
        command.args(["--url", url]).args(args);
        Ok(command)
    }
}

/// Starts `gateway-testkit serve` with `args`; returns it and its URL.
pub(crate) fn serve(binary: &Path, args: &[String]) -> Result<(Server, String), String> {
    let mut child = Command::new(binary)
        .args(["serve", "--port", "0", "--uniform", "--seed", "1"])
        .args(["--identify-window-ms", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let server = Server(child);
    let url = BufReader::new(stdout)
        .lines()
        .next()
        .ok_or("no URL")?
        .map_err(|e| e.to_string())?;
    Ok((server, url))
}

/// Runs a probe: once it says `ready`, POSTs `trigger` (a path) to the gateway at `url`; returns
/// the probe's JSON line.
pub(crate) fn run_probe(
    mut command: Command,
    url: &str,
    trigger: Option<&str>,
) -> Result<String, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("probe: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        stop(&mut child);
        return Err("the probe has no stdout".into());
    };
    let mut figure = None;
    for line in BufReader::new(stdout).lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                stop(&mut child);
                return Err(format!("probe: {e}"));
            }
        };
        if line == "ready" {
            if let Some(path) = trigger
                && let Err(e) = post(url, path)
            {
                stop(&mut child);
                return Err(e);
            }
        } else if line.starts_with('{') {
            figure = Some(line);
        }
    }
    let status = child.wait().map_err(|e| format!("probe: {e}"))?;
    match figure {
        Some(line) if status.success() => Ok(line),
        _ => Err(format!("the probe failed ({status})")),
    }
}

/// Kills a probe the bench gives up on, and reaps it.
fn stop(child: &mut Child) {
    if let Err(e) = child.kill() {
        eprintln!("[bench] stopping the probe: {e}");
    }
    if let Err(e) = child.wait() {
        eprintln!("[bench] stopping the probe: {e}");
    }
}

/// `POST path` on the gateway's port (the testkit answers plain HTTP there).
fn post(url: &str, path: &str) -> Result<(), String> {
    request(url, "POST", path).map(drop)
}

/// `GET path` on the gateway's port; returns the body.
pub(crate) fn get(url: &str, path: &str) -> Result<String, String> {
    request(url, "GET", path)
}

/// One plain HTTP request on the gateway's port; returns the body of a 200.
fn request(url: &str, method: &str, path: &str) -> Result<String, String> {
    let addr = url
        .trim_start_matches("ws://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let mut tcp = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{method} {path}: {}",
            answer.lines().next().unwrap_or_default()
        ));
    }
    Ok(answer
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, body)| body.to_owned()))
}
