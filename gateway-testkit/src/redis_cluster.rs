//! A Redis Cluster of a test's own on loopback: `redis-server --cluster-enabled yes` per node,
//! joined by `redis-cli --cluster create`, with replicas a test can promote, so that a bot's
//! Redis use is tried against the cluster protocol (slots, `MOVED`, failover) and not only
//! against one server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::redis_server::{free_port, spawn_on_free_port, stop};

/// The cluster's node timeout: how long a primary may be silent before its replica is elected
/// in its place.
const NODE_TIMEOUT_MS: u64 = 1_000;

/// A Redis Cluster on free ports of 127.0.0.1, stopped (and its files removed) when dropped.
/// Each node logs to `PORT.log` in a folder of the system's temporary directory; set
/// `KEEP_CLUSTER` to keep the folder for a look after a failed test.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

#[derive(Debug)]
struct Node {
    port: u16,
    child: Option<Child>,
}

fn io_error(what: impl Into<String>) -> std::io::Error {
    std::io::Error::other(what.into())
}

impl RedisCluster {
    /// Starts `primaries` primaries with `replicas` replicas each (`redis-server` and
    /// `redis-cli` must be on the `PATH`), and waits until every slot is served.
    pub async fn start(primaries: usize, replicas: usize) -> std::io::Result<Self> {
        if primaries < 3 {
            return Err(io_error("Redis Cluster needs at least 3 primaries"));
        }
        let dir = std::env::temp_dir().join(format!(
            "gateway-testkit-redis-cluster-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..primaries * (1 + replicas) {
            let dir = cluster.dir.clone();
            let (port, child) = spawn_on_free_port(|port| spawn_node(&dir, port)).await?;
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(io_error(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        cluster.wait_until_serving().await?;
        cluster.wait_until_replicated().await?;
        // On two loaded cores a primary may miss the node timeout now and then: no replica takes
        // over unless a test asks (a planned failover works either way).
        for replica in cluster.replicas()? {
            cli(
                replica,
                &["CONFIG", "SET", "cluster-replica-no-failover", "yes"],
            )?;
        }
        Ok(cluster)
    }

    /// The nodes' URLs, comma-separated: what a client of a cluster is given
    /// (`redis://127.0.0.1:P1/,redis://127.0.0.1:P2/,…`).
    pub fn url(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect();
        urls.join(",")
    }

    /// The port of the primary that serves `key`'s slot.
    pub fn primary_of(&self, key: &str) -> std::io::Result<u16> {
        let port = self.live_port()?;
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()
            .map_err(|_| io_error("CLUSTER KEYSLOT: not a number"))?;
        self.topology()?
            .into_iter()
            .find(|n| n.primary && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|n| n.port)
            .ok_or_else(|| io_error(format!("no primary serves slot {slot}")))
    }

    /// A planned failover of the primary that serves `key`: one of its replicas takes over
    /// once it has every write (`CLUSTER FAILOVER`), as in a rolling upgrade of Redis. Returns
    /// when the replica is the primary and every slot is served.
    pub async fn fail_over(&self, key: &str) -> std::io::Result<()> {
        let primary = self.primary_of(key)?;
        let replica = self.replica_of(primary)?;
        may_fail_over(replica, true)?;
        cli(replica, &["CLUSTER", "FAILOVER"])?;
        self.wait_for_primary(key, replica).await?;
        // The old primary is the replica now.
        may_fail_over(primary, false)?;
        Ok(())
    }

    /// An unplanned failover: the primary that serves `key` is killed with SIGKILL, and one of
    /// its replicas is elected after the node timeout. It is killed once the replica has every
    /// write it took (Redis replicates asynchronously: what it had not replicated would be lost,
    /// which is not what this tries). Returns once every slot is served again.
    pub async fn kill_primary_of(&mut self, key: &str) -> std::io::Result<()> {
        let primary = self.primary_of(key)?;
        let replica = self.replica_of(primary)?;
        may_fail_over(replica, true)?;
        self.wait_for_offsets(primary, replica).await?;
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == primary)
            && let Some(mut child) = node.child.take()
        {
            child.kill()?;
            child.wait()?;
        }
        self.wait_for_primary(key, replica).await
    }

    /// Until `replica` has replicated everything `primary` took.
    async fn wait_for_offsets(&self, primary: u16, replica: u16) -> std::io::Result<()> {
        let offset = |port: u16, field: &str| -> std::io::Result<u64> {
            let info = cli(port, &["INFO", "replication"])?;
            info.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| io_error(format!("no {field} in INFO replication")))
        };
        for _ in 0..400 {
            if offset(replica, "slave_repl_offset")? >= offset(primary, "master_repl_offset")? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(io_error("the replica did not catch up within 4 s"))
    }

    fn replicas(&self) -> std::io::Result<Vec<u16>> {
        Ok(self
            .topology()?
            .iter()
            .filter(|n| n.replica_of.is_some())
            .map(|n| n.port)
            .collect())
    }

    fn replica_of(&self, primary: u16) -> std::io::Result<u16> {
        let topology = self.topology()?;
        let id = topology
            .iter()
            .find(|n| n.port == primary)
            .map(|n| n.id.clone())
            .ok_or_else(|| io_error("the primary is not in CLUSTER NODES"))?;
        topology
            .iter()
            .find(|n| n.replica_of.as_deref() == Some(id.as_str()))
            .map(|n| n.port)
            .ok_or_else(|| io_error(format!("the primary on {primary} has no replica")))
    }

    async fn wait_for_primary(&self, key: &str, port: u16) -> std::io::Result<()> {
        for _ in 0..400 {
            if self.primary_of(key).ok() == Some(port) && self.serving(port) {
                return self.wait_until_serving().await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(io_error("the replica was not promoted within 10 s"))
    }

    async fn wait_until_serving(&self) -> std::io::Result<()> {
        for _ in 0..400 {
            if self.live().all(|port| self.serving(port)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(io_error("the cluster did not serve every slot within 10 s"))
    }

    /// Until every replica is linked to its primary: one that never was refuses to take over.
    async fn wait_until_replicated(&self) -> std::io::Result<()> {
        for _ in 0..400 {
            let replicas = self.replicas()?;
            let linked = replicas.iter().all(|port| {
                cli(*port, &["INFO", "replication"])
                    .is_ok_and(|info| info.contains("master_link_status:up"))
            });
            if linked {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(io_error("the replicas did not sync within 10 s"))
    }

    fn serving(&self, port: u16) -> bool {
        cli(port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok"))
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    fn live_port(&self) -> std::io::Result<u16> {
        self.live()
            .next()
            .ok_or_else(|| io_error("no node of the cluster is running"))
    }

    fn topology(&self) -> std::io::Result<Vec<NodeLine>> {
        let text = cli(self.live_port()?, &["CLUSTER", "NODES"])?;
        Ok(text.lines().filter_map(NodeLine::parse).collect())
    }
}

/// One line of `CLUSTER NODES`, as far as the fixture needs it.
#[derive(Debug)]
struct NodeLine {
    id: String,
    port: u16,
    primary: bool,
    replica_of: Option<String>,
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (id, address, flags, master) = (
            fields.first()?,
            fields.get(1)?,
            fields.get(2)?,
            fields.get(3)?,
        );
        let port = address
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let primary = flags.split(',').any(|f| f == "master") && !flags.contains("fail");
        let slots = fields
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|range| match range.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => range.parse().ok().map(|s| (s, s)),
            })
            .collect();
        Some(Self {
            id: (*id).to_owned(),
            port,
            primary,
            replica_of: (*master != "-").then(|| (*master).to_owned()),
            slots,
        })
    }
}

/// Whether the replica on `port` may take over from its primary on its own.
fn may_fail_over(port: u16, may: bool) -> std::io::Result<()> {
    let no_failover = if may { "no" } else { "yes" };
    cli(
        port,
        &["CONFIG", "SET", "cluster-replica-no-failover", no_failover],
    )
    .map(drop)
}

/// `redis-cli -p port args…`, its output.
fn spawn_node(dir: &std::path::Path, port: u16) -> std::io::Result<Child> {
    // The bus port defaults to the port + 10000, which is no port at all above 55535.
    let bus = free_port()?;
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-port", &bus.to_string()])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--logfile", &format!("{port}.log")])
        // A replica syncs at once (the default waits 5 s for others to share the
        // transfer), so that it can take over from the start of a test.
        .args(["--repl-diskless-sync-delay", "0"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("redis-server is needed (apt-get install redis-server): {e}"),
            )
        })
}

fn cli(port: u16, args: &[&str]) -> std::io::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || text.starts_with("ERR") {
        return Err(io_error(format!("redis-cli {args:?}: {text}")));
    }
    Ok(text)
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                stop(child);
            }
        }
        if std::env::var_os("KEEP_CLUSTER").is_none()
            && let Err(e) = std::fs::remove_dir_all(&self.dir)
        {
            tracing::warn!(error = %e, "the cluster's files not removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NodeLine;

    #[test]
    fn a_cluster_nodes_line_is_read() {
        let primary = NodeLine::parse(
            "07c37 127.0.0.1:30004@40004 myself,master - 0 1426238317239 4 connected 0-5460 5461 [5462->-e7d1]",
        )
        .unwrap();
        assert_eq!(primary.port, 30004);
        assert!(primary.primary);
        assert_eq!(primary.slots, vec![(0, 5460), (5461, 5461)]);
        let replica =
            NodeLine::parse("e7d1e 127.0.0.1:30002@40002 slave 07c37 0 1426238316232 2 connected")
                .unwrap();
        assert_eq!(replica.replica_of.as_deref(), Some("07c37"));
        assert!(!replica.primary);
    }
}
