//! The checker against small servers that are broken on purpose: each broken counter it can
//! observe must fail, a run that could not observe anything must say NOTHING PROVEN, and a
//! correct server must still pass. Each case runs the real binary and checks its exit code.

use crate::helpers::{BrokenServer, Cli, Fault, cli};

/// Runs the binary in parallel mode against `server` with `extra` arguments.
async fn parallel(server: &BrokenServer, extra: &[&str]) -> Cli {
    let targets = server.targets();
    let mut args = vec![
        "--target",
        &targets,
        "--json",
        "--parallel",
        "4",
        "--per-worker",
        "25",
    ];
    args.extend_from_slice(extra);
    cli(&args, &[]).await
}

/// Runs the binary in sequential mode against `server`: `users` × `requests`.
async fn sequential(server: &BrokenServer, users: &str, requests: &str) -> Cli {
    let targets = server.targets();
    cli(
        &[
            "--target",
            &targets,
            "--json",
            "--users",
            users,
            "--requests",
            requests,
        ],
        &[],
    )
    .await
}

fn rules(out: &Cli) -> Vec<String> {
    out.json()["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|v| v["rule"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_counter_on_two_replicas_passes_in_both_modes() {
    let server = BrokenServer::replicas(Fault::None, 2, true).await;

    let par = parallel(&server, &[]).await;
    let seq = sequential(&server, "4", "10").await;

    assert_eq!(par.code, 0, "{}", par.stdout);
    assert_eq!(par.json()["verdict"], "pass");
    assert_eq!(par.json()["base_value"], 1);
    assert_eq!(seq.code, 0, "{}", seq.stdout);
    assert_eq!(seq.json()["sessions_shared"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_and_a_doubled_increment_fail_though_the_final_value_is_right() {
    let server = BrokenServer::replicas(
        Fault::LoseOneDoubleOne {
            lose_at: 20,
            double_at: 40,
        },
        2,
        true,
    )
    .await;

    let out = parallel(&server, &[]).await;

    assert_eq!(out.code, 1, "{}", out.stdout);
    let report = out.json();
    assert_eq!(report["verdict"], "fail");
    assert_eq!(
        report["counter"]["lost"], 0,
        "the final value alone looks right"
    );
    assert!(
        rules(&out).contains(&"duplicate_value".to_owned()),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_fail_though_the_counter_is_right() {
    let server = BrokenServer::replicas(Fault::StaleAnswers, 2, true).await;

    let out = parallel(&server, &[]).await;

    assert_eq!(out.code, 1, "{}", out.stdout);
    let found = rules(&out);
    assert!(
        found.contains(&"duplicate_value".to_owned())
            || found.contains(&"below_acknowledged".to_owned()),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_are_unknown_outcomes_in_both_modes() {
    let server = BrokenServer::replicas(Fault::Unreadable, 2, true).await;

    let par = parallel(&server, &[]).await;
    let seq = sequential(&server, "2", "5").await;

    for out in [&par, &seq] {
        assert_eq!(out.code, 1, "{}", out.stdout);
        let report = out.json();
        assert_eq!(report["verdict"], "fail");
        assert!(report["errors"].as_u64() > Some(0), "{}", out.stdout);
        let examples = report["error_examples"].to_string();
        assert!(
            examples.contains("session JSON") || examples.contains("Session View Cnt"),
            "{examples}"
        );
    }
    assert_eq!(par.json()["acknowledged"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_could_not_show_a_lost_update_prove_nothing() {
    let two = BrokenServer::replicas(Fault::None, 2, true).await;
    let one = BrokenServer::replicas(Fault::None, 1, true).await;

    let one_worker = cli(
        &[
            "--target",
            &two.targets(),
            "--json",
            "--parallel",
            "1",
            "--per-worker",
            "10",
        ],
        &[],
    )
    .await;
    let one_replica = parallel(&one, &[]).await;
    let no_time = cli(
        &[
            "--target",
            &two.targets(),
            "--json",
            "--parallel",
            "4",
            "--duration",
            "1us",
        ],
        &[],
    )
    .await;

    for (name, out) in [
        ("--parallel 1", &one_worker),
        ("one replica", &one_replica),
        ("--duration 1us", &no_time),
    ] {
        assert_eq!(out.code, 1, "{name}: {}", out.stdout);
        assert_eq!(out.json()["verdict"], "unproven", "{name}: {}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_endpoint_works_in_parallel_mode_without_a_read_route() {
    let server = BrokenServer::replicas(Fault::None, 2, false).await;

    let out = parallel(&server, &["--endpoint", "text"]).await;

    assert_eq!(out.code, 0, "{}", out.stdout);
    let report = out.json();
    assert_eq!(report["verdict"], "pass");
    assert_eq!(
        report["reads"], 2,
        "the base and the final read were increments"
    );
    assert_eq!(
        report["base_value"], 2,
        "the opening increment, then the base read"
    );
    assert_eq!(report["final_value"], 102);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_first_answer_does_not_shift_the_bounds() {
    let server = BrokenServer::replicas(Fault::WrongFirstAnswer, 2, true).await;

    let out = parallel(&server, &[]).await;

    let report = out.json();
    assert_eq!(report["opening_value"], 100);
    assert_eq!(report["base_value"], 1, "the base comes from a read");
    assert_eq!(report["counter"]["lost"], 0);
    // The count-based bounds still count from the read: no answer is judged against 100.
    let found = rules(&out);
    assert!(
        !found.contains(&"below_acknowledged".to_owned())
            && !found.contains(&"above_attempted".to_owned()),
        "{}",
        out.stdout
    );
    // But the opening's answer is judged like any other (issue 24): 100, then a base of 1, is
    // a base read that does not follow from it, and a counter that went back in real time.
    assert!(
        found.contains(&"base_read_mismatch".to_owned())
            && found.contains(&"real_time_order".to_owned()),
        "{}",
        out.stdout
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_that_lands_late_is_unknown_not_a_gap() {
    let server = BrokenServer::replicas(Fault::ApplyLate { at: 3 }, 2, true).await;

    let out = sequential(&server, "3", "6").await;

    let report = out.json();
    assert_eq!(report["anomalies"]["gap"], 0, "{}", out.stdout);
    assert_eq!(report["anomalies"]["unknown"], 3);
    assert_eq!(report["verdict"], "fail", "errors still fail the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_rotation_with_the_count_carried_is_named() {
    let server = BrokenServer::replicas(Fault::Rotate { at: 3 }, 2, true).await;

    let out = sequential(&server, "2", "6").await;

    let report = out.json();
    assert_eq!(out.code, 0, "the count is right: {}", out.stdout);
    assert_eq!(report["rotated_sessions"], 2);
    assert!(
        report["notes"].to_string().contains("rotation"),
        "{}",
        out.stdout
    );
}
