//! The binary's contract: 2 = could not run (unreachable target, bad flags or environment),
//! with a message naming what to fix.

use crate::helpers::{BrokenServer, Fault, cli};

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
    // dropped here: nothing listens on the port any more
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_exits_two_and_names_it() {
    let target = format!("http://127.0.0.1:{}", closed_port());

    let out = cli(&["--target", &target], &[]).await;

    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(&target), "{}", out.stderr);
    assert!(out.stderr.contains("unreachable"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_says_how_to_start_the_cluster_both_ways() {
    let target = format!("http://127.0.0.1:{}", closed_port());

    let out = cli(&["--target", &target], &[]).await;

    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("docker compose up --build --scale app=3"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("deploy/local.sh 3"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_from_the_environment_exits_two() {
    let target = format!("http://127.0.0.1:{}", closed_port());

    let out = cli(
        &["--throughput", "--requests", "5"],
        &[("LOADTEST_TARGET", &target)],
    )
    .await;

    assert_eq!(out.code, 2);
    assert!(out.stderr.contains(&target), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_exit_two() {
    for args in [
        &["--users", "0"][..],
        &["--parallel", "4", "--throughput"],
        &["--target", "ftp://127.0.0.1:1"],
        &["--rate", "100"],
    ] {
        let out = cli(args, &[]).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_environment_value_names_the_variable() {
    let out = cli(&[], &[("LOADTEST_USERS", "many")]).await;

    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("LOADTEST_USERS"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_mode_that_cannot_open_a_session_exits_two() {
    // The broken server has no such prefix: the opening request gets 404.
    let server = BrokenServer::start(Fault::None).await;
    let target = format!("{}/nowhere", server.url());

    let out = cli(&["--target", &target, "--parallel", "2"], &[]).await;

    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("could not open a session"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("404"), "{}", out.stderr);
}
