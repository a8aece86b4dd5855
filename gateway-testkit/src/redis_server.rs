//! A `redis-server` of a test's own, for testing what a bot keeps in Redis (identify queues,
//! shard leases, event streams) against the real server rather than a mock.

use std::time::Duration;

/// A `redis-server` on a free port of 127.0.0.1, stopped when dropped; or, when `REDIS_URL` is
/// set, that server (left running).
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    port: u16,
    child: Option<std::process::Child>,
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
        let port = free_port()?;
        let server = Self {
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            child: Some(spawn(port)?),
        };
        wait_for(port).await?;
        Ok(server)
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
        self.child = Some(spawn(self.port)?);
        wait_for(self.port).await
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Err(e) = child.kill() {
                tracing::warn!(error = %e, "redis-server not stopped");
            }
            if let Err(e) = child.wait() {
                tracing::warn!(error = %e, "redis-server not reaped");
            }
        }
    }
}

/// A port of 127.0.0.1 free a moment ago.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(port: u16) -> std::io::Result<std::process::Child> {
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

/// Until `redis-server` on `port` accepts connections.
pub(crate) async fn wait_for(port: u16) -> std::io::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis-server did not accept connections within 5 s",
    ))
}
