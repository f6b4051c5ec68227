//! DNS-driven discovery with a resolver the test steers, over real replicas: added
//! addresses join after a passing health check, removed ones get no more traffic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::{Cluster, TestBalancer, TestResolver, http_client, test_config};

/// Sends `n` GETs and counts `X-Served-By` per node.
async fn spread(lb: &TestBalancer, n: usize) -> HashMap<String, usize> {
    let client = http_client();
    let mut served = HashMap::new();
    for _ in 0..n {
        let resp = client.get(lb.url("/")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        let node = resp.headers()["x-served-by"]
            .to_str()
            .expect("ascii")
            .to_owned();
        *served.entry(node).or_default() += 1;
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_addresses_add_and_remove_replicas() {
    // Arrange: `app.test` first resolves to node-0 and node-1; node-2 is up but unknown.
    let cluster = Cluster::start(3).await;
    let addrs = cluster.addrs();
    let resolver = Arc::new(TestResolver::default());
    resolver.set("app.test", vec![addrs[0], addrs[1]]);
    let lb = TestBalancer::start_with_resolver(
        test_config(&["app.test:8000".to_owned()]),
        resolver.clone(),
    )
    .await;
    lb.wait_healthy(2).await;
    let before = spread(&lb, 20).await;
    assert_eq!(before.keys().len(), 2, "{before:?}");
    assert!(!before.contains_key("node-2"));

    // Act: the name now points at node-1 and node-2 (node-0 "scaled away").
    resolver.set("app.test", vec![addrs[1], addrs[2]]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = lb.status().await;
        let listed: Vec<_> = status["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .filter(|b| b["healthy"] == true)
            .map(|b| b["address"].as_str().unwrap_or("").to_owned())
            .collect();
        if listed == [addrs[1].to_string(), addrs[2].to_string()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotation never followed DNS: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = spread(&lb, 30).await;

    // Assert
    assert_eq!(after.get("node-0"), None, "{after:?}");
    assert_eq!(after.get("node-1"), Some(&15), "{after:?}");
    assert_eq!(after.get("node-2"), Some(&15), "{after:?}");
}
