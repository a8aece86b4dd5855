//! Where a bot's Redis is, and one connection to it that every Redis-backed part shares: one
//! server through a [`ConnectionManager`], or a Redis Cluster through its own client, behind
//! one type.
//!
//! Every key this workspace writes carries the application's hash tag (`{prefix}:…`), so with
//! Redis Cluster all of one application's keys are in one slot, on one primary: its scripts and
//! transactions touch several keys at once, which a cluster allows only within a slot. The
//! cluster client follows the slot when it moves (`MOVED`, a failover) on its own.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where Redis is: one server, or a Redis Cluster by some of its nodes (the client learns the
/// rest from them).
///
/// Parsed from a URL (`redis://127.0.0.1:6379/`), or from a comma-separated list of URLs for a
/// cluster (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`; one node with a trailing comma,
/// `redis://10.0.0.1:7000,`). One URL without a comma is one server, even if it is a cluster
/// node: its replies for slots it does not serve are `MOVED` errors. Its `Debug` and `Display`
/// hide passwords.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTarget {
    /// One Redis server.
    Server(String),
    /// A Redis Cluster, by the URLs of one or more of its nodes.
    Cluster(Vec<String>),
}

/// A Redis target that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisTargetError {
    /// No URL was given.
    #[error("no Redis URL")]
    Empty,
    /// A URL is not a Redis URL (`redis://`, `rediss://`, `unix://`).
    #[error("not a Redis URL: {0}")]
    NotRedis(String),
}

impl RedisTarget {
    /// The URLs to connect to: the server's, or the cluster's seed nodes'.
    pub fn urls(&self) -> &[String] {
        match self {
            Self::Server(url) => std::slice::from_ref(url),
            Self::Cluster(urls) => urls,
        }
    }
}

impl FromStr for RedisTarget {
    type Err = RedisTargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let urls: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = urls.iter().find(|u| !is_redis_url(u)) {
            return Err(RedisTargetError::NotRedis(redacted(bad)));
        }
        match urls.len() {
            0 => Err(RedisTargetError::Empty),
            1 if !s.contains(',') => Ok(Self::Server(urls.into_iter().next().unwrap_or_default())),
            _ => Ok(Self::Cluster(urls)),
        }
    }
}

fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// `url` with any password in it replaced by `***`: in the user info (`user:pw@`), whatever the
/// scheme or none, and in a `pass` query parameter (`unix:///run/redis.sock?pass=pw`).
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let prefix = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{user}:***@{host}")
        }
        None => rest.to_owned(),
    };
    let Some((path, query)) = rest.split_once('?') else {
        return prefix + &rest;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("pass" | "password", _)) => {
                format!("{}=***", pair.split('=').next().unwrap_or(""))
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{prefix}{path}?{}", query.join("&"))
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls().iter().map(|u| redacted(u)).collect();
        f.write_str(&urls.join(","))?;
        if matches!(self, Self::Cluster(urls) if urls.len() == 1) {
            f.write_str(",")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(_) => write!(f, "Server({self})"),
            Self::Cluster(_) => write!(f, "Cluster({self})"),
        }
    }
}

/// How long a reply may take: `None` for 500 ms (the redis client's default for one server, which
/// the cluster client is given too, as it has none of its own). A blocking read
/// (`XREADGROUP BLOCK`) needs more than it blocks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The longest wait for one reply.
    pub response_timeout: Option<Duration>,
}

impl RedisOptions {
    /// Replies may take up to `timeout`.
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }
}

/// A connection to a [`RedisTarget`], cheap to clone (clones share it), that reconnects on its
/// own: to a server through a [`ConnectionManager`], to a cluster through a
/// [`ClusterConnection`], which also follows slots that move. Use it as any
/// [`ConnectionLike`].
#[derive(Clone)]
pub struct RedisConnection(Inner);

#[derive(Clone)]
enum Inner {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Server(_) => "RedisConnection::Server",
            Inner::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

/// A cluster request is retried on a moved slot or a lost node this many times, waiting from
/// `MIN` up to `MAX` between tries (exponentially): about 2 s in all, past which the callers'
/// own deadlines and retries take over (a failover takes the cluster's node timeout, and a
/// shard's lease outlives it or stops the shard, as with any Redis away).
const CLUSTER_RETRIES: u32 = 6;
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 20;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 500;
/// The reply timeout the redis client gives one server by default, given to a cluster too.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

impl RedisConnection {
    /// Connects to `target`.
    pub async fn connect(target: &RedisTarget, options: RedisOptions) -> redis::RedisResult<Self> {
        match target {
            RedisTarget::Server(url) => {
                let client = redis::Client::open(url.as_str())?;
                let mut config = ConnectionManagerConfig::new();
                if let Some(timeout) = options.response_timeout {
                    config = config.set_response_timeout(Some(timeout));
                }
                let manager = ConnectionManager::new_with_config(client, config).await?;
                Ok(Self(Inner::Server(manager)))
            }
            RedisTarget::Cluster(urls) => {
                let timeout = options.response_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
                let connection = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
                    .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
                    .response_timeout(timeout)
                    .build()?
                    .get_async_connection()
                    .await?;
                Ok(Self(Inner::Cluster(connection)))
            }
        }
    }

    /// Connects to the target `url` names (see [`RedisTarget`]).
    pub async fn open(url: &str, options: RedisOptions) -> redis::RedisResult<Self> {
        let target = url.parse::<RedisTarget>().map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "bad Redis target",
                e.to_string(),
            ))
        })?;
        Self::connect(&target, options).await
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Server(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Server(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_server_and_a_list_is_a_cluster() {
        assert_eq!(
            "redis://127.0.0.1:6379/".parse(),
            Ok(RedisTarget::Server("redis://127.0.0.1:6379/".into()))
        );
        assert_eq!(
            "redis://a:1, redis://b:2".parse(),
            Ok(RedisTarget::Cluster(vec![
                "redis://a:1".into(),
                "redis://b:2".into()
            ]))
        );
        // A trailing comma makes a cluster of one seed node.
        assert_eq!(
            "redis://a:1,".parse(),
            Ok(RedisTarget::Cluster(vec!["redis://a:1".into()]))
        );
        assert_eq!("".parse::<RedisTarget>(), Err(RedisTargetError::Empty));
        assert!(matches!(
            "http://a".parse::<RedisTarget>(),
            Err(RedisTargetError::NotRedis(_))
        ));
    }

    #[test]
    fn passwords_are_never_shown() {
        let target: RedisTarget = "redis://bot:hunter2@a:1,redis://:hunter2@b:2"
            .parse()
            .unwrap();
        for shown in [format!("{target}"), format!("{target:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("bot:***@a:1"), "{shown}");
        }
        for bad in ["http://u:hunter2@a", "default:hunter2@a:6379"] {
            let Err(e) = bad.parse::<RedisTarget>() else {
                panic!("not a Redis URL");
            };
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let socket: RedisTarget = "unix:///run/redis.sock?db=1&pass=hunter2".parse().unwrap();
        assert_eq!(socket.to_string(), "unix:///run/redis.sock?db=1&pass=***");
    }

    #[test]
    fn a_single_seed_cluster_shows_as_it_is_written() {
        let target: RedisTarget = "redis://a:1,".parse().unwrap();
        assert_eq!(target.to_string(), "redis://a:1,");
        assert_eq!(target.to_string().parse::<RedisTarget>(), Ok(target));
    }
}
