//! The per-worker upstream pool: connections reused, idle ones closed after
//! `POOL_IDLE_TIMEOUT`, `POOL_MAX_IDLE` honoured.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::helpers::{TestBalancer, TestServer, read_message, test_config, text, upstreams};

/// A balancer with one worker and no health checks after the first, over `backend`.
async fn one_worker(
    backend: std::net::SocketAddr,
    tune: impl FnOnce(&mut balancer::Config),
) -> TestBalancer {
    let mut config = test_config(&upstreams(&[backend]));
    config.worker_threads = 1;
    config.health_interval = Duration::from_secs(30);
    tune(&mut config);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(1).await;
    lb
}

/// Each upstream connection's first request line, and when the balancer closed it.
type ConnLog = Arc<Mutex<Vec<(String, Option<Instant>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    // Arrange
    let backend = TestServer::start(|_| async { text("ok") }).await;
    let lb = one_worker(backend.addr, |_| {}).await;
    let before = backend.accepted.load(Ordering::SeqCst);
    let client = crate::helpers::http_client();

    // Act: 100 requests one after another.
    for _ in 0..100 {
        let resp = client.get(lb.url("/x")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), "ok");
    }

    // Assert: one upstream connection carried all of them.
    assert_eq!(backend.accepted.load(Ordering::SeqCst) - before, 1);
    assert_eq!(lb.counter("balancer_upstream_connections_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_max_idle_zero_keeps_no_connection() {
    // Arrange
    let backend = TestServer::start(|_| async { text("ok") }).await;
    let lb = one_worker(backend.addr, |c| c.pool_max_idle = 0).await;
    let before = backend.accepted.load(Ordering::SeqCst);
    let client = crate::helpers::http_client();

    // Act
    for _ in 0..5 {
        let resp = client.get(lb.url("/x")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
    }

    // Assert: a new connection per request.
    assert_eq!(backend.accepted.load(Ordering::SeqCst) - before, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upstream_connection_is_closed_after_pool_idle_timeout() {
    // Arrange: a raw keep-alive backend that notes when each connection's peer closes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns: ConnLog = Arc::default();
    let log = Arc::clone(&conns);
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let log: ConnLog = Arc::clone(&log);
            tokio::spawn(async move {
                let mut index: Option<usize> = None;
                loop {
                    let request = read_message(&mut stream).await;
                    if request.is_empty() {
                        if let Some(i) = index {
                            log.lock().expect("lock")[i].1 = Some(Instant::now());
                        }
                        return;
                    }
                    if index.is_none() {
                        let mut log = log.lock().expect("lock");
                        let first = request.lines().next().unwrap_or_default().to_owned();
                        log.push((first, None));
                        index = Some(log.len() - 1);
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let lb = one_worker(addr, |c| c.pool_idle_timeout = Duration::from_millis(300)).await;

    // Act
    let sent = Instant::now();
    let resp = crate::helpers::http_client()
        .get(lb.url("/probe"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let mut closed = None;
    while sent.elapsed() < Duration::from_secs(3) && closed.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        closed = conns
            .lock()
            .expect("lock")
            .iter()
            .find(|(first, _)| first.starts_with("GET /probe"))
            .and_then(|(_, at)| *at);
    }

    // Assert: closed by the balancer after the idle timeout plus one sweep, not kept.
    let closed = closed.expect("the idle upstream connection was closed");
    let after = closed - sent;
    assert!(
        after >= Duration::from_millis(250),
        "closed too early: {after:?}"
    );
    assert!(after < Duration::from_secs(2), "closed late: {after:?}");
    server.abort();
}
