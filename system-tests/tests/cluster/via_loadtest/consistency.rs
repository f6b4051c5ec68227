//! The sequential mode against real replicas: passes when sessions are shared in Redis, fails
//! with resets when each replica keeps its own, and refuses to pass when nothing hopped.

use crate::helpers::{Cluster, cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_through_three_replicas_on_shared_redis() {
    // Arrange
    let cluster = Cluster::shared(3).await;

    // Act
    let out = cli(
        &[
            "--target",
            &cluster.targets(),
            "--users",
            "10",
            "--requests",
            "12",
            "--json",
        ],
        &[],
    )
    .await;

    // Assert
    let report = out.json();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(report["mode"], "sequential");
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["requests"], 120);
    assert_eq!(report["errors"], 0);
    for kind in ["reset", "repeat", "gap", "non_monotonic", "unknown"] {
        assert_eq!(report["anomalies"][kind], 0, "{kind}");
    }
    // Client-side round robin: every consecutive pair of a session changed replica.
    assert_eq!(report["hops"], 10 * 11);
    assert_eq!(report["replicas_per_session"]["min"], 3);
    for node in ["node-0", "node-1", "node-2"] {
        assert_eq!(report["requests_per_replica"][node], 40, "{node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_text_endpoint_is_checked_the_same_way() {
    let cluster = Cluster::shared(3).await;

    let report = crate::helpers::run(&[
        "--target",
        &cluster.targets(),
        "--users",
        "5",
        "--requests",
        "9",
        "--endpoint",
        "text",
    ])
    .await;

    assert_eq!(report.verdict(), loadtest::Verdict::Pass);
    let loadtest::Report::Sequential(sequential) = report else {
        panic!("sequential mode expected");
    };
    assert_eq!(sequential.hops, 5 * 8);
    assert_eq!(sequential.anomalies.wrong_values(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_with_resets_when_replicas_keep_sessions_in_memory() {
    // Arrange: SESSION_STORE=memory, so no replica knows another's sessions.
    let cluster = Cluster::memory(3).await;

    // Act
    let out = cli(
        &[
            "--target",
            &cluster.targets(),
            "--users",
            "6",
            "--requests",
            "6",
            "--json",
        ],
        &[],
    )
    .await;

    // Assert
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    assert_eq!(report["verdict"], "fail");
    // Every request after the first lands on a replica that never saw the cookie.
    assert_eq!(report["anomalies"]["reset"], 6 * 5);
    assert_eq!(report["sessions_with_anomalies"], 6);
    assert_eq!(report["examples"][0]["kind"], "reset");
    let reasons = report["reasons"].to_string();
    assert!(reasons.contains("not shared"), "{reasons}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sessions_fail_in_the_table_too() {
    let cluster = Cluster::memory(2).await;

    let out = cli(
        &[
            "--target",
            &cluster.targets(),
            "--users",
            "2",
            "--requests",
            "4",
        ],
        &[],
    )
    .await;

    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
    assert!(out.stdout.contains("reset 6"), "{}", out.stdout);
    assert!(out.stdout.contains("first anomalies:"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_proves_nothing_and_does_not_pass() {
    let cluster = Cluster::shared(1).await;

    let out = cli(
        &[
            "--target",
            &cluster.targets(),
            "--users",
            "3",
            "--requests",
            "5",
        ],
        &[],
    )
    .await;

    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("NOTHING PROVEN"), "{}", out.stdout);
    assert!(
        out.stdout.contains("one replica (node-0)") && out.stdout.contains("nothing was proven"),
        "{}",
        out.stdout
    );
}
