//! A `redis-server` of a test's own, for testing what a bot keeps in Redis (identify queues,
//! shard leases, event streams) against the real server rather than a mock.

use std::process::Child;
use std::time::Duration;

/// A `redis-server` on a free port of 127.0.0.1, stopped when dropped; or, when `REDIS_URL` is
/// set, that server (left running).
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` (it must be on the `PATH`: `apt-get install redis-server`) without
    /// persistence, and waits until it accepts connections.
    pub async fn start() -> std::io::Result<Self> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Ok(Self {
                url,
                port: 0,
                child: None,
            });
        }
        let (port, child) = spawn_on_free_port(spawn).await?;
        Ok(Self {
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            child: Some(child),
        })
    }

    /// Stops the server and starts a new one, empty, on the same port: Redis restarted without
    /// persistence (a server from `REDIS_URL` is flushed instead, `FLUSHALL` through
    /// `redis-cli`).
    pub async fn restart_empty(&mut self) -> std::io::Result<()> {
        let Some(mut child) = self.child.take() else {
            let status = std::process::Command::new("redis-cli")
                .args(["-u", &self.url, "FLUSHALL"])
                .stdout(std::process::Stdio::null())
                .status()?;
            return if status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other("redis-cli FLUSHALL failed"))
            };
        };
        child.kill()?;
        child.wait()?;
        let mut child = spawn(self.port)?;
        let own = wait_for_own(self.port, &mut child).await;
        self.child = Some(child);
        match own? {
            true => Ok(()),
            false => Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "the restarted redis-server found its port taken",
            )),
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            stop(child);
        }
    }
}

/// A port of 127.0.0.1 free a moment ago.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(port: u16) -> std::io::Result<Child> {
    std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "redis-server is needed (apt-get install redis-server, or set REDIS_URL): {e}"
                ),
            )
        })
}

/// Starts a `redis-server` with `spawn(port)` on a free port, and waits until that very
/// process answers there. A port free a moment ago may be taken by then (by another test's
/// fake gateway or server): the new server exits, or another one answers in its place, and it
/// is started again on another port.
pub(crate) async fn spawn_on_free_port(
    mut spawn: impl FnMut(u16) -> std::io::Result<Child>,
) -> std::io::Result<(u16, Child)> {
    for _ in 0..5 {
        let port = free_port()?;
        let mut child = spawn(port)?;
        if wait_for_own(port, &mut child).await? {
            return Ok((port, child));
        }
        stop(&mut child);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "redis-server found its port taken five times",
    ))
}

/// Until `child` answers on `port`: `false` if it exited first or another process answers.
async fn wait_for_own(port: u16, child: &mut Child) -> std::io::Result<bool> {
    for _ in 0..200 {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        if let Some(pid) = process_id(port).await {
            return Ok(pid == child.id());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis-server did not accept connections within 5 s",
    ))
}

/// The `process_id` that whatever listens on `port` gives for `INFO server`, if it is a Redis
/// server that answers within half a second.
async fn process_id(port: u16) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"INFO server\r\n").await.ok()?;
        let mut reply = Vec::with_capacity(4096);
        loop {
            let text = String::from_utf8_lossy(&reply);
            if let Some(rest) = text.split("process_id:").nth(1)
                && let Some((pid, _)) = rest.split_once('\r')
            {
                return pid.parse().ok();
            }
            if reply.len() > 64 * 1024 || stream.read_buf(&mut reply).await.ok()? == 0 {
                return None;
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(500), ask)
        .await
        .ok()
        .flatten()
}

/// Kills and reaps a server, saying so if either fails.
pub(crate) fn stop(child: &mut Child) {
    if let Err(e) = child.kill() {
        tracing::warn!(error = %e, "redis-server not stopped");
    }
    if let Err(e) = child.wait() {
        tracing::warn!(error = %e, "redis-server not reaped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_finds_its_port_taken_is_not_taken_for_started() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut child = spawn(port).unwrap();
        assert!(!wait_for_own(port, &mut child).await.unwrap());
        stop(&mut child);
    }

    #[tokio::test]
    async fn a_started_server_is_the_one_that_answers() {
        let (port, mut child) = spawn_on_free_port(spawn).await.unwrap();
        assert_eq!(process_id(port).await, Some(child.id()));
        stop(&mut child);
    }
}
