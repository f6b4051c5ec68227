//! Backends that answer an upload before reading it, or stop reading it: a failed write of
//! the request body is not the backend's failure. The client gets the backend's answer, or,
//! when none came, a 502 that ejects nothing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::helpers::{TestBalancer, backend_5xx, ejections, raw_exchange, test_config, upstreams};

/// Uploads, each through the balancer on a fresh connection: enough for the race between
/// the backend's answer, its reset and the balancer's body write to come out every way.
const UPLOADS: usize = 30;

/// A `POST` of `size` bytes to `path`.
fn upload(path: &str, size: usize) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n\
         content-length: {size}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'u', size));
    request
}

/// What a raw backend does once it read a request head that is not a health check.
#[derive(Clone, Copy)]
enum Early {
    /// Answer 404 without reading the body, then close (the unread body makes it a reset).
    Answer,
    /// Close without answering, the body unread (a reset).
    Reset,
}

/// A backend on raw sockets that reads only request heads; health checks get 200.
struct EarlyBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EarlyBackend {
    async fn start(early: Early) -> EarlyBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(async move {
                    let head = read_head(&mut stream).await;
                    if head.starts_with("get /readyz") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                        return;
                    }
                    if let Early::Answer = early {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")
                            .await;
                    }
                    // Dropped with the body unread: the kernel answers it with a reset.
                });
                while conns.try_join_next().is_some() {}
            }
        });
        EarlyBackend { addr, task }
    }
}

impl Drop for EarlyBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads up to the end of a request head (at most 2 s), lower-cased.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

/// Sends [`UPLOADS`] 64 KiB uploads to `path`, as in the report; returns each answer's
/// status line.
async fn statuses(lb: &TestBalancer, path: &str) -> Vec<String> {
    let request = upload(path, 64 * 1024);
    let mut out = Vec::with_capacity(UPLOADS);
    for _ in 0..UPLOADS {
        let raw = raw_exchange(lb.addr, &request).await;
        out.push(raw.lines().next().unwrap_or("<nothing>").to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_comes_before_a_reset_is_relayed() {
    // Arrange: raw backends that answer 404 after the head and close on the unread body.
    let a = EarlyBackend::start(Early::Answer).await;
    let b = EarlyBackend::start(Early::Answer).await;
    let mut config = test_config(&upstreams(&[a.addr, b.addr]));
    config.worker_threads = 1;
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;

    // Act
    let got = statuses(&lb, "/upload").await;

    // Assert
    let not_404: Vec<_> = got
        .iter()
        .filter(|s| !s.starts_with("HTTP/1.1 404"))
        .collect();
    assert!(not_404.is_empty(), "{not_404:?}");
    assert_eq!(ejections(&lb).await, 0, "{}", lb.status().await);
    assert_eq!(backend_5xx(&lb).await, 0, "{}", lb.status().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_an_upload_without_answering_gets_a_502_that_ejects_nobody() {
    // Arrange: raw backends that read the head, then reset without a word.
    let a = EarlyBackend::start(Early::Reset).await;
    let b = EarlyBackend::start(Early::Reset).await;
    let mut config = test_config(&upstreams(&[a.addr, b.addr]));
    config.worker_threads = 1;
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;

    // Act: uploads larger than the socket buffers on the way hold, so the backend's reset
    // always meets a write (a body the kernel took whole before the reset would be a
    // request sent in full, and the reset the backend's failure).
    let request = upload("/upload", 16 * 1024 * 1024);
    let mut got = Vec::new();
    for _ in 0..3 {
        let raw = raw_exchange(lb.addr, &request).await;
        got.push(raw.lines().next().unwrap_or("<nothing>").to_owned());
    }

    // Assert: a 502 (the upload may have been acted on: never replayed), and no ejection
    // and no failure on either backend's record.
    assert!(got.iter().all(|s| s.starts_with("HTTP/1.1 502")), "{got:?}");
    let status = lb.status().await;
    assert_eq!(ejections(&lb).await, 0, "{status}");
    for backend in status["backends"].as_array().expect("backends") {
        assert_eq!(backend["failures"], 0, "{status}");
    }
    assert_eq!(lb.counter("balancer_retries_total").await, 0);
}
