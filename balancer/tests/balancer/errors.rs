//! Error answers: 503 at once with no backend, 504 on a slow backend, 404 for the replicas'
//! internals on the public port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::{
    TestBalancer, TestServer, closed_port_addr, http_client, test_config, text, upstreams,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_gives_503_at_once() {
    // Arrange: two upstreams on ports nobody listens on.
    let a = closed_port_addr().await;
    let b = closed_port_addr().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[a, b]))).await;
    lb.wait_healthy(0).await;

    // Act
    let started = Instant::now();
    let resp = http_client()
        .get(lb.url("/"))
        .send()
        .await
        .expect("request");
    let elapsed = started.elapsed();

    // Assert
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    // Generous bound for a loaded CI machine; a hang would be the 10 s client timeout.
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains("no healthy backend")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_that_die_between_checks_give_503_not_a_hang() {
    // Arrange: one healthy backend, health rounds far apart, then the backend dies.
    let backend = TestServer::start(|_req| async { text("ok") }).await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    backend.kill().await;

    // Act: the first request finds the connect refused; nothing was sent anywhere.
    let started = Instant::now();
    let first = http_client()
        .get(lb.url("/"))
        .send()
        .await
        .expect("request");
    let second = http_client()
        .get(lb.url("/"))
        .send()
        .await
        .expect("request");

    // Assert
    assert_eq!(first.status(), 503);
    assert_eq!(second.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_gives_504() {
    // Arrange: the backend answers health checks at once but takes 3 s for anything else.
    let backend = TestServer::start(|req| async move {
        if req.uri().path() != "/readyz" {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        text("late")
    })
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.upstream_timeout = Duration::from_millis(300);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;

    // Act
    let started = Instant::now();
    let resp = http_client()
        .get(lb.url("/slow"))
        .send()
        .await
        .expect("request");
    let elapsed = started.elapsed();

    // Assert: 504 after the timeout; a slow backend is not ejected as dead.
    assert_eq!(resp.status(), 504);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    let status = lb.status().await;
    assert_eq!(status["backends"][0]["ejections"], 0, "{status}");
    assert_eq!(status["backends"][0]["responses"]["5xx"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_internals_are_404_on_the_public_port() {
    // Arrange: a backend that answers every path and notes what reached it.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&seen);
    let backend = TestServer::start(move |req| {
        let log = Arc::clone(&log);
        async move {
            if req.uri().path() != "/readyz" {
                log.lock().expect("lock").push(req.uri().to_string());
            }
            text("internal")
        }
    })
    .await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let mut open = test_config(&upstreams(&[backend.addr]));
    open.internal_paths = "none".parse().expect("none");
    let client = http_client();

    // Act + Assert: every spelling of the default internal paths is refused here...
    for path in [
        "/metrics",
        "/readyz",
        "/healthz",
        "/metrics?format=prometheus",
        "/%6Detrics",
        "/health%7A",
    ] {
        let res = client.get(lb.url(path)).send().await.expect("request");
        assert_eq!(res.status(), 404, "{path}");
    }
    // ...and never reached the backend; other paths do.
    assert!(seen.lock().expect("lock").is_empty());
    for path in ["/metricsx", "/api/metrics", "/"] {
        let res = client.get(lb.url(path)).send().await.expect("request");
        assert_eq!(res.status(), 200, "{path}");
    }
    // With INTERNAL_PATHS=none they pass through.
    let lb_open = TestBalancer::start(open).await;
    lb_open.wait_healthy(1).await;
    let res = client
        .get(lb_open.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_in_vain_for_a_backend_slot_is_retried_and_counts_against_no_backend() {
    // Arrange: two backends with one request slot each, both held by responses whose body
    // takes 1.5 s (a slot is held until the body is relayed; the headers come at once, so
    // UPSTREAM_TIMEOUT does not cut them).
    let slow_body = || {
        crate::helpers::StreamingServer::start(|| {
            let chunks = futures_util::stream::unfold(0u8, |i| async move {
                match i {
                    0 => Some((
                        Ok(http_body::Frame::data(bytes::Bytes::from_static(b"a"))),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        Some((
                            Ok(http_body::Frame::data(bytes::Bytes::from_static(b"b"))),
                            2,
                        ))
                    }
                    _ => None,
                }
            });
            http_body_util::combinators::BoxBody::new(http_body_util::StreamBody::new(chunks))
        })
    };
    let (a, b) = (slow_body().await, slow_body().await);
    let mut config = test_config(&upstreams(&[a.addr, b.addr]));
    config.max_conns_per_backend = 1;
    config.upstream_timeout = Duration::from_millis(300);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = lb.url("/slow");
            tokio::spawn(async move {
                let res = http_client().get(url).send().await.expect("slow request");
                (res.status(), res.text().await.expect("slow body"))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act: a third request finds no free slot on either.
    let started = Instant::now();
    let busy = http_client()
        .get(lb.url("/fast"))
        .send()
        .await
        .expect("request");
    let waited = started.elapsed();

    // Assert: it waited on one, then the other (a retry), then got 504; neither backend
    // has a failure, an ejection or a 5xx on its record for it.
    assert_eq!(busy.status(), 504);
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_millis(1400),
        "{waited:?}"
    );
    assert!(lb.counter("balancer_retries_total").await >= 1);
    for h in held {
        assert_eq!(
            h.await.expect("task"),
            (http::StatusCode::OK, "ab".to_owned())
        );
    }
    let status = lb.status().await;
    for backend in status["backends"].as_array().expect("backends") {
        assert_eq!(backend["failures"], 0, "{status}");
        assert_eq!(backend["ejections"], 0, "{status}");
        assert_eq!(backend["responses"]["5xx"], 0, "{status}");
    }
}
