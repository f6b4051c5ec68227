//! HTTP correctness at the hop: hop-by-hop headers, repeated headers, X-Forwarded-*,
//! X-Upstream, and streaming bodies.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::SET_COOKIE;
use http_body_util::StreamBody;
use http_body_util::combinators::BoxBody;

use crate::helpers::{
    TestBalancer, TestServer, header_lines, http_client, parse_response, raw_exchange, test_config,
    text, upstreams,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    // Arrange: a backend that echoes the request headers and sends hop-by-hop ones back.
    let backend = TestServer::start(|req| {
        let seen = header_lines(&req);
        async move {
            let mut r = text(seen);
            let h = r.headers_mut();
            h.insert("connection", "x-resp-hop".parse().expect("value"));
            h.insert("x-resp-hop", "1".parse().expect("value"));
            h.insert("keep-alive", "timeout=5".parse().expect("value"));
            h.insert("proxy-connection", "keep-alive".parse().expect("value"));
            h.insert("x-end-to-end", "kept".parse().expect("value"));
            r
        }
    })
    .await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    // Act
    let raw = raw_exchange(
        lb.addr,
        b"GET /h HTTP/1.1\r\n\
          Host: example.test\r\n\
          Connection: close, X-Secret-Hop\r\n\
          Connection: X-Other-Hop\r\n\
          X-Secret-Hop: 1\r\n\
          X-Other-Hop: 2\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: trailers, deflate\r\n\
          Upgrade: h2c\r\n\
          X-Kept: yes\r\n\r\n",
    )
    .await;
    let (status, headers, seen) = parse_response(&raw);

    // Assert: the backend saw none of the request's hop-by-hop headers…
    assert!(status.starts_with("HTTP/1.1 200"), "{raw}");
    let seen = seen.to_ascii_lowercase();
    for gone in [
        "x-secret-hop",
        "x-other-hop",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "connection",
    ] {
        assert!(
            !seen.lines().any(|l| l.starts_with(&format!("{gone}:"))),
            "{gone} reached the backend:\n{seen}"
        );
    }
    assert!(seen.contains("te: trailers\n"), "{seen}");
    assert!(seen.contains("x-kept: yes\n"), "{seen}");
    // …and the client saw none of the response's.
    let names: Vec<_> = headers.iter().map(|(k, _)| k.as_str()).collect();
    for gone in ["x-resp-hop", "keep-alive", "proxy-connection"] {
        assert!(!names.contains(&gone), "{gone} reached the client: {raw}");
    }
    assert!(
        headers.contains(&("x-end-to-end".to_owned(), "kept".to_owned())),
        "{raw}"
    );
    assert!(
        headers.contains(&("x-upstream".to_owned(), backend.addr.to_string())),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_set_cookie_survives_and_a_trusted_proxys_forwarded_for_is_appended() {
    // Arrange
    let backend = TestServer::start(|req| {
        let seen = header_lines(&req);
        async move {
            let mut r = text(seen);
            r.headers_mut()
                .append(SET_COOKIE, "a=1; Path=/".parse().expect("value"));
            r.headers_mut()
                .append(SET_COOKIE, "b=2; Path=/".parse().expect("value"));
            r
        }
    })
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;

    // Act
    let resp = http_client()
        .get(lb.url("/c"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("request");

    // Assert
    let cookies: Vec<_> = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);
    let seen = resp.text().await.expect("body");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(
        seen.contains(&format!("x-forwarded-host: {}\n", lb.addr)),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_streams_before_the_backend_finishes() {
    // Arrange: the backend sends one chunk, then waits 3 s before the rest.
    let listener_body = || {
        let stream = futures_util::stream::unfold(0u8, |i| async move {
            match i {
                0 => Some((
                    Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(
                        b"first;",
                    ))),
                    1,
                )),
                1 => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Some((Ok(http_body::Frame::data(Bytes::from_static(b"second"))), 2))
                }
                _ => None,
            }
        });
        BoxBody::new(StreamBody::new(stream))
    };
    let backend = crate::helpers::StreamingServer::start(listener_body).await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    // Act
    let started = Instant::now();
    let mut resp = http_client()
        .get(lb.url("/stream"))
        .send()
        .await
        .expect("request");
    let first = resp.chunk().await.expect("chunk").expect("some");
    let first_at = started.elapsed();
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.expect("chunk") {
        rest.extend_from_slice(&c);
    }

    // Assert: the first chunk arrived long before the body was complete.
    assert_eq!(&first[..], b"first;");
    assert_eq!(rest, b"second");
    assert!(
        first_at < Duration::from_millis(2500),
        "first chunk after {first_at:?}"
    );
}
