//! The third audit (issue 24): counters the checker passed with exit 0, each served by a fake
//! in `fakes` (one process answering as app-1/2/3), and the rule that now fails it. A correct
//! fake must still pass in every mode, and a run that could not tell sessions from connections
//! must say NOTHING PROVEN and why. Each case runs the real binary.

use serde_json::{Value, json};

use crate::fakes::{Case, Fake};
use crate::helpers::{Cli, cli};

/// Runs the binary in parallel mode: `workers` × `per_worker` on one session.
async fn parallel(fake: &Fake, workers: &str, per_worker: &str, extra: &[&str]) -> Cli {
    let url = fake.url();
    let mut args = vec![
        "--target",
        &url,
        "--json",
        "--parallel",
        workers,
        "--per-worker",
        per_worker,
    ];
    args.extend_from_slice(extra);
    cli(&args, &[]).await
}

/// Runs the binary in sequential mode: `users` × `requests`, on the fake's one URL.
async fn sequential(fake: &Fake, users: &str, requests: &str, extra: &[&str]) -> Cli {
    let url = fake.url();
    let mut args = vec![
        "--target",
        &url,
        "--json",
        "--users",
        users,
        "--requests",
        requests,
    ];
    args.extend_from_slice(extra);
    cli(&args, &[]).await
}

/// One violation of a parallel report, found by its rule name.
fn violation<'a>(report: &'a Value, rule: &str) -> Option<&'a Value> {
    report["violations"]
        .as_array()?
        .iter()
        .find(|v| v["rule"] == rule)
}

