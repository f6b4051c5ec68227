//! Memory of a settled burst of connections goes back to the OS (`MEMORY_TRIM`). (That a
//! steady turnover is never paused for a trim is the unit test of the decision in
//! `balancer/src/memory.rs`: here it would depend on how the machine schedules the test.)

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{TestBalancer, TestServer, read_responses, test_config, text, upstreams};

async fn trims(lb: &TestBalancer) -> u64 {
    lb.counter("balancer_memory_trims_total").await
}

/// Opens `n` keep-alive connections, each making one request, and returns them open.
async fn burst(lb: &TestBalancer, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(lb.addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        conns.push(s);
    }
    for s in &mut conns {
        let answers = read_responses(s, 1).await;
        assert!(answers[0].0.starts_with("http/1.1 200"), "{answers:?}");
    }
    conns
}

/// Polls `/metrics` until the trim count reaches `at_least`, for up to `within`.
async fn trims_reach(lb: &TestBalancer, at_least: u64, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = trims(lb).await;
        if n >= at_least || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_burst_of_connections_is_trimmed_once() {
    // Arrange
    let backend = TestServer::start(|_| async { text("ok") }).await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    assert_eq!(trims(&lb).await, 0);

    // Act 1: 200 clients at once, then idle (their connections are parked).
    let conns = burst(&lb, 200).await;
    trims_reach(&lb, 1, Duration::from_secs(5)).await;
    tokio::time::sleep(balancer::MEMORY_TRIM_TICK * 2).await;
    let settled = trims(&lb).await;
    // Act 2: nothing more happens for a few ticks.
    tokio::time::sleep(balancer::MEMORY_TRIM_TICK * 4).await;
    let quiet = trims(&lb).await;
    // Act 3: the burst closes.
    drop(conns);
    let after_close = trims_reach(&lb, quiet + 1, Duration::from_secs(5)).await;
    tokio::time::sleep(balancer::MEMORY_TRIM_TICK * 2).await;
    let closed = trims(&lb).await;

    // Assert: a trim once the parks settled (one, unless the machine paused the test for a
    // whole tick mid-burst), none while nothing changed, and one more once the closes
    // settled.
    assert!((1..=2).contains(&settled), "{settled} trims");
    assert_eq!(quiet, settled);
    assert_eq!(after_close, quiet + 1);
    assert_eq!(closed, after_close);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turnover_of_connections_is_trimmed_once_it_stops_and_never_with_memory_trim_off() {
    // Arrange: one balancer with trimming, one without.
    let backend = TestServer::start(|_| async { text("ok") }).await;
    let lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    let mut off = test_config(&upstreams(&[backend.addr]));
    off.memory_trim = false;
    let lb_off = TestBalancer::start(off).await;
    lb.wait_healthy(1).await;
    lb_off.wait_healthy(1).await;

    // Act 1: new connections keep coming and closing for 2 s (a steady turnover).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        drop(burst(&lb, 20).await);
        drop(burst(&lb_off, 20).await);
    }
    // Act 2: the turnover stops.
    trims_reach(&lb, 1, Duration::from_secs(5)).await;
    tokio::time::sleep(balancer::MEMORY_TRIM_TICK * 3).await;
    let after = trims(&lb).await;

    // Assert: once they stopped, one trim (at most one more if the machine paused the test
    // for a whole tick while connections were still coming); none ever with MEMORY_TRIM off.
    assert!((1..=2).contains(&after), "{after} trims");
    assert_eq!(trims(&lb_off).await, 0);
}
