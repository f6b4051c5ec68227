//! Sessions expire after `SESSION_TTL` seconds without a write.

use std::time::Duration;

use crate::helpers::{Cluster, seed_visit, user};

#[tokio::test]
async fn an_idle_session_expires_and_a_new_one_starts() {
    let cluster = Cluster::start(1, |c| c.session_ttl = 1).await;
    let client = user();
    seed_visit(&client, &cluster.url(0, "/session")).await;
    assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 2);
    // Redis expires keys at whole seconds (EXAT); wait past the next boundary.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        cluster.redis.cli(&["DBSIZE"]),
        "0",
        "the record is gone from Redis"
    );
    assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 1);
}
