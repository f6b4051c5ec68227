//! The app answers an upload to an unknown path before reading it: the balancer relays that
//! early answer, and a failed write of the request body is not the backend's failure.

use crate::helpers::{
    Cluster, TestBalancer, backend_5xx, ejections, raw_exchange, test_config, upstreams,
};

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
async fn the_apps_early_404_to_an_upload_is_relayed_and_ejects_nobody() {
    // Arrange: two real replicas, which answer 404 to an unknown path without reading the
    // body; one balancer worker, as in the report.
    let cluster = Cluster::start(2).await;
    let mut config = test_config(&upstreams(&cluster.addrs()));
    config.worker_threads = 1;
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;

    // Act
    let got = statuses(&lb, "/nonexistent").await;

    // Assert: every upload got the app's own answer; nothing was ejected or charged.
    let not_404: Vec<_> = got
        .iter()
        .filter(|s| !s.starts_with("HTTP/1.1 404"))
        .collect();
    assert!(not_404.is_empty(), "{not_404:?}");
    assert_eq!(ejections(&lb).await, 0, "{}", lb.status().await);
    assert_eq!(backend_5xx(&lb).await, 0, "{}", lb.status().await);
    assert_eq!(lb.counter("balancer_retries_total").await, 0);
}
