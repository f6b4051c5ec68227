//! `--report PATH.html`: a real run of each mode against the fake cluster, with `--json` and
//! `--report` at once. The page holds its charts as inline SVG, fetches nothing, every figure
//! it shows equals the JSON of the same run at the pointer it names, and it opens in headless
//! Chromium without a console error. The pages and their screenshots go to `test-output/`.

use std::path::PathBuf;

use serde_json::Value;

use crate::fakes::{Case, Fake};
use crate::helpers::cli;
use test_kit::{ChromeDriver, output_dir};

/// One run with `--json` and `--report`.
struct Run {
    /// `sequential`, `parallel` or `throughput`.
    mode: &'static str,
    /// The `--json` report.
    json: Value,
    /// The page.
    html: String,
    /// Where the page is.
    path: PathBuf,
}

/// Runs `mode` with `args` against `fake`, writing its page to `test-output/` as
/// `{name}-{mode}.html` (each test its own name: they run at once).
async fn run(fake: &Fake, name: &str, mode: &'static str, args: &[&str]) -> Run {
    let path = output_dir().join(format!("{name}-{mode}.html"));
    let path_arg = path.to_string_lossy().into_owned();
    let url = fake.url();
    let mut all = vec!["--target", &url, "--json", "--report", &path_arg];
    all.extend_from_slice(args);
    let out = cli(&all, &[]).await;
    assert_eq!(out.code, 0, "{mode}: {}\n{}", out.stdout, out.stderr);
    let json = out.json();
    assert_eq!(json["mode"], mode);
    let html = std::fs::read_to_string(&path).expect("the report file was written");
    Run {
        mode,
        json,
        html,
        path,
    }
}

/// A run of each mode, small and bounded: several seconds of series for the throughput one.
async fn runs(fake: &Fake, name: &str) -> Vec<Run> {
    vec![
        run(
            fake,
            name,
            "sequential",
            &["--users", "5", "--requests", "12"],
        )
        .await,
        run(
            fake,
            name,
            "parallel",
            &["--parallel", "4", "--per-worker", "25"],
        )
        .await,
        run(
            fake,
            name,
            "throughput",
            &[
                "--throughput",
                "--path",
                "/session",
                "--rate",
                "150",
                "--duration",
                "2500ms",
                "--connections",
                "3",
            ],
        )
        .await,
    ]
}

