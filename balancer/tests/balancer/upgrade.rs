//! HTTP/1.1 upgrade passthrough (what WebSocket uses): 101 relayed, then raw bytes both ways.

use std::time::Duration;

use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestBalancer, TestServer, test_config, text, upstreams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_passed_through_both_ways() {
    // Arrange: a backend that switches to an "echo" protocol and echoes with a prefix.
    let backend = TestServer::start(|mut req| async move {
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
    .await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;

    // Act
    let mut s = TcpStream::connect(lb.addr).await.expect("connect");
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
    s.write_all(b"hello tunnel").await.expect("write");
    let mut echoed = vec![0u8; "echo:hello tunnel".len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");

    // Assert
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    assert_eq!(&echoed, b"echo:hello tunnel");
}
