//! `X-Served-By` on every response, `/healthz`, and `/metrics` counting requests.

use crate::helpers::{Cluster, metric, served_by, user};

#[tokio::test]
async fn every_response_names_the_replica() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    for path in [
        "/",
        "/session",
        "/api/session",
        "/healthz",
        "/readyz",
        "/metrics",
        "/missing",
    ] {
        let res = client
            .get(cluster.url(0, path))
            .send()
            .await
            .expect("request");
        assert_eq!(served_by(&res), "node-0", "{path}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    for _ in 0..3 {
        client
            .get(cluster.url(0, "/session"))
            .send()
            .await
            .expect("request");
    }
    client
        .get(cluster.url(0, "/missing"))
        .send()
        .await
        .expect("request");
    let res = client
        .get(cluster.url(0, "/metrics"))
        .send()
        .await
        .expect("metrics");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .contains("openmetrics-text")
    );
    let text = res.text().await.expect("body");
    assert_eq!(
        metric(
            &text,
            r#"http_requests_total{route="/session",method="GET",status="200"}"#
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"http_requests_total{route="unmatched",method="GET",status="404"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"http_request_duration_seconds_count{route="/session"}"#
        ),
        3.0
    );
    assert!(text.contains("redis_errors_total"));
    assert!(text.contains("session_lock_wait_seconds"));
}

#[tokio::test]
async fn metrics_count_redis_errors() {
    let mut cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    cluster.redis.stop();
    client
        .get(cluster.url(0, "/session"))
        .send()
        .await
        .expect("request");
    let text = cluster.metrics(0).await;
    assert!(metric(&text, "redis_errors_total") >= 1.0, "{text}");
}

#[tokio::test]
async fn random_methods_and_paths_do_not_grow_the_metrics() {
    // Arrange
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .count()
    };

    // Act: 500 requests, each with its own made-up method (any token is a valid method)
    // on its own made-up path.
    for i in 0..500u32 {
        let method = reqwest::Method::from_bytes(format!("X{i:04}Q").as_bytes()).expect("token");
        let _ = client
            .request(method, cluster.url(0, &format!("/p{i}")))
            .send()
            .await
            .expect("an answer");
    }
    let text = cluster.metrics(0).await;

    // Assert: they all share one series.
    assert!(series(&text) <= 3, "{text}");
    assert!(
        text.contains(r#"http_requests_total{route="unmatched",method="OTHER",status="#),
        "{text}"
    );
}
