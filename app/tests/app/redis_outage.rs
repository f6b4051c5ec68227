//! Redis down: 503 with `Retry-After` within a second, `/readyz` 503, and recovery with
//! no restart of the app.

use std::time::{Duration, Instant};

use crate::helpers::{Cluster, seed_visit, user};

async fn wait_for_status(client: &reqwest::Client, url: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(res) = client.get(url).send().await
            && res.status() == status
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_down_gives_503_within_a_second_then_recovers() {
    let mut cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 1);

    cluster.redis.stop();
    for path in ["/session", "/api/session", "/"] {
        let start = Instant::now();
        let res = client
            .get(cluster.url(0, path))
            .header("accept", "text/html")
            .send()
            .await
            .expect("an answer, not a hang");
        let took = start.elapsed();
        assert_eq!(res.status(), 503, "{path}");
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
        assert_eq!(res.headers()["retry-after"], "1");
        assert!(res.text().await.expect("body").contains("unavailable"));
    }

    cluster.redis.restart();
    // The restarted Redis is empty, so the old session is gone: a fresh count, served
    // by the same app process that never restarted.
    wait_for_status(&client, &cluster.url(0, "/readyz"), 200).await;
    let (count, _) = seed_visit(&client, &cluster.url(0, "/session")).await;
    assert_eq!(count, 1);
    assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 2);
}

#[tokio::test]
async fn redis_down_without_a_cookie_is_503_too() {
    // No cookie means no lock and no load: the failure surfaces in the save after the
    // handler ran, inside tower-sessions, which answers a bare 500 that we turn into 503.
    let mut cluster = Cluster::start(1, |_| {}).await;
    cluster.redis.stop();
    let start = Instant::now();
    let res = user()
        .get(cluster.url(0, "/session"))
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 503);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(res.headers()["retry-after"], "1");
}

#[tokio::test]
async fn readyz_flips_with_redis_and_healthz_does_not() {
    let mut cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    assert_eq!(
        client
            .get(cluster.url(0, "/readyz"))
            .send()
            .await
            .expect("r")
            .status(),
        200
    );

    cluster.redis.stop();
    let start = Instant::now();
    let res = client
        .get(cluster.url(0, "/readyz"))
        .send()
        .await
        .expect("r");
    assert_eq!(res.status(), 503);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(
        client
            .get(cluster.url(0, "/healthz"))
            .send()
            .await
            .expect("h")
            .status(),
        200
    );

    cluster.redis.restart();
    wait_for_status(&client, &cluster.url(0, "/readyz"), 200).await;
}

#[tokio::test]
async fn the_app_starts_while_redis_is_down() {
    let mut redis = test_kit::RedisServer::start();
    let url = redis.url();
    redis.stop();
    let replica = crate::helpers::start_replica(app::Config::for_test(&url, "lonely")).await;
    let client = user();
    assert_eq!(
        client
            .get(format!("{}/healthz", replica.url()))
            .send()
            .await
            .expect("h")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{}/readyz", replica.url()))
            .send()
            .await
            .expect("r")
            .status(),
        503
    );

    redis.restart();
    wait_for_status(&client, &format!("{}/readyz", replica.url()), 200).await;
    assert_eq!(
        seed_visit(&client, &format!("{}/session", replica.url()))
            .await
            .0,
        1
    );
}
