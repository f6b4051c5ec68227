//! Redis stalls mid-request (`CLIENT PAUSE`): the answer never contradicts what happened,
//! and a stalled acquire leaves no lock behind once Redis answers again.
//!
//! Timeline of these tests: `REDIS_TIMEOUT_MS` 300, so a save Redis does not confirm times
//! out 300 ms after it was sent and is then given 600 ms more to be resolved. The writer's
//! read of the session reaches it late (a relay holds the answer, [`Slow::Loads`]), so its
//! save goes out that much later.

use std::time::{Duration, Instant};

use crate::helpers::{Cluster, Slow, open_session, plain, views_of};

/// A replica whose writes wait `slow` between loading and saving the session, if any.
async fn stalling_cluster(slow: Option<Slow>) -> Cluster {
    Cluster::start_slow(
        1,
        |_| slow,
        |c| c.redis_timeout = Duration::from_millis(300),
    )
    .await
}

/// `GET /session` with the cookie and a request id; status, `Retry-After`, body.
async fn visit(cluster: &Cluster, cookie: &str, id: &str) -> (u16, bool, String) {
    let res = plain()
        .get(cluster.url(0, "/session"))
        .header("cookie", cookie)
        .header("x-request-id", id)
        .send()
        .await
        .expect("visit");
    let status = res.status().as_u16();
    let retry_after = res.headers().contains_key("retry-after");
    (status, retry_after, res.text().await.expect("body"))
}

#[tokio::test]
async fn a_save_confirmed_late_is_answered_as_applied() {
    // Arrange: the save is sent at ~200 ms, into a write pause from 100 ms to 1000 ms; it
    // times out at ~500 ms, and the resolution that follows gets through once the pause ends.
    let cluster = stalling_cluster(Some(Slow::Loads(Duration::from_millis(200)))).await;
    let (cookie, _) = open_session(&cluster, "/session").await;
    let request = tokio::spawn({
        let url = cluster.url(0, "/session");
        let cookie = cookie.clone();
        async move {
            let res = plain()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("visit");
            (res.status().as_u16(), res.text().await.expect("body"))
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act
    assert_eq!(
        cluster.redis.cli(&["CLIENT", "PAUSE", "900", "WRITE"]),
        "OK"
    );
    let (status, body) = request.await.expect("task");

    // Assert: the answer matches the counter.
    let after = views_of(&cluster, &cookie).await;
    assert_eq!((status, body.as_str()), (200, "Session View Cnt  2"));
    assert_eq!(after, 2);
}

#[tokio::test]
async fn a_save_never_confirmed_is_answered_unknown_and_a_retry_with_its_id_counts_once() {
    // Arrange: a write pause from 100 ms to 1900 ms outlasts the save (sent at ~200 ms) and
    // its resolution (until ~1100 ms).
    let cluster = stalling_cluster(Some(Slow::Loads(Duration::from_millis(200)))).await;
    let (cookie, _) = open_session(&cluster, "/session").await;
    let request = tokio::spawn({
        let cluster_url = cluster.url(0, "/session");
        let cookie = cookie.clone();
        async move {
            let start = Instant::now();
            let res = plain()
                .get(cluster_url)
                .header("cookie", cookie)
                .header("x-request-id", "stalled-1")
                .send()
                .await
                .expect("visit");
            let retry_after = res.headers().contains_key("retry-after");
            (
                res.status().as_u16(),
                retry_after,
                res.text().await.expect("body"),
                start.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act
    assert_eq!(
        cluster.redis.cli(&["CLIENT", "PAUSE", "1800", "WRITE"]),
        "OK"
    );
    let (status, retry_after, body, took) = request.await.expect("task");

    // Assert: neither "nothing was written" nor an invitation to retry blindly.
    assert_eq!(status, 504, "{body}");
    assert!(!retry_after);
    assert!(body.contains("may or may not"), "{body}");
    assert!(body.contains("X-Request-Id"), "{body}");
    assert!(
        took < Duration::from_millis(1_700),
        "answered while Redis was still paused: {took:?}"
    );

    // Once Redis is back, the write either landed or did not; the retry with the same id
    // settles it at exactly one count.
    tokio::time::sleep(Duration::from_millis(2_000).saturating_sub(took)).await;
    let landed = views_of(&cluster, &cookie).await;
    assert!((1..=2).contains(&landed), "{landed}");
    let (status, _, body) = visit(&cluster, &cookie, "stalled-1").await;
    assert_eq!((status, body.as_str()), (200, "Session View Cnt  2"));
    assert_eq!(views_of(&cluster, &cookie).await, 2);
}

#[tokio::test]
async fn a_stalled_acquire_leaves_no_lock_behind_once_redis_answers() {
    // Arrange: the lease is 5 s, so a lock left behind by the stalled acquire would make the
    // next write wait for seconds.
    let cluster = stalling_cluster(None).await;
    let (cookie, id) = open_session(&cluster, "/session").await;

    // Act: everything pauses for 1.2 s while a write tries to take the lock.
    assert_eq!(cluster.redis.cli(&["CLIENT", "PAUSE", "1200", "ALL"]), "OK");
    let paused = Instant::now();
    let (status, retry_after, _) = visit(&cluster, &cookie, "during-pause").await;
    assert_eq!(
        (status, retry_after),
        (503, true),
        "nothing was written: retry"
    );
    tokio::time::sleep(Duration::from_millis(1_250).saturating_sub(paused.elapsed())).await;
    let start = Instant::now();
    let (status, _, body) = visit(&cluster, &cookie, "after-pause").await;

    // Assert: the next write waited no longer than the pause, and no lock is left.
    let waited = start.elapsed();
    assert_eq!((status, body.as_str()), (200, "Session View Cnt  2"));
    assert!(waited < Duration::from_millis(800), "waited {waited:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lock = app::Keys::default().lock(&id);
    assert_eq!(cluster.redis.cli(&["EXISTS", &lock]), "0");
}

#[tokio::test]
async fn a_client_that_goes_away_mid_request_frees_the_lock_at_once() {
    // Arrange: a handler that takes 2 s between load and save; its client gives up after
    // 200 ms.
    let cluster = stalling_cluster(Some(Slow::Loads(Duration::from_millis(2_000)))).await;
    let (cookie, _) = open_session(&cluster, "/session").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let gave_up = impatient
        .post(cluster.url(0, "/api/session/views"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up");

    // Act: another tab writes while the first handler would still be running.
    let start = Instant::now();
    let lock = app::Keys::default().lock(cookie.split_once('=').expect("kv").1);
    let mut freed = false;
    while start.elapsed() < Duration::from_millis(1_000) {
        if cluster.redis.cli(&["EXISTS", &lock]) == "0" {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Assert: the abandoned request's lock went with it, and it wrote nothing.
    assert!(freed, "the lock outlived its requester");
    assert_eq!(views_of(&cluster, &cookie).await, 1);
}
