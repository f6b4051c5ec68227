//! Backends that close mid-request, send malformed or contradictory responses, stall
//! mid-body or sit on their slots: one bad path cannot empty the rotation, framing follows
//! the RFCs, and a busy backend is passed over.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    RawBackend, RawReply, TestBalancer, TestServer, backend_5xx, ejections, http_client,
    test_config, text, upstreams,
};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A raw backend answering `/poison` with `poison` and everything else with 200 `ok`.
async fn poisoned(poison: RawReply) -> RawBackend {
    RawBackend::start(move |request| {
        if request.to_lowercase().contains(" /poison ") {
            poison.clone()
        } else {
            RawReply::Write(OK.to_vec())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_path_ejects_at_most_one_backend() {
    for poison in [
        RawReply::Close,
        // obs-fold, a bare CR, two different lengths: malformed responses.
        RawReply::Write(
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        ),
        RawReply::Write(b"HTTP/1.1 200 OK\rx-a: 1\r\ncontent-length: 2\r\n\r\nok".to_vec()),
        RawReply::Write(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok".to_vec(),
        ),
    ] {
        // Arrange
        let a = poisoned(poison.clone()).await;
        let b = poisoned(poison.clone()).await;
        let mut config = test_config(&upstreams(&[a.addr, b.addr]));
        config.health_interval = Duration::from_secs(30);
        let lb = TestBalancer::start(config).await;
        lb.wait_healthy(2).await;

        // Act
        let poisoned = http_client()
            .get(lb.url("/poison"))
            .send()
            .await
            .expect("poison");
        let mut after = Vec::new();
        for _ in 0..4 {
            let res = http_client().post(lb.url("/")).send().await.expect("after");
            after.push(res.status().as_u16());
        }

        // Assert
        assert_eq!(poisoned.status(), 502, "{poison:?}");
        assert_eq!(after, [200; 4], "{poison:?}");
        assert!(
            ejections(&lb).await <= 1,
            "{poison:?}: {}",
            lb.status().await
        );
        let tried: usize = [&a, &b]
            .iter()
            .map(|s| {
                s.seen
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|r| r.contains("/poison"))
                    .count()
            })
            .sum();
        assert!(tried <= 2, "replayed once at most: {tried}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_length_and_chunked_is_framed_by_chunked() {
    let backend = RawBackend::start(|_| {
        RawReply::Write(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    let res = http_client()
        .get(lb.url("/x"))
        .send()
        .await
        .expect("request");

    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), "hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stalls_mid_body_is_cut_off() {
    let backend = RawBackend::start(|_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[b'x'; 10]);
        RawReply::WriteThenStall(bytes)
    })
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.body_idle_timeout = Duration::from_millis(300);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;

    let start = Instant::now();
    let res = http_client()
        .get(lb.url("/x"))
        .send()
        .await
        .expect("headers");
    let body = res.bytes().await;

    assert!(body.is_err(), "a truncated body must not look complete");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let status = lb.status().await;
    assert_eq!(status["backends"][0]["failures"], 1, "{status}");
    assert_eq!(status["backends"][0]["in_flight"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_busy_with_a_slow_reader_is_passed_over() {
    // Arrange: one slot per backend; `a` streams a big body to a client that stops reading.
    let a = crate::helpers::big_stream().await;
    let b = TestServer::start(|_| async { text("b") }).await;
    let mut config = test_config(&upstreams(&[a.addr, b.addr]));
    config.max_conns_per_backend = 1;
    config.upstream_timeout = Duration::from_secs(5);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;
    let mut slow = None;
    for _ in 0..2 {
        // Round robin: one of the first two requests lands on `a`.
        let mut s = TcpStream::connect(lb.addr).await.expect("connect");
        s.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut head = vec![0u8; 512];
        let n = s.read(&mut head).await.expect("head");
        if String::from_utf8_lossy(&head[..n]).contains("transfer-encoding") {
            slow = Some(s);
            break;
        }
    }
    assert!(slow.is_some(), "no request reached the streaming backend");

    // Act
    let start = Instant::now();
    let mut answers = Vec::new();
    for _ in 0..4 {
        let res = http_client()
            .get(lb.url("/"))
            .send()
            .await
            .expect("request");
        answers.push(res.text().await.expect("body"));
    }

    // Assert: every request went to the idle backend at once.
    assert_eq!(answers, ["b"; 4]);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_is_refused_or_kept_as_the_rfcs_say() {
    // Arrange: a backend that echoes the Host it got and the body length.
    let backend = RawBackend::start(|request| {
        let host = request
            .lines()
            .find_map(|l| l.to_lowercase().strip_prefix("host: ").map(str::to_owned))
            .unwrap_or_default();
        let body = request.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let answer = format!("{host}|{body}");
        RawReply::Write(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .into_bytes(),
        )
    })
    .await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let raw = |request: &'static [u8]| crate::helpers::raw_exchange(lb.addr, request);

    // Act
    let gzip = raw(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n0\r\n\r\n").await;
    let two_hosts = raw(b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n").await;
    let connect = raw(
        b"CONNECT example.test:443 HTTP/1.1\r\nhost: example.test:443\r\nconnection: close\r\n\r\n",
    )
    .await;
    let absolute =
        raw(b"GET http://right.test/x HTTP/1.1\r\nhost: wrong.test\r\nconnection: close\r\n\r\n")
            .await;
    let chunked_get = raw(b"GET /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    let looped = raw(b"GET / HTTP/1.1\r\nhost: x\r\nvia: 1.1 session-cluster-balancer\r\nconnection: close\r\n\r\n").await;

    // Assert
    assert!(gzip.starts_with("HTTP/1.1 501"), "{gzip}");
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
    assert!(connect.starts_with("HTTP/1.1 405"), "{connect}");
    assert!(
        absolute.starts_with("HTTP/1.1 200") && absolute.ends_with("right.test|"),
        "{absolute}"
    );
    assert!(
        chunked_get.starts_with("HTTP/1.1 200") && chunked_get.contains("hello"),
        "{chunked_get}"
    );
    assert!(looped.starts_with("HTTP/1.1 508"), "{looped}");
    assert_eq!(ejections(&lb).await, 0);
    assert_eq!(backend_5xx(&lb).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_client_are_replaced() {
    let backend = TestServer::start(|req| {
        let seen = crate::helpers::header_lines(&req);
        async move { text(seen) }
    })
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.expose_upstream = false;
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;

    let res = http_client()
        .get(lb.url("/"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .send()
        .await
        .expect("request");

    assert!(
        res.headers().get("x-upstream").is_none(),
        "internal address exposed"
    );
    assert_eq!(res.headers()["via"], "1.1 session-cluster-balancer");
    let seen = res.text().await.expect("body");
    assert!(!seen.contains("6.6.6.6"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(seen.contains("forwarded: for=127.0.0.1;host="), "{seen}");
    assert!(
        seen.contains("via: 1.1 session-cluster-balancer\n"),
        "{seen}"
    );
}
