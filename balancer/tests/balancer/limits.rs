//! Client-side protection: slowloris cut by the header-read timeout, malformed requests get
//! 400, oversized headers get 431, and the process keeps serving afterwards.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    TestBalancer, TestServer, http_client, raw_exchange, test_config, text, upstreams,
};

async fn balancer_with_backend(header_read_timeout: Duration) -> (TestBalancer, TestServer) {
    let backend = TestServer::start(|_req| async { text("ok") }).await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.header_read_timeout = header_read_timeout;
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    (lb, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connection_is_closed() {
    // Arrange
    let (lb, _backend) = balancer_with_backend(Duration::from_millis(500)).await;
    let mut stream = TcpStream::connect(lb.addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();

    // Act: one header line every 100 ms, never finishing; at most 50 lines (5 s).
    let (mut rd, mut wr) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for i in 0..50 {
            if wr
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();

    // Assert: closed by the balancer after the 500 ms header timeout, well before 5 s.
    assert!(closed.is_ok(), "slowloris connection was never closed");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_request_line_gets_400_and_the_process_keeps_serving() {
    // Arrange
    let (lb, _backend) = balancer_with_backend(Duration::from_secs(5)).await;

    // Act
    let garbage = raw_exchange(lb.addr, b"\x16\x03\x01 nonsense \xff\xfe\r\n\r\n").await;
    let bad_header =
        raw_exchange(lb.addr, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await;
    let after = http_client()
        .get(lb.url("/"))
        .send()
        .await
        .expect("request");

    // Assert
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    assert!(bad_header.starts_with("HTTP/1.1 400"), "{bad_header:?}");
    assert_eq!(after.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_gets_431() {
    // Arrange
    let (lb, _backend) = balancer_with_backend(Duration::from_secs(5)).await;
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 70 * 1024));
    request.extend_from_slice(b"\r\n\r\n");

    // Act
    let resp = raw_exchange(lb.addr, &request).await;
    let after = http_client()
        .get(lb.url("/"))
        .send()
        .await
        .expect("request");

    // Assert
    assert!(
        resp.starts_with("HTTP/1.1 431"),
        "{:?}",
        &resp[..resp.len().min(200)]
    );
    assert_eq!(after.status(), 200);
}
