//! What can go wrong between a node and Redis.

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A stored value is not what this crate writes.
    #[error("unreadable {what} in redis: {detail}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A command could not be written as JSON.
    #[error("command not encoded: {0}")]
    Encode(String),
    /// A shard could not start.
    #[error(transparent)]
    Shard(#[from] gateway_shard::ShardError),
    /// The identify queue could not be reached.
    #[error(transparent)]
    Identify(#[from] gateway_shard::identify::IdentifyError),
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

/// Runs a Redis call with a deadline, so that a hung Redis never stalls a node's loop.
pub(crate) async fn timed<T>(
    limit: std::time::Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClusterError::Timeout(limit)),
    }
}
