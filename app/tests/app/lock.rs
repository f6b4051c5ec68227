//! Session locking: parallel writes to one session through several replicas lose nothing
//! with the lock on, and lose updates with it off.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::helpers::{Cluster, Slow, increment, metric, read, set_cookie, user};

/// Opens a session on replica 0, then sends `k` increments in parallel on its cookie,
/// spread round robin over every replica. Returns the statuses and the final count.
async fn parallel_increments(cluster: &Cluster, k: usize) -> (Vec<u16>, u64) {
    let client = user();
    increment(&client, &cluster.replicas[0].url()).await;
    let requests = (0..k).map(|i| {
        let client = client.clone();
        let url = cluster.url(i % cluster.replicas.len(), "/api/session/views");
        async move {
            client
                .post(url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(requests).await;
    let views = read(&client, &cluster.replicas[0].url()).await["views"]
        .as_u64()
        .expect("views");
    (statuses, views)
}

/// Sends `k` parallel increments and asserts that every one was acknowledged and counted.
async fn assert_every_increment_counted(cluster: &Cluster, k: usize) {
    let (statuses, views) = parallel_increments(cluster, k).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(views, 1 + k as u64, "the opening visit plus {k} increments");
}

#[tokio::test]
async fn parallel_increments_through_three_replicas_lose_nothing_with_the_lock() {
    let cluster =
        Cluster::start_slow(3, |_| Some(Slow::Saves(Duration::from_millis(5))), |_| {}).await;
    assert_every_increment_counted(&cluster, 30).await;
}

#[tokio::test]
async fn without_the_lock_parallel_increments_are_lost() {
    // The delay between load and save makes every request read the same value before any
    // writes, so the loss is certain, not a matter of timing luck.
    let cluster = Cluster::start_slow(
        3,
        |_| Some(Slow::Saves(Duration::from_millis(300))),
        |c| c.session_lock = false,
    )
    .await;
    let k = 6;
    let (statuses, views) = parallel_increments(&cluster, k).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "all acknowledged: {statuses:?}"
    );
    assert!(views < 1 + k as u64, "lost updates expected, got {views}");
    assert_eq!(views, 2, "every request loaded 1 and wrote 2");
}

#[tokio::test]
async fn a_handler_slower_than_the_lease_keeps_the_lock() {
    // Lease 200 ms, handler 700 ms (the save is held with the lock): only renewal keeps the
    // others out.
    let cluster = Cluster::start_slow(
        2,
        |_| Some(Slow::Saves(Duration::from_millis(700))),
        |c| c.session_lock_lease = Duration::from_millis(200),
    )
    .await;
    assert_every_increment_counted(&cluster, 3).await;
}

#[tokio::test]
async fn a_dead_holders_lock_expires_and_others_proceed() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = reqwest::Client::new();
    let url = cluster.url(0, "/session");
    let first = client.get(&url).send().await.expect("first");
    let cookie = set_cookie(&first).expect("cookie");
    let value = cookie.split_once('=').expect("name=value").1;
    // A holder that died: its lock stays behind with 800 ms left and is never released.
    let key = app::Keys::default().lock(value); // plain cookies carry the bare id
    assert_eq!(
        cluster
            .redis
            .cli(&["SET", &key, "dead-holder", "PX", "800"]),
        "OK"
    );

    let start = Instant::now();
    let res = client
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("second");
    let waited = start.elapsed();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), "Session View Cnt  2");
    assert!(
        waited >= Duration::from_millis(500),
        "it waited for the lease: {waited:?}"
    );
}

#[tokio::test]
async fn a_lock_held_past_the_wait_gives_503_with_retry_after() {
    let cluster = Cluster::start(1, |c| c.session_lock_wait = Duration::from_millis(200)).await;
    let client = reqwest::Client::new();
    let url = cluster.url(0, "/session");
    let cookie = set_cookie(&client.get(&url).send().await.expect("first")).expect("cookie");
    let key = app::Keys::default().lock(cookie.split_once('=').expect("kv").1);
    cluster
        .redis
        .cli(&["SET", &key, "someone-else", "PX", "10000"]);

    let start = Instant::now();
    let res = client
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("second");
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert!(start.elapsed() < Duration::from_secs(1));
    // Nothing was written while the lock was someone else's.
    cluster.redis.cli(&["DEL", &key]);
    let res = client
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("third");
    assert_eq!(res.text().await.expect("body"), "Session View Cnt  2");
}

