//! DNS-driven discovery with a resolver the test steers: added addresses join after a
//! passing health check, removed ones get no more traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::helpers::{TestBalancer, TestResolver, TestServer, http_client, test_config, text};

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
