//! `--parallel K`: lost updates counted exactly against a server that drops every n-th
//! increment. Against real replicas with and without the session lock:
//! `system-tests/tests/cluster/via_loadtest/parallel.rs`.

use loadtest::ParallelReport;
use loadtest::Report;

use crate::helpers::{BrokenServer, Fault, cli, run};

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