#[tokio::test]
async fn redis_down_on_a_locked_write_is_503_not_a_hang() {
    let mut cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    increment(&client, &cluster.replicas[0].url()).await;
    cluster.redis.stop();
    let start = Instant::now();
    let res = client
        .post(cluster.url(0, "/api/session/views"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(res.status(), 503);
    assert!(start.elapsed() < Duration::from_secs(1));
}

fn lock_acquisitions(metrics: &str) -> f64 {
    metric(metrics, "session_lock_wait_seconds_count")
}

#[tokio::test]
async fn no_lock_is_taken_without_a_session_or_for_reads() {
    let cluster = Cluster::start(2, |c| {
        if c.node_name.as_deref() == Some("node-1") {
            c.session_lock_optimistic = false;
        }
    })
    .await;
    let anonymous = reqwest::Client::new();
    for _ in 0..3 {
        anonymous
            .get(cluster.url(0, "/session"))
            .send()
            .await
            .expect("r");
    }
    let client = user();
    increment(&client, &cluster.replicas[0].url()).await; // no cookie yet: no lock
    read(&client, &cluster.replicas[0].url()).await; // a read: no lock
    client
        .get(cluster.url(0, "/healthz"))
        .send()
        .await
        .expect("r");
    let text = cluster.metrics(0).await;
    assert_eq!(lock_acquisitions(&text), 0.0, "{text}");

    // A write with a session, on a quiet session: optimistic, so no lock either.
    increment(&client, &cluster.replicas[0].url()).await;
    let text = cluster.metrics(0).await;
    assert_eq!(lock_acquisitions(&text), 0.0);
    assert_eq!(metric(&text, "session_optimistic_writes_total"), 1.0);
    // Without the optimistic try, the same write takes the lock once and lets it go.
    increment(&client, &cluster.replicas[1].url()).await;
    let text = cluster.metrics(1).await;
    assert_eq!(lock_acquisitions(&text), 1.0);
    assert_eq!(
        cluster.redis.cli(&["KEYS", "session:{*}:lock"]),
        "",
        "released"
    );
}

#[tokio::test]
async fn signed_cookies_are_locked_by_their_session_id() {
    let secret = app::Secret::new(&"x".repeat(64)).expect("long enough");
    let cluster = Cluster::start_slow(
        3,
        |_| Some(Slow::Saves(Duration::from_millis(5))),
        |c| c.session_secret = Some(secret.clone()),
    )
    .await;
    assert_every_increment_counted(&cluster, 20).await;
}

#[tokio::test]
async fn a_write_whose_lock_was_taken_over_is_refused_not_applied() {
    // The fenced save writes only while the lock still holds this request's token. Here
    // someone else's token replaces it mid-request (as after an expired lease).
    let cluster =
        Cluster::start_slow(1, |_| Some(Slow::Saves(Duration::from_millis(400))), |_| {}).await;
    let client = reqwest::Client::new();
    let url = cluster.url(0, "/api/session/views");
    let cookie = set_cookie(&client.post(&url).send().await.expect("first")).expect("cookie");
    let key = app::Keys::default().lock(cookie.split_once('=').expect("kv").1);

    let slow = tokio::spawn({
        let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
        async move {
            let res = client
                .post(&url)
                .header("cookie", &cookie)
                .send()
                .await
                .expect("slow");
            (
                res.status().as_u16(),
                res.headers().get("retry-after").is_some(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.redis.cli(&["SET", &key, "usurper", "PX", "10000"]);
    assert_eq!(slow.await.expect("task"), (503, true));

    assert_eq!(
        cluster.redis.cli(&["GET", &key]),
        "usurper",
        "the other holder's lock stays"
    );
    cluster.redis.cli(&["DEL", &key]);
    let res = client
        .get(cluster.url(0, "/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("read");
    let views = res.json::<serde_json::Value>().await.expect("json")["views"].clone();
    assert_eq!(views, 1, "the refused write did not land");
}
