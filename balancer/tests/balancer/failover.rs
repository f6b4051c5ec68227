//! Routing around dead backends without client-visible errors, and the retry boundary:
//! connect failures are retried on another backend; a safe request that may have been
//! processed is replayed with the same request id, any other is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use http_body_util::BodyExt;

use crate::helpers::{TestBalancer, TestServer, test_config, text, upstreams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_is_retried_on_next_backend_after_connect_failure() {
    // Arrange: two echo servers; the first dies while still in rotation.
    let echo = |name: &'static str| {
        move |req: http::Request<hyper::body::Incoming>| async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            text(format!("{name}:{}", String::from_utf8_lossy(&body)))
        }
    };
    let a = TestServer::start(echo("a")).await;
    let b = TestServer::start(echo("b")).await;
    let mut config = test_config(&upstreams(&[a.addr, b.addr]));
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;
    a.kill().await;
    let client = crate::helpers::http_client();

    // Act
    let mut answers = Vec::new();
    for i in 0..4 {
        let resp = client
            .post(lb.url("/echo"))
            .body(format!("payload-{i}"))
            .send()
            .await
            .expect("request");
        answers.push((resp.status().as_u16(), resp.text().await.expect("body")));
    }

    // Assert: every POST reached b once, body intact; a was ejected; a retry was counted.
    let expected: Vec<_> = (0..4).map(|i| (200, format!("b:payload-{i}"))).collect();
    assert_eq!(answers, expected);
    assert!(lb.metrics().await.contains("balancer_retries_total 1"));
    drop(b);
}

/// A backend that passes health checks but drops every other request after reading it, as a
/// replica killed mid-request would. Returns its address and the raw heads of the requests
/// it dropped.
async fn dying_backend() -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let seen = Arc::clone(&heads);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = buf[..n].to_vec();
                if head.starts_with(b"GET /readyz") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                } else if n > 0 {
                    seen.lock().expect("lock").push(head);
                }
            });
        }
    });
    (addr, heads, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_reached_a_backend_is_not_retried() {
    // Arrange: backend `a` passes health checks but drops every request after reading it, as
    // a crashing replica would; backend `b` answers normally.
    let (a_addr, a_heads, a_task) = dying_backend().await;
    let b_hits = Arc::new(AtomicUsize::new(0));
    let bh = Arc::clone(&b_hits);
    let b = TestServer::start(move |req| {
        if req.uri().path() != "/readyz" {
            bh.fetch_add(1, Ordering::SeqCst);
        }
        async { text("b") }
    })
    .await;
    let mut config = test_config(&upstreams(&[a_addr, b.addr]));
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;
    let client = crate::helpers::http_client();

    // Act
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = client
            .post(lb.url("/api/session/views"))
            .send()
            .await
            .expect("request");
        statuses.push(resp.status().as_u16());
    }

    // Assert: the POST that reached `a` got 502 and was not replayed on `b`.
    let bad = statuses.iter().filter(|s| **s == 502).count();
    let good = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(bad + good, 4, "{statuses:?}");
    assert_eq!(bad, 1, "{statuses:?}");
    assert_eq!(a_heads.lock().expect("lock").len(), 1);
    assert_eq!(b_hits.load(Ordering::SeqCst), good);
    a_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_idle_pooled_connections_causes_no_client_errors() {
    // Arrange: the backend closes keep-alive connections after 150 ms idle, far sooner than
    // the balancer's pool would (20 s), so pooled connections die under it.
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let backend = TestServer::start_with_idle_close(
        move |req| {
            if req.uri().path() != "/readyz" {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            async { text("ok") }
        },
        Some(Duration::from_millis(150)),
    )
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let client = crate::helpers::http_client();

    // Act: requests spaced around and beyond the backend's idle close (bounded: 20 requests).
    let mut statuses = Vec::new();
    for i in 0..20u64 {
        tokio::time::sleep(Duration::from_millis(100 + (i % 5) * 50)).await;
        let resp = client.get(lb.url("/idle")).send().await.expect("request");
        statuses.push(resp.status().as_u16());
    }

    // Assert: no client-visible error, and every request reached the backend exactly once.
    assert_eq!(statuses, vec![200; 20]);
    assert_eq!(hits.load(Ordering::SeqCst), 20);
    // The backend really did close idle connections: the proxy had to open new ones
    // (one per health check is excluded by the 30 s health interval after start-up).
    let opened = backend.accepted.load(Ordering::SeqCst);
    assert!(
        opened >= 5,
        "only {opened} upstream connections: idle close not exercised"
    );
}

#[tokio::test]
async fn a_get_that_reached_a_dying_backend_is_replayed_with_the_same_request_id() {
    // Arrange: a dying backend `a`; backend `b` answers and records the request ids.
    let (a_addr, a_heads, _a_task) = dying_backend().await;
    let b_ids = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen_b = Arc::clone(&b_ids);
    let b = TestServer::start(move |req| {
        if req.uri().path() != "/readyz" {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            seen_b.lock().expect("lock").push(id);
        }
        async { text("b") }
    })
    .await;
    let mut config = test_config(&upstreams(&[a_addr, b.addr]));
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;
    let client = crate::helpers::http_client();

    // Act
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = client
            .get(lb.url("/session"))
            .send()
            .await
            .expect("request");
        statuses.push(resp.status().as_u16());
    }

    // Assert: no failure reached the client, and the replay carried the id `a` saw.
    assert_eq!(statuses, vec![200; 4]);
    let a_ids: Vec<String> = a_heads
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|head| {
            String::from_utf8_lossy(head)
                .to_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("x-request-id: "))
                .map(|id| id.trim().to_owned())
        })
        .collect();
    let b_ids = b_ids.lock().expect("lock").clone();
    assert_eq!(a_ids.len(), 1, "a was tried once, then ejected: {a_ids:?}");
    assert!(!a_ids[0].is_empty());
    assert_eq!(b_ids.len(), 4, "{b_ids:?}");
    assert!(
        b_ids.contains(&a_ids[0]),
        "the replay kept the request id: {a_ids:?} {b_ids:?}"
    );
    let mut distinct = b_ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "every request has its own id");
}

