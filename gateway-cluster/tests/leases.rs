//! Leases on a real redis-server: a round takes free leases in batches, never one another node
//! holds, with a fencing token each; a handoff's release is announced on the release channel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use gateway_cluster::{Keys, Leases};

#[tokio::test]
async fn leases_are_taken_in_batches_around_the_held_ones_and_a_release_is_announced() {
    let redis = common::redis().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = common::connection(redis.url()).await;
    let keys = Keys::new("leases-test");
    let ttl = Duration::from_secs(10);
    let a = Leases::new(connection.clone(), keys.clone(), "a", ttl);
    let b = Leases::new(connection, keys.clone(), "b", ttl);
    let held = b.acquire(3).await.unwrap().unwrap();

    // 300 candidates: three calls of a batch each; 3 is b's.
    let candidates: Vec<u32> = (0..300).collect();
    let taken = a.acquire_many(&candidates, 200).await.unwrap();
    let shards: Vec<u32> = taken.iter().map(|l| l.shard).collect();
    assert_eq!(shards.len(), 200);
    assert!(!shards.contains(&3), "never a lease another node holds");
    assert_eq!(shards[..4], [0, 1, 2, 4], "in the candidates' order");
    assert!(taken.iter().all(|l| l.token >= 1));
    let again = a.acquire_many(&candidates, 300).await.unwrap();
    assert_eq!(again.len(), 300 - 200 - 1, "only what is still free");

    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(keys.released()).await.unwrap();
    // A plain release (a shard the node could not run) is not announced; a handoff's is.
    let other = a.acquire_many(&[300], 1).await.unwrap().remove(0);
    a.release(&other).await.unwrap();
    b.release_announced(&held).await.unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("no release notice")
        .unwrap();
    assert_eq!(
        notice.get_payload::<u32>().unwrap(),
        3,
        "the announced one first"
    );
    let taken = a.acquire_many(&[3], 1).await.unwrap();
    assert_eq!(taken[0].token, held.token + 1, "the next fencing token");
}
