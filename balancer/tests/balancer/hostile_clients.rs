//! Clients that go silent, abort, stall, stop reading or hold tunnels: every wait has a
//! timeout, and no client's fault is ever blamed on a backend.

use std::time::{Duration, Instant};

use balancer::KEEP_ALIVE_PARK_AFTER;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    TestBalancer, TestServer, backend_5xx, ejections, http_client, read_responses, test_config,
    text, upstreams,
};

/// A backend that reads the whole request body and answers with its length.
async fn echo_length() -> TestServer {
    TestServer::start(|req| async move {
        let n = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len())
            .unwrap_or(0);
        text(format!("{n}"))
    })
    .await
}

/// True once the peer closed `stream` (read returns 0 or an error) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Reads what the balancer answers on `stream` until it closes (at most 3 s).
async fn answer(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_time_out_and_cannot_lock_others_out() {
    // Arrange: three connection permits, all taken by sockets that never send a byte.
    let backend = echo_length().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.max_connections = 3;
    config.header_read_timeout = Duration::from_millis(300);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(lb.addr).await.expect("connect"));
    }

    // Act
    let start = Instant::now();
    let res = http_client().get(lb.url("/")).send().await.expect("served");

    // Assert: served once the silent ones timed out, and they were closed.
    assert_eq!(res.status(), 200);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    for s in &mut silent {
        assert!(closed_within(s, Duration::from_secs(2)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_preface_is_refused_at_once() {
    let backend = echo_length().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let mut stream = TcpStream::connect(lb.addr).await.expect("connect");

    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");

    assert!(closed_within(&mut stream, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_or_truncated_upload_blames_no_backend() {
    // Arrange: one backend, so an ejection would turn every later request into a 503.
    let backend = echo_length().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let head = b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n0123456789";

    // Act: one client resets mid-upload, one closes its sending side early.
    let mut reset = TcpStream::connect(lb.addr).await.expect("connect");
    reset.write_all(head).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    reset.set_zero_linger().expect("linger");
    drop(reset); // an RST, not a FIN
    let mut early = TcpStream::connect(lb.addr).await.expect("connect");
    early.write_all(head).await.expect("write");
    early.shutdown().await.expect("half close");
    let early_answer = answer(&mut early).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = http_client().get(lb.url("/")).send().await.expect("after");

    // Assert
    assert!(
        early_answer.is_empty() || early_answer.starts_with("HTTP/1.1 400"),
        "{early_answer:?}"
    );
    assert_eq!(after.status(), 200);
    assert_eq!(ejections(&lb).await, 0);
    assert_eq!(backend_5xx(&lb).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_a_400_not_a_502() {
    let backend = echo_length().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let mut stream = TcpStream::connect(lb.addr).await.expect("connect");

    stream
        .write_all(
            b"POST /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZZ\r\nnot hex\r\n",
        )
        .await
        .expect("write");
    let got = answer(&mut stream).await;

    assert!(got.starts_with("HTTP/1.1 400"), "{got:?}");
    assert_eq!(ejections(&lb).await, 0);
    assert_eq!(backend_5xx(&lb).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_408_and_holds_nothing() {
    let backend = echo_length().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.body_idle_timeout = Duration::from_millis(300);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let mut stream = TcpStream::connect(lb.addr).await.expect("connect");

    let start = Instant::now();
    stream
        .write_all(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let got = answer(&mut stream).await;

    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ejections(&lb).await, 0);
    assert_eq!(backend_5xx(&lb).await, 0);
    assert_eq!(lb.status().await["backends"][0]["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_upload_is_not_an_upstream_timeout() {
    // UPSTREAM_TIMEOUT counts from the end of the body: an upload longer than it is fine as
    // long as no pause reaches BODY_IDLE_TIMEOUT.
    let backend = echo_length().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.upstream_timeout = Duration::from_millis(300);
    config.body_idle_timeout = Duration::from_secs(2);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let chunks = futures_util::stream::iter(0..8).then(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"0123456789")))
    });

    let res = http_client()
        .post(lb.url("/slow"))
        .body(reqwest::Body::wrap(StreamBody::new(chunks)))
        .send()
        .await
        .expect("request");

    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), "80");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_frees_the_backend() {
    // Arrange: a backend streaming 32 MiB; the client reads the headers, then nothing.
    let backend = crate::helpers::big_stream().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.send_timeout = Duration::from_millis(300);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let mut stream = TcpStream::connect(lb.addr).await.expect("connect");
    stream
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).await.expect("headers start");

    // Act: wait for the balancer to give up on the client.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut freed = false;
    while Instant::now() < deadline {
        if lb.status().await["backends"][0]["in_flight"] == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Assert
    assert!(
        freed,
        "the backend slot stayed with a client that stopped reading"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_hold_their_connection_permit_and_close_when_idle() {
    // Arrange: a backend that accepts WebSocket-style upgrades and echoes nothing.
    let backend = TestServer::start(|mut req| async move {
        if req.uri().path() != "/ws" {
            return text("ok");
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                // Hold the tunnel open without a byte.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(upgraded);
            }
        });
        let mut res = http::Response::new(Full::new(Bytes::new()));
        *res.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        res.headers_mut()
            .insert("connection", http::HeaderValue::from_static("upgrade"));
        res.headers_mut()
            .insert("upgrade", http::HeaderValue::from_static("websocket"));
        res
    })
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.max_connections = 2;
    config.tunnel_idle_timeout = Duration::from_millis(800);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let upgrade =
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
    let mut tunnels = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(lb.addr).await.expect("connect");
        s.write_all(upgrade).await.expect("write");
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.expect("101");
        assert_eq!(&head, b"HTTP/1.1 101");
        tunnels.push(s);
    }

    // Act: a third client while both tunnels are open.
    let blocked = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(400))
        .build()
        .expect("client")
        .get(lb.url("/"))
        .send()
        .await;

    // Assert: the tunnels hold the two permits; once idle they close and free them.
    assert!(
        blocked.is_err(),
        "a third connection was served: {blocked:?}"
    );
    for t in &mut tunnels {
        assert!(
            closed_within(t, Duration::from_secs(3)).await,
            "idle tunnel stayed open"
        );
    }
    let res = http_client().get(lb.url("/")).send().await.expect("served");
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_split_requests_survive_idle_parking() {
    // Arrange: the balancer parks idle keep-alive connections without hyper's buffers.
    let backend = echo_length().await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let mut s = TcpStream::connect(lb.addr).await.expect("connect");

    // Act: two whole requests and the first half of a third in one write; the rest of the
    // third after a pause (the connection idles in between); then, after another pause, a
    // fourth on the same connection.
    let post = |body: &str| {
        format!(
            "POST /p HTTP/1.1\r\nHost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let third = post("ccc");
    let (head, tail) = third.split_at(20);
    s.write_all(format!("{}{}{head}", post("a"), post("bb")).as_bytes())
        .await
        .expect("write");
    let first_two = read_responses(&mut s, 2).await;
    // Longer than PARK_AFTER: the connection is parked with the third's head unparsed.
    tokio::time::sleep(KEEP_ALIVE_PARK_AFTER * 2).await;
    s.write_all(tail.as_bytes()).await.expect("write");
    let third = read_responses(&mut s, 1).await;
    tokio::time::sleep(KEEP_ALIVE_PARK_AFTER * 2).await;
    s.write_all(post("dddd").as_bytes()).await.expect("write");
    let fourth = read_responses(&mut s, 1).await;

    // Assert: every request answered in order, with its own body length; nothing lost.
    let bodies: Vec<_> = first_two
        .iter()
        .chain(&third)
        .chain(&fourth)
        .map(|(status, body)| {
            assert!(status.starts_with("http/1.1 200"), "{status}");
            body.clone()
        })
        .collect();
    assert_eq!(bodies, ["1", "2", "3", "4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_keep_alive_connections_are_closed_in_bounded_time() {
    // Arrange
    let backend = echo_length().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.header_read_timeout = Duration::from_millis(500);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    // Act 1: one request, then silence.
    let mut idle = TcpStream::connect(lb.addr).await.expect("connect");
    idle.write_all(request).await.expect("write");
    let answered = read_responses(&mut idle, 1).await;
    let idle_closed = closed_within(&mut idle, Duration::from_secs(2)).await;

    // Act 2: one request, then the next one a byte every 150 ms (slower than it may take).
    let mut trickle = TcpStream::connect(lb.addr).await.expect("connect");
    trickle.write_all(request).await.expect("write");
    let _ = read_responses(&mut trickle, 1).await;
    let start = Instant::now();
    let mut cut_off = None;
    for byte in request.iter().cycle().take(40) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if trickle.write_all(&[*byte]).await.is_err() {
            cut_off = Some(start.elapsed());
            break;
        }
        let mut probe = [0u8; 512];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), trickle.read(&mut probe)).await
        {
            cut_off = Some(start.elapsed());
            break;
        }
    }

    // Assert: the idle one closed after the keep-alive wait; the trickling one was cut off
    // within two header timeouts (the idle wait, then hyper's header timeout), not served.
    assert_eq!(answered.len(), 1);
    assert!(idle_closed, "an idle keep-alive connection stayed open");
    let cut_off = cut_off.expect("a trickling request was cut off");
    assert!(cut_off < Duration::from_millis(1500), "{cut_off:?}");
}
