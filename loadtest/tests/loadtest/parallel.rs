//! `--parallel K`: lost updates counted exactly against a server that drops every n-th
//! increment, and against real replicas with and without the session lock.

use std::time::Duration;

use loadtest::ParallelReport;
use loadtest::Report;

use crate::helpers::{BrokenServer, Cluster, Fault, cli, run};

fn parallel(report: Report) -> ParallelReport {
    match report {
        Report::Parallel(r) => r,
        other => panic!("parallel report expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_lost_updates_exactly_when_every_nth_increment_is_dropped() {
    // Arrange: 1 opening + 8 x 25 increments = 201; every 7th is acknowledged but dropped.
    let server = BrokenServer::start(Fault::DropEvery(7)).await;

    // Act
    let out = cli(
        &[
            "--target",
            &server.url(),
            "--parallel",
            "8",
            "--per-worker",
            "25",
            "--json",
        ],
        &[],
    )
    .await;

    // Assert
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    assert_eq!(report["mode"], "parallel");
    assert_eq!(report["opening_value"], 1);
    assert_eq!(report["acknowledged"], 200);
    assert_eq!(report["unknown"], 0);
    assert_eq!(report["counter"]["lost"], 201 / 7);
    assert_eq!(report["final_value"], 201 - 201 / 7);
    assert_eq!(report["counter"]["phantom"], 0);
    assert_eq!(report["verdict"], "fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_server_loses_nothing() {
    let server = BrokenServer::replicas(Fault::None, 2, true).await;

    let report = parallel(
        run(&[
            "--target",
            &server.targets(),
            "--parallel",
            "6",
            "--per-worker",
            "20",
        ])
        .await,
    );

    assert_eq!(report.acknowledged, 120);
    assert_eq!(report.final_value, Some(121));
    assert_eq!(report.counter.map(|c| c.lost), Some(0));
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.common.verdict, loadtest::Verdict::Pass);
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
    let cluster = Cluster::start(3, |c| {
        c.session_lock = false;
        c.save_delay = Some(Duration::from_millis(50));
    })
    .await;

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
