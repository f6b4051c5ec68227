//! Faults only a broken server shows: the checker must name each one, at the right request.

use loadtest::AnomalyKind;
use loadtest::Report;

use crate::helpers::{BrokenServer, Fault, run};

fn sequential(report: Report) -> loadtest::SequentialReport {
    match report {
        Report::Sequential(r) => r,
        other => panic!("sequential report expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_gaps_and_repeats_from_a_broken_server() {
    // Arrange: the 3rd increment adds 2, the 6th adds nothing.
    let server = BrokenServer::start(Fault::GapAndRepeat {
        gap_at: 3,
        repeat_at: 6,
    })
    .await;

    // Act
    let report =
        sequential(run(&["--target", &server.url(), "--users", "4", "--requests", "8"]).await);

    // Assert: 1 2 4 5 6 6 7 8 for every user.
    assert_eq!(report.common.verdict, loadtest::Verdict::Fail);
    assert_eq!(report.anomalies.gap, 4);
    assert_eq!(report.anomalies.repeat, 4);
    assert_eq!(report.anomalies.reset + report.anomalies.non_monotonic, 0);
    assert_eq!(report.sessions_with_anomalies, 4);
    let gap = report
        .examples
        .iter()
        .find(|e| e.anomaly.kind == AnomalyKind::Gap)
        .expect("a gap example");
    assert_eq!((gap.anomaly.seq, gap.anomaly.observed), (3, Some(4)));
    let repeat = report
        .examples
        .iter()
        .find(|e| e.anomaly.kind == AnomalyKind::Repeat)
        .expect("a repeat example");
    assert_eq!((repeat.anomaly.seq, repeat.anomaly.observed), (6, Some(6)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_is_an_unknown_outcome_not_a_gap() {
    // Arrange: the 4th increment answers 500 but was applied, so the 5th reads 5.
    let server = BrokenServer::start(Fault::ErrorButApply { at: 4 }).await;

    // Act
    let report =
        sequential(run(&["--target", &server.url(), "--users", "3", "--requests", "6"]).await);

    // Assert: Jepsen's `info`: the failed request may have been applied, so 5 is no gap.
    assert_eq!(report.anomalies.unknown, 3);
    assert_eq!(report.anomalies.wrong_values(), 0);
    assert_eq!(report.common.errors, 3);
    assert_eq!(report.common.verdict, loadtest::Verdict::Fail);
    assert!(report.common.error_examples[0].contains("500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_endpoint_detects_the_same_faults() {
    let server = BrokenServer::start(Fault::GapAndRepeat {
        gap_at: 2,
        repeat_at: 4,
    })
    .await;

    let report = sequential(
        run(&[
            "--target",
            &server.url(),
            "--users",
            "2",
            "--requests",
            "5",
            "--endpoint",
            "text",
        ])
        .await,
    );

    assert_eq!((report.anomalies.gap, report.anomalies.repeat), (2, 2));
}
