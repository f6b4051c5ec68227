//! What an operator sees in Redis: every key under `SESSION_KEY_PREFIX`, records as readable
//! JSON (or MessagePack), either codec reading the other's records, and an undecodable record
//! starting a fresh session instead of a 500.

use app::{Keys, SessionCodec};
use test_kit::RedisServer;

use crate::helpers::{Cluster, seed_visit, user};

#[tokio::test]
async fn sessions_live_under_the_prefix_as_readable_json() {
    // Arrange: the original demo's namespace, locking on (its helper keys too). The shipped
    // ACL allows `session:*` only, so this runs without it.
    let cluster = Cluster::start_on(RedisServer::start_without_acl(), 2, |c| {
        c.session_key_prefix = Keys::new("oauth.session:").expect("valid");
    })
    .await;
    let client = user();

    // Act: three views, across both replicas.
    for i in 0..3 {
        seed_visit(&client, &cluster.url(i % 2, "/session")).await;
    }
    let keys = cluster.redis.cli(&["--scan", "--pattern", "*"]);
    let records = cluster
        .redis
        .cli(&["--scan", "--pattern", "oauth.session:{*}"]);
    let record = records.lines().next().expect("one record").to_owned();
    let value = cluster.redis.cli(&["GET", &record]);

    // Assert: nothing outside the prefix, and the record reads as JSON.
    for key in keys.lines() {
        assert!(
            key.starts_with("oauth.session:{"),
            "{key} outside the prefix"
        );
    }
    assert_eq!(records.lines().count(), 1, "{records}");
    let json: serde_json::Value = serde_json::from_str(&value).expect("a JSON record");
    assert_eq!(json["data"]["views"], 3, "{value}");
    assert_eq!(
        json["data"]["history"].as_array().map(Vec::len),
        Some(3),
        "{value}"
    );
    assert!(
        json["expires"].as_str().is_some_and(|e| e.ends_with('Z')),
        "{value}"
    );
}

#[tokio::test]
async fn switching_codec_loses_no_session() {
    // Arrange: replica 0 writes MessagePack, replica 1 JSON, on one Redis.
    let cluster = Cluster::start(2, |c| {
        if c.node_name.as_deref() == Some("node-0") {
            c.session_codec = SessionCodec::Msgpack;
        }
    })
    .await;
    let client = user();

    // Act + Assert: the count carries over in both directions.
    let mut counts = Vec::new();
    for i in 0..4 {
        counts.push(seed_visit(&client, &cluster.url(i % 2, "/session")).await.0);
        let record = cluster.redis.cli(&["--scan", "--pattern", "session:{*}"]);
        let value = cluster
            .redis
            .cli(&["GET", record.lines().next().expect("record")]);
        // redis-cli prints MessagePack as escaped bytes, JSON as text.
        assert_eq!(
            value.starts_with('{'),
            i % 2 == 1,
            "after replica {}: {value}",
            i % 2
        );
    }
    assert_eq!(counts, [1, 2, 3, 4]);
}

#[tokio::test]
async fn an_undecodable_record_starts_a_fresh_session_not_a_500() {
    let cluster = Cluster::start(1, |_| {}).await;
    // An operator's hand edit, then a record of a format nobody writes.
    for garbage in ["{\"views\": oops", "\u{1}binary"] {
        // Arrange: a session with one view, then every record overwritten.
        let client = user();
        assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 1);
        let records = cluster.redis.cli(&["--scan", "--pattern", "session:{*}"]);
        for record in records.lines() {
            cluster.redis.cli(&["SET", record, garbage, "KEEPTTL"]);
        }

        // Act: seed_visit asserts the 200.
        let (count, _) = seed_visit(&client, &cluster.url(0, "/session")).await;

        // Assert
        assert_eq!(count, 1, "{garbage:?}: a fresh session");
    }
}
