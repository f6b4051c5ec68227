//! Routing around a dead replica without client-visible errors: the counter of a session
//! hopping between replicas stays exact while one of them stops.

use std::time::Duration;

use crate::helpers::{Cluster, TestBalancer, test_config, upstreams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_fails_no_requests_and_counts_stay_exact() {
    // Arrange: three replicas, one client session hopping between them.
    let mut cluster = Cluster::start(3).await;
    let mut config = test_config(&upstreams(&cluster.addrs()));
    // Slow health rounds: the dead replica is still in rotation when requests hit it, so
    // passive ejection + connect retry must do the work.
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(3).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // Act: 90 sequential increments; replica node-1 is stopped after the 30th.
    let mut failures = Vec::new();
    let mut served_by_dead_after_kill = 0;
    for i in 1..=90u32 {
        if i == 31 {
            cluster.stop(1).await;
        }
        let resp = client
            .get(lb.url("/session"))
            .send()
            .await
            .expect("transport");
        let status = resp.status();
        let node = resp
            .headers()
            .get("x-served-by")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let body = resp.text().await.expect("body");
        if status != 200 {
            failures.push((i, status, body));
            continue;
        }
        if i > 30 && node.as_deref() == Some("node-1") {
            served_by_dead_after_kill += 1;
        }
        // Each increment is applied exactly once: no lost and no doubled request.
        assert_eq!(
            body.trim_end(),
            format!("Session View Cnt  {i}"),
            "request {i}"
        );
    }

    // Assert
    assert!(failures.is_empty(), "client saw failures: {failures:?}");
    assert_eq!(served_by_dead_after_kill, 0);
    let status = lb.status().await;
    let ejected = status["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter(|b| b["ejections"].as_u64() > Some(0))
        .count();
    assert_eq!(ejected, 1, "{status}");
}
