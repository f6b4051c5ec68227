//! HTTP/1.1 upgrade passthrough (what WebSocket uses): 101 relayed, then raw bytes both ways;
//! on shutdown, tunnels are drained like requests.

use std::time::{Duration, Instant};

use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestBalancer, TestServer, test_config, text, upstreams};

/// A backend that switches to an "echo" protocol and echoes with a prefix.
async fn echo_backend() -> TestServer {
    TestServer::start(|mut req| async move {
        if !req.headers().contains_key("upgrade") {
            return text("plain");
        }
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&[b"echo:", &buf[..n]].concat()).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = text("");
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("upgrade", "echo".parse().expect("value"));
        r.headers_mut()
            .insert("connection", "upgrade".parse().expect("value"));
        r
    })
    .await
}

/// A test config whose `UPGRADE_PROTOCOLS` allows the echo protocol besides `websocket`.
fn echo_allowed(backends: &[std::net::SocketAddr]) -> balancer::Config {
    let mut config = test_config(&upstreams(backends));
    config.upgrade_protocols = "websocket,echo".parse().expect("valid");
    config
}

/// Asks `lb` for the echo upgrade; returns the stream after the response head, and the head.
async fn open_tunnel(lb: std::net::SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(lb).await.expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
            .await
            .expect("head in time")
            .expect("read");
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).to_ascii_lowercase())
}

/// Sends `what` through the tunnel and reads the echo.
async fn echo(s: &mut TcpStream, what: &str) -> Vec<u8> {
    s.write_all(what.as_bytes()).await.expect("write");
    let mut echoed = vec![0u8; "echo:".len() + what.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");
    echoed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_passed_through_both_ways() {
    // Arrange
    let backend = echo_backend().await;
    let lb = TestBalancer::start(echo_allowed(&[backend.addr])).await;
    lb.wait_healthy(1).await;

    // Act
    let (mut s, head) = open_tunnel(lb.addr).await;
    let echoed = echo(&mut s, "hello tunnel").await;

    // Assert
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    assert_eq!(&echoed, b"echo:hello tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_works_through_the_drain_and_is_closed_at_drain_timeout() {
    // Arrange
    let backend = echo_backend().await;
    let mut config = echo_allowed(&[backend.addr]);
    config.drain_timeout = Duration::from_secs(1);
    let mut lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    let (mut s, head) = open_tunnel(lb.addr).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");

    // Act: shut down while the tunnel is open.
    lb.signal_shutdown();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = echo(&mut s, "still here").await;
    let ended = tokio::time::timeout(Duration::from_secs(5), lb.join())
        .await
        .expect("the balancer stops once DRAIN_TIMEOUT ends");
    let took = signalled.elapsed();
    let mut buf = [0u8; 16];
    let after = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("the tunnel is closed, not left hanging");

    // Assert: the drain waited for the tunnel, kept it working, then closed it.
    assert_eq!(&during, b"echo:still here");
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        took >= Duration::from_millis(900),
        "stopped before DRAIN_TIMEOUT: {took:?}"
    );
    assert!(matches!(after, Ok(0) | Err(_)), "{after:?}");
}
