//! Sessions expire after `SESSION_TTL` without a write, counted by Redis from the
//! last write: no replica's clock is involved.

use std::time::{Duration, Instant};

use crate::helpers::{Cluster, seed_visit, set_cookie, user};

#[tokio::test]
async fn an_idle_session_expires_and_a_new_one_starts() {
    let cluster = Cluster::start(1, |c| c.session_ttl = Duration::from_secs(1)).await;
    let client = user();
    seed_visit(&client, &cluster.url(0, "/session")).await;
    assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 2);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        cluster
            .redis
            .cli(&["KEYS", "session:{??????????????????????}"]),
        "",
        "the record is gone from Redis"
    );
    assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 1);
}

#[tokio::test]
async fn a_one_second_session_lives_its_full_second_and_no_longer() {
    // Expiry is relative (PX) on Redis's clock, not a truncated EXAT from the app's clock.
    let cluster = Cluster::start(1, |c| c.session_ttl = Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    let url = cluster.url(0, "/session");
    for _ in 0..8 {
        let res = client.get(&url).send().await.expect("request");
        let cookie = set_cookie(&res).expect("a new session");
        let id = cookie.split_once('=').expect("name=value").1.to_owned();
        let written = Instant::now();

        let pttl: i64 = cluster
            .redis
            .cli(&["PTTL", &app::Keys::default().record(&id)])
            .parse()
            .expect("PTTL");
        assert!(
            (900..=1000).contains(&pttl),
            "a fresh 1 s session has about 1000 ms left, got {pttl}"
        );
        tokio::time::sleep(Duration::from_millis(700).saturating_sub(written.elapsed())).await;
        assert_eq!(
            cluster
                .redis
                .cli(&["EXISTS", &app::Keys::default().record(&id)]),
            "1",
            "alive at 0.7 s"
        );
        tokio::time::sleep(Duration::from_millis(1_030).saturating_sub(written.elapsed())).await;
        assert_eq!(
            cluster
                .redis
                .cli(&["EXISTS", &app::Keys::default().record(&id)]),
            "0",
            "gone by 1.03 s"
        );
    }
}

#[tokio::test]
async fn each_write_renews_the_session_for_its_full_ttl() {
    let cluster = Cluster::start(1, |c| c.session_ttl = Duration::from_secs(1)).await;
    let client = user();
    let url = cluster.url(0, "/session");
    // Five writes 600 ms apart span 2.4 s: each renewed the second-long session in time.
    for n in 1..=5 {
        assert_eq!(seed_visit(&client, &url).await.0, n);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}
