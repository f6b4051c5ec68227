//! Round robin over real replicas, observed through the app's `X-Served-By`.

use std::collections::HashMap;

use crate::helpers::{Cluster, TestBalancer, http_client, test_config, upstreams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_rotate_evenly_over_three_replicas() {
    // Arrange
    let cluster = Cluster::start(3).await;
    let lb = TestBalancer::start(test_config(&upstreams(&cluster.addrs()))).await;
    lb.wait_healthy(3).await;
    let client = http_client();

    // Act
    let mut served: HashMap<String, usize> = HashMap::new();
    let mut upstream_of: HashMap<String, String> = HashMap::new();
    for _ in 0..30 {
        let resp = client.get(lb.url("/")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        let node = resp.headers()["x-served-by"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let upstream = resp.headers()["x-upstream"]
            .to_str()
            .expect("ascii")
            .to_owned();
        // The same replica must always be reported with the same address.
        assert_eq!(
            upstream_of.entry(node.clone()).or_insert(upstream.clone()),
            &upstream
        );
        *served.entry(node).or_default() += 1;
    }

    // Assert
    assert_eq!(served.len(), 3, "{served:?}");
    for (node, n) in &served {
        assert!((9..=11).contains(n), "{node} served {n} of 30: {served:?}");
    }
}
