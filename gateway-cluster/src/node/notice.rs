//! Release notices: a node that releases a lease publishes the shard's number (see
//! [`Keys::released`](crate::Keys::released)), and every other node looks for free shards at
//! once instead of at its next round of upkeep. A notice is a hint: a node that misses one
//! (Redis away, the subscription lost) takes the lease at its next round, as before.

use std::time::Duration;

use futures_util::StreamExt;
use gateway_shard::RedisTarget;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::error::ClusterError;

/// Subscribes to `channel` on `redis`, beside the driver, until the receiver is dropped;
/// reconnects with a growing pause. Notices that come while one waits are one.
///
/// On a Redis Cluster, a PUBLISH reaches the subscribers of every node, so one node is enough:
/// each try takes the next of the target's URLs, so a node that is gone is left behind.
pub(super) fn spawn(redis: RedisTarget, channel: String) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        for url in redis.urls().iter().cycle() {
            // The connection and subscription too may hang on a Redis away: the driver's end
            // still ends the task.
            let listened = tokio::select! {
                () = tx.closed() => return,
                listened = listen(url, &channel, &tx) => listened,
            };
            match listened {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "release notices: subscribing again"),
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    });
    rx
}

/// One subscription: `Ok` once the driver is gone, an error when the connection is.
async fn listen(url: &str, channel: &str, tx: &mpsc::Sender<()>) -> Result<(), ClusterError> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            () = tx.closed() => return Ok(()),
            message = messages.next() => match message {
                Some(_) => match tx.try_send(()) {
                    // One is waiting already: the round it starts sees this release too.
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    Err(TrySendError::Closed(())) => return Ok(()),
                },
                None => return Err(ClusterError::Stopped),
            },
        }
    }
}