fn reasons(report: &Value) -> String {
    report["reasons"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_fake_passes_every_mode_on_both_endpoints() {
    let fake = Fake::start(Case::Correct).await;

    let runs = [
        ("sequential json", sequential(&fake, "4", "10", &[]).await),
        (
            "sequential text",
            sequential(&fake, "4", "10", &["--endpoint", "text"]).await,
        ),
        ("parallel json", parallel(&fake, "4", "25", &[]).await),
        (
            "parallel text",
            parallel(&fake, "4", "25", &["--endpoint", "text"]).await,
        ),
    ];

    for (name, out) in &runs {
        assert_eq!(out.code, 0, "{name}: {}", out.stdout);
        assert_eq!(out.json()["verdict"], "pass", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_goes_back_in_real_time_fails() {
    // Arrange: a permutation of the right answers and an exact final value, but twice a
    // worker's request, sent after its previous one was answered r + 2, is answered r + 1.
    let fake = Fake::start(Case::Backwards).await;

    // Act: the fake holds three workers while the fourth goes back.
    let out = parallel(&fake, "4", "25", &[]).await;

    // Assert: every count-based rule holds; only the real-time order is broken.
    assert_eq!(out.code, 1, "{}", out.stdout);
    let report = out.json();
    assert_eq!(report["counter"]["lost"], 0, "the final value is exact");
    assert_eq!(report["counter"]["phantom"], 0, "{}", out.stdout);
    let rules: Vec<&Value> = report["violations"]
        .as_array()
        .map(|v| v.iter().map(|v| &v["rule"]).collect())
        .unwrap_or_default();
    assert_eq!(rules, ["real_time_order"], "{}", out.stdout);
    let order = violation(&report, "real_time_order").expect("real-time order broken");
    assert_eq!(order["count"], 2, "{}", out.stdout);
    let example = order["examples"][0].as_str().unwrap_or_default();
    assert!(
        example.contains("sent at") && example.contains("had answered"),
        "names both operations with their times and values: {example}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_first_increment_fails_on_both_endpoints() {
    for endpoint in ["json", "text"] {
        // Arrange: the opening answers 1 but is never stored.
        let fake = Fake::start(Case::LoseFirst).await;

        // Act
        let out = parallel(&fake, "4", "25", &["--endpoint", endpoint]).await;

        // Assert: the base read does not follow from it, and 1 is acknowledged twice.
        assert_eq!(out.code, 1, "{endpoint}: {}", out.stdout);
        let report = out.json();
        assert_eq!(report["opening_value"], 1);
        let mismatch = violation(&report, "base_read_mismatch").expect("base read judged");
        let expected = if endpoint == "json" { 1 } else { 2 };
        assert!(
            mismatch["examples"][0]
                .as_str()
                .is_some_and(|e| e.ends_with(&format!("expected {expected}"))),
            "{endpoint}: {}",
            out.stdout
        );
        let twice = violation(&report, "duplicate_value").expect("the opening's value counts");
        assert!(
            twice["examples"][0]
                .as_str()
                .is_some_and(|e| e.starts_with("1 ×2 (the opening, ")),
            "{endpoint}: {}",
            out.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_read_is_an_overflow_that_names_the_value() {
    // Arrange: reads answer an unsigned -1, increments 0, 1, 2 …
    let fake = Fake::start(Case::WrappedRead).await;

    // Act: the binary the tests build has overflow checks on; an unchecked `+` would panic
    // here and wrap in a release build. The checker's own arithmetic is checked in both.
    let out = parallel(&fake, "4", "25", &[]).await;
    let table = cli(
        &[
            "--target",
            &fake.url(),
            "--parallel",
            "4",
            "--per-worker",
            "5",
        ],
        &[],
    )
    .await;

    // Assert
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    assert_eq!(report["base_value"], u64::MAX);
    let overflow = violation(&report, "overflow").expect("an overflow violation");
    assert!(
        overflow["examples"]
            .to_string()
            .contains("18446744073709551615"),
        "{}",
        out.stdout
    );
    assert!(
        report["counter"].is_null(),
        "no wrapped bound: {}",
        out.stdout
    );
    assert_eq!(table.code, 1, "{}", table.stdout);
    assert!(
        !table.stdout.contains("lost updates"),
        "no lost-update count from wrapped bounds: {}",
        table.stdout
    );
    assert!(table.stdout.contains("not judged"), "{}", table.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hops_named_by_one_source_only_are_not_evidence() {
    // Arrange: X-Served-By rotates while the body says app-1; and a body whose node rotates
    // with the header but whose history always ends with app-1.
    let header_only = Fake::start(Case::HeaderOnlyHops).await;
    let stale_history = Fake::start(Case::StaleHistory).await;

    // Act
    let seq = sequential(&header_only, "3", "6", &[]).await;
    let par = parallel(&header_only, "4", "25", &[]).await;
    let history = sequential(&stale_history, "3", "6", &[]).await;

    // Assert
    assert_eq!(seq.code, 1, "{}", seq.stdout);
    let report = seq.json();
    assert!(
        report["node_mismatches"].as_u64() > Some(0),
        "{}",
        seq.stdout
    );
    assert!(
        reasons(&report).contains(", body node app-1"),
        "{}",
        seq.stdout
    );
    assert_eq!(par.code, 1, "{}", par.stdout);
    assert!(
        violation(&par.json(), "node_mismatch").is_some(),
        "{}",
        par.stdout
    );
    assert_eq!(history.code, 1, "{}", history.stdout);
    assert!(
        reasons(&history.json()).contains("history it just counted ends with app-1"),
        "{}",
        history.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_named_by_the_body_alone_prove_no_hop() {
    // Arrange: no X-Served-By; the body's node rotates (the checker used to fall back on it).
    let fake = Fake::start(Case::BodyOnlyNames).await;

    // Act
    let seq = sequential(&fake, "3", "6", &[]).await;
    let par = parallel(&fake, "4", "25", &[]).await;

    // Assert
    assert_eq!(seq.code, 1, "{}", seq.stdout);
    let report = seq.json();
    assert_eq!(report["verdict"], "unproven", "{}", seq.stdout);
    assert_eq!(report["hops"], 0);
    assert!(
        reasons(&report).contains("no response carried X-Served-By"),
        "{}",
        seq.stdout
    );
    assert_eq!(par.code, 1, "{}", par.stdout);
    let report = par.json();
    assert_eq!(report["verdict"], "unproven", "{}", par.stdout);
    assert_eq!(report["replicas_acknowledging"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_without_sessions_proves_nothing_and_says_why() {
    // Arrange: no cookie and no id; one counter for everyone, which one user (or one session
    // in parallel mode) sees counting perfectly.
    let fresh = || Fake::start(Case::GlobalCounter);
    let (for_seq, for_par, for_table) = (fresh().await, fresh().await, fresh().await);

    // Act
    let seq = sequential(&for_seq, "1", "10", &[]).await;
    let par = parallel(&for_par, "4", "25", &[]).await;
    let table = cli(
        &[
            "--target",
            &for_table.url(),
            "--users",
            "1",
            "--requests",
            "5",
        ],
        &[],
    )
    .await;

    // Assert
    for (name, out) in [("sequential", &seq), ("parallel", &par)] {
        assert_eq!(out.code, 1, "{name}: {}", out.stdout);
        let report = out.json();
        assert_eq!(report["verdict"], "unproven", "{name}: {}", out.stdout);
        assert!(
            reasons(&report).contains("no session cookie and named no session id"),
            "{name}: {}",
            out.stdout
        );
    }
    assert!(table.stdout.contains("NOTHING PROVEN"), "{}", table.stdout);
    assert!(
        table.stdout.contains("nothing was proven about sessions"),
        "{}",
        table.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_per_connection_without_a_cookie_does_not_pass() {
    // Arrange: the audit's fifth case, one target URL.
    let fake = Fake::start(Case::NoSession).await;

    // Act
    let out = sequential(&fake, "2", "6", &[]).await;

    // Assert: each user's two connections count apart, and no session was ever named.
    assert_eq!(out.code, 1, "{}", out.stdout);
    let report = out.json();
    assert!(
        reasons(&report).contains("no session cookie and named no session id"),
        "{}",
        out.stdout
    );
    assert_eq!(report["sessions_identified"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_the_server_never_reads_fails() {
    // Arrange: the next case after the audit. The fake sets a cookie and names a session id,
    // so it has sessions by every earlier rule, but counts per TCP connection. One keep-alive
    // connection per user would count 1, 2, 3 and pass.
    let fake = Fake::start(Case::CookieIgnored).await;

    // Act
    let out = sequential(&fake, "3", "6", &[]).await;

    // Assert: each user alternates two connections sharing its cookie jar, so the count
    // starts again on the second connection.
    assert_eq!(out.code, 1, "{}", out.stdout);
    let report = out.json();
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["sessions_identified"], 3, "it did set cookies");
    assert!(
        report["anomalies"]["reset"].as_u64() > Some(0),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_misses_the_last_increment_fails_sequential_mode() {
    // Arrange: every increment answers right, reads lag one write behind. Nothing in
    // sequential mode used to read, so each session's last increment was never checked.
    let fake = Fake::start(Case::StaleReads).await;

    // Act
    let out = sequential(&fake, "3", "6", &[]).await;

    // Assert
    assert_eq!(out.code, 1, "{}", out.stdout);
    let report = out.json();
    assert_eq!(report["final_reads"], 3);
    assert_eq!(report["anomalies"]["stale_read"], 3, "{}", out.stdout);
    let example = &report["examples"][0];
    assert_eq!(
        (&example["kind"], &example["seq"], &example["observed"]),
        (&json!("stale_read"), &json!(7), &json!(5)),
        "{}",
        out.stdout
    );
    assert_eq!(example["expected_min"], 6);
}