/// A raw request head's header lines as a `HeaderMap` (values as raw bytes).
fn parse_head(head: &[u8]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    for line in head[..end].split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        headers.append(
            http::HeaderName::from_bytes(&line[..colon]).expect("name"),
            http::HeaderValue::from_bytes(value).expect("value"),
        );
    }
    headers
}

#[tokio::test]
async fn a_replay_carries_every_header_the_first_attempt_carried() {
    // Arrange: a dying backend `a`; backend `b` answers and keeps each request's headers.
    // The client sends what a hostile but legal client may: two `Cookie` lines, a
    // percent-encoded value, UTF-8 and obs-text bytes, an empty value.
    let (a_addr, a_heads, _a_task) = dying_backend().await;
    let b_seen = Arc::new(std::sync::Mutex::new(Vec::<http::HeaderMap>::new()));
    let seen = Arc::clone(&b_seen);
    let b = TestServer::start(move |req| {
        if req.uri().path() != "/readyz" {
            seen.lock().expect("lock").push(req.headers().clone());
        }
        async { text("b") }
    })
    .await;
    let mut config = test_config(&upstreams(&[a_addr, b.addr]));
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;
    let client = crate::helpers::http_client();

    // Act: until `a` has dropped one request (round robin: within two).
    for _ in 0..2 {
        let resp = client
            .get(lb.url("/session?q=%C3%A9"))
            .header("cookie", "sid=abc")
            .header("cookie", "theme=d%C3%A4rk")
            .header("x-note", "caf\u{e9} \u{2603}")
            .header(
                "x-odd",
                http::HeaderValue::from_bytes(b"obs \xe9\xff").expect("obs-text value"),
            )
            .header("x-empty", "")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
    }

    // Assert: the replay `b` got has exactly the headers of the attempt `a` dropped, repeated
    // ones in order, bytes unchanged.
    let heads = a_heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "a was tried once, then ejected");
    let first = parse_head(&heads[0]);
    let id = first
        .get("x-request-id")
        .expect("the first attempt had an id");
    let seen = b_seen.lock().expect("lock").clone();
    let replay = seen
        .iter()
        .find(|h| h.get("x-request-id") == Some(id))
        .expect("b got the replay, with the same request id");
    assert_eq!(replay, &first);
    let cookies: Vec<_> = replay.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["sid=abc", "theme=d%C3%A4rk"]);
    assert_eq!(
        replay.get("x-odd").map(|v| v.as_bytes()),
        Some(&b"obs \xe9\xff"[..])
    );
}
