//! The processes of a pair: the server (started, its URL read, killed) and the probe's plumbing.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to print its URL.
const SERVER_START: Duration = Duration::from_secs(20);

/// A live `gateway-testkit serve`.
pub(crate) struct Server {
    /// The process.
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) rest: String,
}

impl Server {
    /// Starts a server for `token` and waits for its URL line.
    pub(crate) fn start(binary: &Path, log: &Path, token: &str) -> Result<Self, String> {
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--port",
                "0",
                "--token",
                token,
                "--heartbeat-ms",
                "2000",
                // Ten guilds, the tenth large (1,200 to 6,000 members): its full member list
                // comes in several chunks.
                "--guilds",
                "10",
                "--members",
                "600",
            ])
            .env("RUST_LOG", "gateway_testkit=debug");
        Self::spawn(command, log)
    }

    /// Starts a server of `shards` shards that sends each shard's live session 50
    /// `TESTKIT_EVENT`s a second (`--dispatch-rate`), identifies unthrottled.
    pub(crate) fn start_loaded(
        binary: &Path,
        log: &Path,
        token: &str,
        shards: u32,
    ) -> Result<Self, String> {
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--port",
                "0",
                "--token",
                token,
                "--heartbeat-ms",
                "2000",
            ])
            .args(["--shards", &shards.to_string(), "--dispatch-rate", "50"])
            .args(["--max-concurrency", "16", "--identify-window-ms", "0"])
            .env("RUST_LOG", "gateway_testkit=info");
        Self::spawn(command, log)
    }

    /// Starts `gateway-proxy` on `listen` and the Redis at `redis` (`--redis`, application
    /// `interop`), its node named `node`, serving two shards of the server at `upstream` and
    /// telling clients to connect to `front` (its first line, and so [`Server::rest`]).
    pub(crate) fn start_cluster_proxy(
        binary: &Path,
        log: &Path,
        upstream: &str,
        redis: &str,
        node: &str,
        [listen, front]: [std::net::SocketAddr; 2],
    ) -> Result<Self, String> {
        let mut command = Command::new(binary);
        command
            .args([
                "--listen",
                &listen.to_string(),
                "--shards",
                "2",
                "--app",
                "interop",
            ])
            .args([
                "--redis",
                redis,
                "--node",
                node,
                "--url",
                &format!("ws://{front}"),
            ])
            .args(["--heartbeat-interval-ms", "2000", "--metrics", "false"])
            .env("GATEWAY_URL", upstream.replacen("http://", "ws://", 1))
            .env("DISCORD_TOKEN", TOKEN)
            .env("RUST_LOG", "gateway_proxy=debug,gateway_cluster=debug,info");
        Self::spawn(command, log)
    }

    /// Sends SIGTERM and waits for the process to exit by itself within `timeout`.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Result<(), String> {
        terminate(&mut self.child, timeout)
    }

    /// Starts `gateway-proxy` in front of the server at `upstream` (`http://…`), with the
    /// contract's two-second heartbeat for clients, and waits for its URL line.
    pub(crate) fn start_proxy(
        binary: &Path,
        log: &Path,
        token: &str,
        upstream: &str,
    ) -> Result<Self, String> {
        let mut command = Command::new(binary);
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "1",
                "--heartbeat-interval-ms",
                "2000",
            ])
            .env("GATEWAY_URL", upstream.replacen("http://", "ws://", 1))
            .env("DISCORD_TOKEN", token)
            .env("RUST_LOG", "gateway_proxy=debug,gateway_server=debug,info");
        Self::spawn(command, log)
    }

    fn spawn(mut command: Command, log: &Path) -> Result<Self, String> {
        let binary = command.get_program().to_owned();
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(create(log)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", Path::new(&binary).display()))?;
        let first = first_line(&mut child);
        let mut server = Self {
            child,
            rest: String::new(),
        };
        let line = match first.recv_timeout(SERVER_START) {
            Ok(line) => line,
            Err(_) => {
                server.stop();
                return Err(format!(
                    "the server printed no URL within {}s",
                    SERVER_START.as_secs()
                ));
            }
        };
        let Some(address) = line.trim().strip_prefix("ws://") else {
            server.stop();
            return Err(format!(
                "the server's first line is not a ws:// URL: {line:?}"
            ));
        };
        server.rest = format!("http://{}", address.trim_end_matches('/'));
        Ok(server)
    }

    /// Kills the server and reaps it.
    pub(crate) fn stop(&mut self) {
        // It may have exited already (kill then fails); either way it is gone afterwards.
        if let Err(e) = self.child.kill().and_then(|()| self.child.wait().map(drop)) {
            eprintln!("[interop] stopping the server: {e}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The token every probe identifies with, shaped like Discord's (`base64(bot id).time.hmac`):
/// hikari reads the bot id out of the first part and refuses other shapes. The first part is
/// base64 of `123456789012345678`.
pub(crate) const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.interop.gateway-testkit";

/// Creates (truncates) a log file for a child's stderr.
pub(crate) fn create(path: &Path) -> Result<File, String> {
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Reads the child's stdout on a thread; the text arrives on the channel at EOF.
pub(crate) fn read_all(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let mut text = match stdout.read_to_end(&mut bytes) {
                Ok(_) => String::new(),
                Err(e) => format!("(stdout read failed: {e})\n"),
            };
            text.insert_str(0, &String::from_utf8_lossy(&bytes));
            // Nobody waits any more when the pair already timed out.
            drop(tx.send(text));
        });
    }
    rx
}

/// Sends the child's first stdout line on the channel, then drains the rest on the same thread.
pub(crate) fn first_line(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                // Nobody waits any more when the server start already timed out.
                drop(tx.send(line));
            }
            lines.for_each(drop);
        });
    }
    rx
}

/// Sends `child` SIGTERM and waits for it to exit by itself, with success, within `timeout`
/// (killed then).
pub(crate) fn terminate(child: &mut Child, timeout: Duration) -> Result<(), String> {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
    if !status.success() {
        return Err(format!("kill -TERM {pid}: {status}"));
    }
    match wait(child, timeout) {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("after SIGTERM it exited with {status}")),
        None => Err(format!("no exit within {}s of SIGTERM", timeout.as_secs())),
    }
}

/// Waits for the child at most `timeout`; kills it then (`None`).
pub(crate) fn wait(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break,
        }
    }
    if let Err(e) = child.kill().and_then(|()| child.wait().map(drop)) {
        eprintln!("[interop] killing a probe past its timeout: {e}");
    }
    None
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::wait;

    #[test]
    fn a_probe_past_its_timeout_is_killed() {
        let Ok(mut child) = Command::new("sleep").arg("30").spawn() else {
            return; // no `sleep` here: nothing to test
        };
        let started = std::time::Instant::now();
        assert!(wait(&mut child, Duration::from_millis(200)).is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