/// Undoes askama's escaping of an attribute value.
fn unescape(raw: &str) -> String {
    raw.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// Every `data-field="…" data-value="…"` pair of the page, in order.
fn figures(html: &str) -> Vec<(String, String)> {
    const FIELD: &str = "data-field=\"";
    const VALUE: &str = " data-value=\"";
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(FIELD) {
        rest = &rest[start + FIELD.len()..];
        let end = rest.find('"').expect("a closed data-field");
        let field = unescape(&rest[..end]);
        rest = &rest[end + 1..];
        let value = rest
            .strip_prefix(VALUE)
            .unwrap_or_else(|| panic!("data-field {field} without a data-value"));
        let end = value.find('"').expect("a closed data-value");
        found.push((field, unescape(&value[..end])));
        rest = &value[end + 1..];
    }
    found
}

/// Whether a figure's value on the page is the JSON's value.
fn same(json: &Value, shown: &str) -> bool {
    match json {
        Value::String(s) => s == shown,
        Value::Number(n) => match (n.as_u64(), shown.parse::<u64>()) {
            (Some(a), Ok(b)) => a == b,
            // serde_json (without its `float_roundtrip` feature) parses a float to within an
            // ULP or so of the number written; the page and the JSON both write the shortest
            // exact digits, so they agree to that.
            _ => match (n.as_f64(), shown.parse::<f64>()) {
                (Some(a), Ok(b)) => (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs()),
                _ => false,
            },
        },
        _ => false,
    }
}

fn sum(values: impl Iterator<Item = u64>) -> u64 {
    values.sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_in_the_report_equals_the_json_of_the_same_run() {
    // Arrange
    let fake = Fake::start(Case::Correct).await;

    // Act
    let runs = runs(&fake, "loadtest-report-json").await;

    // Assert
    for Run {
        mode, json, html, ..
    } in &runs
    {
        let figures = figures(html);
        for (field, value) in &figures {
            let expected = json
                .pointer(field)
                .unwrap_or_else(|| panic!("{mode}: {field} is not in the JSON"));
            assert!(
                same(expected, value),
                "{mode}: {field} reads {value} on the page, {expected} in the JSON"
            );
        }
        let fields: Vec<&str> = figures.iter().map(|(f, _)| f.as_str()).collect();
        let mut wanted: Vec<String> = [
            "/mode",
            "/verdict",
            "/requests",
            "/errors",
            "/req_per_s",
            "/latency/p50_ms",
            "/latency/p99_ms",
        ]
        .map(str::to_owned)
        .to_vec();
        let seconds = json["per_second"].as_array().expect("per_second");
        let distribution = json["latency_distribution"]
            .as_array()
            .expect("distribution");
        let replicas = json["requests_per_replica"]
            .as_object()
            .expect("per replica");
        wanted.extend((0..seconds.len()).map(|i| format!("/per_second/{i}/requests")));
        wanted.extend((0..distribution.len()).map(|i| format!("/latency_distribution/{i}/ms")));
        wanted.extend(
            replicas
                .keys()
                .map(|r| format!("/requests_per_replica/{r}")),
        );
        if *mode == "parallel" {
            wanted.extend(["/acknowledged", "/counter/applied"].map(str::to_owned));
        }
        for field in &wanted {
            assert!(
                fields.contains(&field.as_str()),
                "{mode}: the page lacks {field}"
            );
        }
        // The series adds up to the run: every request lands in one second, on its replica.
        let count = |s: &Value, key: &str| s[key].as_u64().expect("a count");
        assert_eq!(
            sum(seconds.iter().map(|s| count(s, "requests"))),
            count(json, "requests"),
            "{mode}"
        );
        assert_eq!(
            sum(seconds.iter().map(|s| count(s, "errors"))),
            count(json, "errors"),
            "{mode}"
        );
        for (replica, n) in replicas {
            let per_second = seconds
                .iter()
                .filter_map(|s| s["per_replica"][replica].as_u64());
            assert_eq!(Some(sum(per_second)), n.as_u64(), "{mode}: {replica}");
        }
        assert!(
            replicas.len() >= 2,
            "{mode}: the fake answers as three replicas"
        );
        assert!(
            !seconds.is_empty() && distribution.len() >= 3,
            "{mode}: {json}"
        );
        let charts = html.matches("<svg").count();
        assert_eq!(
            charts,
            if *mode == "parallel" { 5 } else { 4 },
            "{mode}: distribution, requests and latency per second, replicas (and increments)"
        );
        assert_eq!(html.matches("</svg>").count(), charts, "{mode}");
        for external in ["src=", "href=", "url(", "@import", "<script", "<link"] {
            assert!(!html.contains(external), "{mode}: the page has {external}");
        }
    }
    let throughput = &runs[2].json;
    assert!(
        throughput["per_second"]
            .as_array()
            .is_some_and(|s| s.len() >= 3),
        "2.5 s of throughput spans three seconds: {throughput}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_opens_in_chromium_without_errors() {
    // Arrange
    let fake = Fake::start(Case::Correct).await;
    let runs = runs(&fake, "loadtest-report").await;
    let driver = ChromeDriver::start();
    let browser = driver.session_sized(1000, 1400).await;

    for run in &runs {
        // Act
        let url = format!(
            "file://{}",
            run.path.canonicalize().expect("path").display()
        );
        browser.goto(&url).await.expect("open the report");
        let seen = browser
            .execute(
                "return {
                   title: document.title,
                   verdict: document.getElementById('verdict').textContent,
                   fetched: performance.getEntriesByType('resource').map(e => e.name),
                   charts: [...document.querySelectorAll('svg')]
                     .filter(svg => svg.getBoundingClientRect().width > 300
                                 && svg.querySelectorAll('path, polyline, rect').length > 0)
                     .length,
                   seconds: document.querySelectorAll('#seconds tr.second').length,
                 };",
                Vec::new(),
            )
            .await
            .expect("read the page");
        let errors = driver.console_errors(&browser).await;
        let png = browser.screenshot().await.expect("screenshot");
        let shot = output_dir().join(format!("loadtest-report-{}.png", run.mode));
        std::fs::write(&shot, png).expect("write the screenshot");

        // Assert
        let mode = run.mode;
        assert!(errors.is_empty(), "{mode}: console errors: {errors:?}");
        assert_eq!(seen["verdict"], "PASS", "{mode}: {seen}");
        assert!(
            seen["title"].as_str().is_some_and(|t| t.contains("PASS")),
            "{mode}: {seen}"
        );
        assert_eq!(
            seen["fetched"],
            Value::Array(Vec::new()),
            "{mode}: fetched something"
        );
        assert_eq!(
            seen["charts"],
            if mode == "parallel" { 5 } else { 4 },
            "{mode}: every chart drawn at a readable width: {seen}"
        );
        assert_eq!(
            seen["seconds"].as_u64(),
            run.json["per_second"].as_array().map(|s| s.len() as u64),
            "{mode}: one row per second"
        );
    }
    browser.close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_path_that_cannot_be_written_fails_before_the_run() {
    // Arrange: a directory that does not exist.
    let fake = Fake::start(Case::Correct).await;
    let path = output_dir().join("no-such-directory/report.html");

    // Act
    let out = cli(
        &[
            "--target",
            &fake.url(),
            "--requests",
            "2",
            "--report",
            &path.to_string_lossy(),
        ],
        &[],
    )
    .await;

    // Assert
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("--report"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "no run took place: {}", out.stdout);
}
