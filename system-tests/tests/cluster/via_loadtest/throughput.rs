//! `--throughput` against real replicas: exact request counts in closed and open loop, and
//! one cookie (one session) per connection.

use loadtest::Report;
use loadtest::ThroughputReport;

use crate::helpers::{Cluster, run};

fn throughput(report: Report) -> ThroughputReport {
    match report {
        Report::Throughput(r) => r,
        other => panic!("throughput report expected, got {other:?}"),
    }
}

/// Session records in Redis: `session:{<22-character id>}` (the session lock's bookkeeping
/// keys are longer).
fn session_records(cluster: &Cluster) -> usize {
    cluster
        .redis
        .cli(&["KEYS", &format!("session:{{{}}}", "?".repeat(22))])
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_sends_exactly_the_requested_count() {
    let cluster = Cluster::shared(2).await;

    let report = throughput(
        run(&[
            "--target",
            &cluster.targets(),
            "--throughput",
            "--requests",
            "300",
            "--connections",
            "4",
            "--path",
            "/healthz",
        ])
        .await,
    );

    assert_eq!(report.completed, 300);
    assert_eq!(
        report.common.errors, 0,
        "{:?}",
        report.common.error_examples
    );
    assert_eq!(report.status_counts.get(&200), Some(&300));
    assert_eq!(report.common.latency.count, 300);
    // Connections alternate between the two targets.
    assert_eq!(report.common.requests_per_replica.len(), 2);
    assert_eq!(report.common.verdict, loadtest::Verdict::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_the_scheduled_number_of_requests() {
    let cluster = Cluster::shared(1).await;

    // 200 req/s for 1 s: slots 0..200, whatever the timing.
    let report = throughput(
        run(&[
            "--target",
            &cluster.targets(),
            "--throughput",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--connections",
            "4",
            "--path",
            "/healthz",
        ])
        .await,
    );

    assert_eq!(report.completed + report.common.errors, 200);
    assert_eq!(report.rate, Some(200.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_keeps_its_own_session_cookie() {
    let cluster = Cluster::shared(1).await;

    let report = throughput(
        run(&[
            "--target",
            &cluster.targets(),
            "--throughput",
            "--requests",
            "40",
            "--connections",
            "3",
            "--path",
            "/session",
        ])
        .await,
    );

    assert_eq!(report.completed, 40);
    // One session per connection in Redis, not one per request.
    assert_eq!(session_records(&cluster), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cookies_every_request_is_a_new_session() {
    let cluster = Cluster::shared(1).await;

    let report = throughput(
        run(&[
            "--target",
            &cluster.targets(),
            "--throughput",
            "--requests",
            "12",
            "--connections",
            "2",
            "--path",
            "/session",
            "--no-cookies",
        ])
        .await,
    );

    assert_eq!(report.completed, 12);
    assert_eq!(session_records(&cluster), 12);
}
