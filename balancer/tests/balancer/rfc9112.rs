//! Hostile but legal (or nearly) request heads, on raw sockets: `Host` and the request-target
//! checked as RFC 9112 §3.2 says, underscore spellings of forwarding headers dropped,
//! `Upgrade` honoured only from HTTP/1.1 and only for allowed protocols, header counts
//! consistent with what a backend accepts both ways, and `INTERNAL_PATHS` whatever the
//! spelling of the path. Each is judged by what the client got and what reached the backend.
//! The same requests against nginx 1.22 are compared in the balancer's section of README.md
//! (`balancer/bench/rfc_vs_nginx.sh`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    RawBackend, RawReply, TestBalancer, TestServer, backend_5xx, ejections, header_lines,
    parse_response, raw_exchange, test_config, text, upstreams,
};

/// A backend that answers every request with the head it received (request line and
/// header lines), and keeps each non-health head it saw.
async fn echo_head() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let server = TestServer::start(move |req| {
        let head = format!("{} {}\n{}", req.method(), req.uri(), header_lines(&req));
        if req.uri().path() != "/readyz" {
            log.lock().expect("lock").push(head.clone());
        }
        async move { text(head) }
    })
    .await;
    (server, seen)
}

/// The status line of a raw answer.
fn status(raw: &str) -> &str {
    raw.lines().next().unwrap_or("<nothing>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_malformed_or_strippable_host_is_a_400_and_reaches_no_backend() {
    // Arrange
    let (backend, seen) = echo_head().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    // Act + Assert: each refused, none forwarded.
    for request in [
        &b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nhost:\r\nconnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: evil.test/x?y#z@a\r\nconnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: user@example.test\r\nconnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: example.test:99999\r\nconnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: example.test\r\nconnection: close, host\r\n\r\n",
        b"GET example.test:80 HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n\r\n",
        b"GET http://user:pass@example.test/ HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n\r\n",
        b"GET * HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n\r\n",
    ] {
        let raw = raw_exchange(lb.addr, request).await;
        assert!(
            raw.starts_with("HTTP/1.1 400"),
            "{:?} -> {raw:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(seen.lock().expect("lock").is_empty(), "{seen:?}");

    // ...while well-formed ones pass: HTTP/1.0 without Host (the backend gets its own
    // address), an IPv6 literal, OPTIONS in asterisk form, an absolute form.
    let old = raw_exchange(lb.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    let v6 = raw_exchange(
        lb.addr,
        b"GET /v6 HTTP/1.1\r\nhost: [::1]:8080\r\nconnection: close\r\n\r\n",
    )
    .await;
    let star = raw_exchange(
        lb.addr,
        b"OPTIONS * HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    let absolute = raw_exchange(
        lb.addr,
        b"GET http://right.test/abs HTTP/1.1\r\nhost: wrong.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(old.starts_with("HTTP/1.0 200"), "{old}");
    assert!(old.contains(&format!("host: {}\n", backend.addr)), "{old}");
    assert!(
        v6.starts_with("HTTP/1.1 200") && v6.contains("host: [::1]:8080\n"),
        "{v6}"
    );
    assert!(
        star.starts_with("HTTP/1.1 200") && star.contains("OPTIONS *\n"),
        "{star}"
    );
    assert!(absolute.contains("host: right.test\n"), "{absolute}");
    assert_eq!(backend_5xx(&lb).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_spellings_of_forwarding_headers_never_reach_the_backend() {
    let (backend, _) = echo_head().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    let raw = raw_exchange(
        lb.addr,
        b"GET /u HTTP/1.1\r\nhost: example.test\r\nX_Forwarded_For: 6.6.6.6\r\n\
          X_Real_IP: 6.6.6.6\r\nX-Forwarded_Proto: https\r\nX_Forwarded_Host: evil.test\r\n\
          X_Request_Id: forged\r\nX_Custom_Thing: kept\r\nconnection: close\r\n\r\n",
    )
    .await;

    let (line, _, seen) = parse_response(&raw);
    assert!(line.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        !seen.contains("6.6.6.6") && !seen.contains("evil.test"),
        "{seen}"
    );
    assert!(
        !seen.contains("https") && !seen.contains("forged"),
        "{seen}"
    );
    assert!(seen.contains("x_custom_thing: kept\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
}

/// A backend that switches to whatever protocol a request asks for (`Upgrade` echoed in
/// its 101), then writes `tunnel` into the tunnel; a request without `Upgrade` gets `plain`.
async fn switch_to_anything() -> TestServer {
    TestServer::start(|mut req| async move {
        let Some(protocol) = req.headers().get("upgrade").cloned() else {
            return text(format!("plain {}", header_lines(&req).contains("upgrade")));
        };
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = hyper_util::rt::TokioIo::new(up);
                let _ = io.write_all(b"tunnel").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let mut r = http::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", protocol);
        r.headers_mut()
            .insert("connection", "upgrade".parse().expect("value"));
        r
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_only_from_http_11_and_only_to_allowed_protocols() {
    // Arrange: the default allow-list (websocket).
    let backend = switch_to_anything().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    // Act
    let ws = {
        let mut s = TcpStream::connect(lb.addr).await.expect("connect");
        s.write_all(
            b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        )
        .await
        .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains("tunnel") {
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let h2c = raw_exchange(
        lb.addr,
        b"GET /metrics-through-a-tunnel HTTP/1.1\r\nhost: x\r\nconnection: upgrade, http2-settings, close\r\n\
          upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await;
    let http10 = raw_exchange(
        lb.addr,
        b"GET /ws HTTP/1.0\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await;

    // Assert: websocket is tunnelled; h2c and an HTTP/1.0 upgrade reach the backend as
    // plain requests without `Upgrade`, and get its plain answer.
    assert!(
        ws.starts_with("HTTP/1.1 101") && ws.ends_with("tunnel"),
        "{ws}"
    );
    assert!(
        h2c.starts_with("HTTP/1.1 200") && h2c.ends_with("plain false"),
        "{h2c}"
    );
    assert!(
        http10.starts_with("HTTP/1.0 200") && http10.ends_with("plain false"),
        "{http10}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_a_protocol_that_was_not_offered_is_a_502_not_a_tunnel() {
    // Arrange: a backend that switches to h2c whatever it was offered.
    let backend = RawBackend::start(|_| {
        RawReply::WriteThenStall(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    let raw = raw_exchange(
        lb.addr,
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade, close\r\nupgrade: websocket\r\n\r\n",
    )
    .await;

    assert!(status(&raw).starts_with("HTTP/1.1 502"), "{raw}");
    assert_eq!(ejections(&lb).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_of_any_header_count_within_the_size_limit_is_relayed_once() {
    // Arrange: 120 Set-Cookie lines (about 2.6 KB) on /many; 9 KB of them on /huge, over
    // an 8 KiB MAX_HEADER_SIZE.
    let head = |n: usize| {
        let mut h = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
        for i in 0..n {
            h.extend_from_slice(format!("set-cookie: c{i}=v{i}\r\n").as_bytes());
        }
        h.extend_from_slice(b"\r\nok");
        h
    };
    let (many, huge) = (head(120), head(600));
    let backend = RawBackend::start(move |request| {
        if request.to_lowercase().contains(" /huge ") {
            RawReply::Write(huge.clone())
        } else {
            RawReply::Write(many.clone())
        }
    })
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.max_header_size = 8192;
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;

    // Act
    let relayed = raw_exchange(
        lb.addr,
        b"GET /many HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let too_big = raw_exchange(
        lb.addr,
        b"GET /huge HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;

    // Assert: all 120 cookies relayed; the oversized head is a 502, not replayed (the
    // backend ran each GET once), and not an ejection.
    let (line, headers, body) = parse_response(&relayed);
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert_eq!(
        headers.iter().filter(|(k, _)| k == "set-cookie").count(),
        120
    );
    assert_eq!(body, "ok");
    assert!(status(&too_big).starts_with("HTTP/1.1 502"), "{too_big}");
    let seen = backend.seen.lock().expect("lock").clone();
    assert_eq!(seen.iter().filter(|r| r.contains(" /many ")).count(), 1);
    assert_eq!(seen.iter().filter(|r| r.contains(" /huge ")).count(), 1);
    assert_eq!(ejections(&lb).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_an_internal_path_is_404_here_and_others_pass_as_sent() {
    // Arrange
    let (backend, seen) = echo_head().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    // Act + Assert: refused here, never forwarded.
    for path in [
        "//metrics",
        "/./metrics",
        "/foo/../metrics",
        "/%2fmetrics",
        "/%2e%2e/metrics",
        "/foo/..%2fmetrics",
        "/metrics/",
        "/readyz/.",
        "/x/%252e%252e/healthz",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let raw = raw_exchange(lb.addr, request.as_bytes()).await;
        assert!(raw.starts_with("HTTP/1.1 404"), "{path}: {raw}");
    }
    assert!(seen.lock().expect("lock").is_empty(), "{seen:?}");

    // A path that names no internal path is forwarded exactly as it was sent.
    let raw = raw_exchange(
        lb.addr,
        b"GET //api//a%2Fb/./c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("GET //api//a%2Fb/./c\n"), "{raw}");
}
