//! `--parallel K` against real replicas: with the session lock nothing is lost; with the
//! last writer winning, the lost updates are counted exactly.

use std::time::Duration;

use loadtest::ParallelReport;
use loadtest::Report;

use crate::helpers::{Cluster, run};

fn parallel(report: Report) -> ParallelReport {
    match report {
        Report::Parallel(r) => r,
        other => panic!("parallel report expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_lock_keeps_every_increment_across_three_replicas() {
    // Arrange: the app's default, SESSION_LOCK=on.
    let cluster = Cluster::shared(3).await;

    // Act
    let report = parallel(
        run(&[
            "--target",
            &cluster.targets(),
            "--parallel",
            "8",
            "--per-worker",
            "10",
        ])
        .await,
    );

    // Assert
    assert_eq!(
        report.common.errors, 0,
        "{:?}",
        report.common.error_examples
    );
    assert_eq!(report.acknowledged, 80);
    assert_eq!(report.final_value, Some(81));
    assert_eq!(report.counter.map(|c| c.lost), Some(0));
    assert_eq!(report.common.verdict, loadtest::Verdict::Pass);
    assert_eq!(report.common.requests_per_replica.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_write_wins_sessions_show_lost_updates() {
    // Arrange: lock off, and a pause between load and save so racing requests overlap.
    let (cluster, _held) =
        Cluster::with_saves_held(3, Duration::from_millis(50), |c| c.session_lock = false).await;

    // Act
    let report = parallel(
        run(&[
            "--target",
            &cluster.targets(),
            "--parallel",
            "4",
            "--per-worker",
            "5",
        ])
        .await,
    );

    // Assert
    let check = report.counter.expect("final value read");
    assert_eq!(report.acknowledged, 20);
    assert!(check.lost > 0, "{report:?}");
    assert_eq!(
        check.lost,
        check.expected_min - report.final_value.unwrap_or_default()
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.rule == loadtest::Rule::DuplicateValue),
        "{:?}",
        report.violations
    );
    assert_eq!(report.common.verdict, loadtest::Verdict::Fail);
}
