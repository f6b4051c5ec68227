//! `--throughput`: latency measured from the intended send time in open loop. Exact request
//! counts and one cookie (one session) per connection, against real replicas:
//! `system-tests/tests/cluster/via_loadtest/throughput.rs`.

use std::time::Duration;

use loadtest::Report;
use loadtest::ThroughputReport;

use crate::helpers::{BrokenServer, Fault, run};

fn throughput(report: Report) -> ThroughputReport {
    match report {
        Report::Throughput(r) => r,
        other => panic!("throughput report expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_counts_queueing_from_the_intended_send_time() {
    // Arrange: every answer takes 100 ms; one connection is asked for one request per 20 ms.
    let server = BrokenServer::start(Fault::Slow(Duration::from_millis(100))).await;

    // Act: 20 slots in 0.4 s, served one after another in about 2 s.
    let report = throughput(
        run(&[
            "--target",
            &server.url(),
            "--throughput",
            "--rate",
            "50",
            "--duration",
            "400ms",
            "--connections",
            "1",
            "--path",
            "/session",
        ])
        .await,
    );

    // Assert: the last request was due at 0.38 s and answered after 2 s, so its latency
    // includes the wait behind the slow ones (a closed loop would report about 100 ms).
    assert_eq!(report.completed, 20);
    assert!(
        report.common.latency.max_ms >= 1000.0,
        "{:?}",
        report.common.latency
    );
    assert!(
        report.common.latency.p50_ms >= 100.0,
        "{:?}",
        report.common.latency
    );
}
