//! DNS-driven discovery with a resolver the test steers: added addresses join after a
//! passing health check, removed ones get no more traffic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::helpers::{
    Cluster, TestBalancer, TestResolver, TestServer, http_client, test_config, text,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_address_gets_traffic_only_after_passing_health_check() {
    // Arrange: `old` is in rotation; `new` will appear in DNS while its /readyz says 503.
    let old = TestServer::start(|_req| async { text("old") }).await;
    let ready = Arc::new(AtomicBool::new(false));
    let proxied_to_new = Arc::new(AtomicUsize::new(0));
    let checks_of_new = Arc::new(AtomicUsize::new(0));
    let new = {
        let (ready, proxied, checks) =
            (ready.clone(), proxied_to_new.clone(), checks_of_new.clone());
        TestServer::start(move |req| {
            let is_check = req.uri().path() == "/readyz";
            let ok = ready.load(Ordering::SeqCst);
            if is_check {
                checks.fetch_add(1, Ordering::SeqCst);
            } else {
                proxied.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                let mut r = text(if is_check { "ready?" } else { "new" });
                if is_check && !ok {
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                r
            }
        })
        .await
    };
    let resolver = Arc::new(TestResolver::default());
    resolver.set("app.test", vec![old.addr]);
    let lb = TestBalancer::start_with_resolver(
        test_config(&["app.test:8000".to_owned()]),
        resolver.clone(),
    )
    .await;
    lb.wait_healthy(1).await;
    let client = http_client();

    // Act 1: `new` is resolved but failing its check, for several health rounds.
    resolver.set("app.test", vec![old.addr, new.addr]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while checks_of_new.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "new backend never checked");
        let resp = client.get(lb.url("/x")).send().await.expect("request");
        assert_eq!(resp.text().await.expect("body"), "old");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Assert 1: no client request reached it.
    assert_eq!(proxied_to_new.load(Ordering::SeqCst), 0);

    // Act 2: it becomes ready.
    ready.store(true, Ordering::SeqCst);
    lb.wait_healthy(2).await;
    let mut bodies = Vec::new();
    for _ in 0..10 {
        bodies.push(
            client
                .get(lb.url("/x"))
                .send()
                .await
                .expect("request")
                .text()
                .await
                .expect("body"),
        );
    }

    // Assert 2: now it shares the load.
    assert_eq!(
        bodies.iter().filter(|b| *b == "new").count(),
        5,
        "{bodies:?}"
    );
}
