//! The default mode: U virtual users at once, each with its own cookie jar, each sending R
//! increments in sequence while the requests rotate over the targets. Every answer is recorded
//! and each session's trace is judged by `check`; the replica each answer names is judged by
//! `evidence`, and a session counts as shared only if the server keeps one (a cookie or an id).
//!
//! Each user alternates between two connections sharing its jar, as a browser does, so the
//! cookie is all that carries the session from one request to the next. With the JSON
//! endpoint each user then reads its counter back (`GET /api/session`): without that read,
//! nothing would check that a session's last increment was kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::check::{self, Observation};
use crate::client::{self, Outcome};
use crate::config::Config;
use crate::endpoint::{self, Endpoint};
use crate::error::RunError;
use crate::evidence;
use crate::latency::Latencies;
use crate::progress::{Goal, Progress};
use crate::report::{
    AnomalyCounts, Common, LocatedAnomaly, NO_NODE, SequentialReport, Spread, Verdict, per_second,
    remember_error,
};
use crate::stop::Stop;
use crate::targets::Targets;

/// How many anomalies the report lists in detail.
const EXAMPLES: usize = 20;

/// Attempts at each session's final read.
const READ_ATTEMPTS: u32 = 3;

/// One answered request in a session.
#[derive(Debug, Clone)]
struct Step {
    /// What the counter said, or that we cannot know.
    observation: Observation,
    /// The replica that answered.
    node: Option<String>,
    /// The session id the answer named (JSON only).
    session: Option<String>,
    /// The answer set a cookie.
    set_cookie: bool,
    /// Its header and body named different replicas.
    mismatch: Option<String>,
    /// The error, when the outcome is unknown.
    error: Option<String>,
}

/// One user's session: its steps, its final read and latencies.
#[derive(Debug, Default)]
struct Trace {
    steps: Vec<Step>,
    /// The read after the last increment (JSON only), judged like an answer.
    read: Option<Step>,
    latencies: Latencies,
}

/// Records one answer; `increment` false for a read.
fn step(endpoint: Endpoint, increment: bool, answer: client::Answer) -> Step {
    let mut mismatch = None;
    let (observation, session, error) = match answer.outcome {
        Outcome::Counted(counter) => {
            mismatch =
                evidence::disagreement(endpoint, increment, answer.node.as_deref(), &counter);
            (Observation::Value(counter.views), counter.session, None)
        }
        Outcome::Refused(e) => (Observation::Refused, None, Some(e)),
        Outcome::AckedUnreadable(e) | Outcome::Unknown(e) => (Observation::Unknown, None, Some(e)),
    };
    Step {
        observation,
        node: answer.node,
        session,
        set_cookie: answer.set_cookie,
        mismatch,
        error,
    }
}

/// Runs the sequential mode.
pub async fn run(
    config: &Config,
    users: u64,
    requests: u64,
    stop: &Stop,
) -> Result<SequentialReport, RunError> {
    let targets = Arc::new(config.target.clone());
    let clients = (0..users)
        .map(|_| client::build_user(config.timeout))
        .collect::<Result<Vec<_>, _>>()?;
    let progress = Progress::start(
        !config.no_progress && !config.json,
        Goal::Requests(users.saturating_mul(requests)),
    );
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(user, client)| {
            let targets = Arc::clone(&targets);
            let counter = progress.counter();
            let stop = stop.clone();
            let endpoint = config.endpoint;
            tokio::spawn(async move {
                run_user(user, client, &targets, endpoint, requests, &counter, &stop).await
            })
        })
        .collect();
    let mut traces = Vec::with_capacity(tasks.len());
    for task in tasks {
        // A panicking user task is a bug in this crate: its session stays empty, and the
        // planned-requests check below fails the run.
        traces.push(task.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    progress.finish();
    let mut report = summarise(
        &targets,
        config,
        users,
        requests,
        &traces,
        elapsed.as_secs_f64(),
    );
    report.common.interrupted = stop.is_stopped();
    report.judge();
    Ok(report)
}

async fn run_user(
    user: usize,
    clients: [reqwest::Client; 2],
    targets: &Targets,
    endpoint: Endpoint,
    requests: u64,
    counter: &AtomicU64,
    stop: &Stop,
) -> Trace {
    let mut trace = Trace::default();
    for seq in 0..requests {
        if stop.is_stopped() {
            break;
        }
        // Rotate per user and per request, so consecutive requests of a session change target.
        let url = targets
            .pick(user.wrapping_add(seq as usize))
            .url(endpoint.path());
        // Alternate connections: only the shared cookie jar links them.
        let client = &clients[(seq % 2) as usize];
        let answer = client::increment(client, endpoint, &url).await;
        trace.latencies.record(answer.latency);
        trace.steps.push(step(endpoint, true, answer));
        counter.fetch_add(1, Ordering::Relaxed);
    }
    // Read the count back, on the next target and connection in turn. The text route has no
    // read: a read there would be one more increment, itself unchecked.
    if endpoint == Endpoint::Json && !trace.steps.is_empty() && !stop.is_stopped() {
        let url = targets
            .pick(user.wrapping_add(trace.steps.len()))
            .url(endpoint::READ_PATH);
        let client = &clients[trace.steps.len() % 2];
        // A read changes nothing, so a failed one is tried again: a blip (a replica restarting
        // under load) is not a wrong count.
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let answer =
                client::send(client, reqwest::Method::GET, &url, endpoint::parse_json).await;
            let read = step(endpoint, false, answer);
            let done = read.error.is_none();
            trace.read = Some(read);
            if done {
                break;
            }
        }
    }
    trace
}

fn summarise(
    targets: &Targets,
    config: &Config,
    users: u64,
    requests: u64,
    traces: &[Trace],
    elapsed_s: f64,
) -> SequentialReport {
    let mut anomalies = AnomalyCounts::default();
    let mut examples = Vec::new();
    let mut error_examples = Vec::new();
    let mut per_replica: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Latencies::new();
    let (mut sent, mut errors, mut hops, mut hop_pairs, mut sessions_with_anomalies) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut sessions_shared = 0u64;
    let mut sessions_identified = 0u64;
    let mut final_reads = 0u64;
    let (mut node_mismatches, mut mismatch_examples) = (0u64, Vec::new());
    let mut rotations: Vec<String> = Vec::new();
    let mut rotated_sessions = 0u64;
    let (mut spread_min, mut spread_max, mut spread_sum) = (u64::MAX, 0u64, 0u64);

    for (user, trace) in traces.iter().enumerate() {
        latencies.merge(&trace.latencies);
        let observations: Vec<Observation> = trace.steps.iter().map(|s| s.observation).collect();
        // A replica named two different ways is no evidence of where the answer came from.
        let nodes: Vec<Option<&str>> = trace
            .steps
            .iter()
            .map(|s| s.node.as_deref().filter(|_| s.mismatch.is_none()))
            .collect();
        let named = (1..)
            .zip(&trace.steps)
            .map(|(seq, s)| (format!("request {seq}"), s));
        let read = trace.read.iter().map(|s| ("final read".to_owned(), s));
        for (which, mismatch) in named
            .chain(read)
            .filter_map(|(which, s)| s.mismatch.as_ref().map(|m| (which, m)))
        {
            node_mismatches += 1;
            if mismatch_examples.len() < 5 {
                mismatch_examples.push(format!("user {user} {which}: {mismatch}"));
            }
        }
        let mut session = check::Session::default();
        let mut found: Vec<_> = observations
            .iter()
            .filter_map(|observation| session.answer(*observation))
            .collect();
        if let Some(read) = &trace.read {
            match (read.observation, &read.error) {
                (Observation::Value(value), _) => {
                    final_reads += 1;
                    found.extend(session.read(value));
                }
                (_, error) => {
                    errors += 1;
                    let error = error.as_deref().unwrap_or("no value");
                    remember_error(&mut error_examples, &format!("final read: {error}"));
                }
            }
        }
        if found.iter().any(|a| a.kind != check::AnomalyKind::Unknown) {
            sessions_with_anomalies += 1;
        }
        // Without a cookie or an id, nothing says the count belongs to a session.
        let identified = trace
            .steps
            .iter()
            .any(|s| s.set_cookie || s.session.is_some());
        if identified {
            sessions_identified += 1;
            if check::shared_hops(&observations, &nodes, &found) > 0 {
                sessions_shared += 1;
            }
        }
        let ids: Vec<Option<&str>> = trace.steps.iter().map(|s| s.session.as_deref()).collect();
        let changes = check::id_changes(&ids, &found);
        if !changes.is_empty() {
            rotated_sessions += 1;
        }
        for (seq, from, to) in changes {
            if rotations.len() < 5 {
                rotations.push(format!("user {user} request {seq}: {from} -> {to}"));
            }
        }
        for anomaly in found {
            anomalies.add(anomaly.kind);
            if examples.len() < EXAMPLES {
                // Past the increments: the final read.
                let Some(step) = trace.steps.get(anomaly.seq - 1).or(trace.read.as_ref()) else {
                    continue;
                };
                examples.push(LocatedAnomaly {
                    user: user as u64,
                    node: step.node.clone(),
                    error: step.error.clone(),
                    anomaly,
                });
            }
        }
        for step in &trace.steps {
            sent += 1;
            if let Some(error) = &step.error {
                errors += 1;
                remember_error(&mut error_examples, error);
            }
            let node = step.node.as_deref().unwrap_or(NO_NODE);
            *per_replica.entry(node.to_owned()).or_default() += 1;
        }
        hops += check::count_hops(&nodes);
        hop_pairs += trace.steps.len().saturating_sub(1) as u64;
        let distinct = check::distinct_replicas(&nodes) as u64;
        spread_min = spread_min.min(distinct);
        spread_max = spread_max.max(distinct);
        spread_sum += distinct;
    }

    let summary = latencies.summary();
    SequentialReport {
        common: Common {
            verdict: Verdict::Fail,
            reasons: Vec::new(),
            notes: Vec::new(),
            targets: targets.names(),
            requests: sent,
            errors,
            error_examples,
            requests_per_replica: per_replica,
            latency: summary,
            elapsed_s,
            req_per_s: per_second(sent, elapsed_s),
            interrupted: false,
        },
        endpoint: config.endpoint,
        users,
        requests_per_user: requests,
        anomalies,
        sessions_with_anomalies,
        examples,
        hops,
        hop_pairs,
        sessions_shared,
        sessions_identified,
        final_reads,
        node_mismatches,
        node_mismatch_examples: mismatch_examples,
        rotated_sessions,
        rotation_examples: rotations,
        replicas_per_session: if traces.is_empty() {
            Spread::default()
        } else {
            Spread {
                min: spread_min,
                mean: spread_sum as f64 / traces.len() as f64,
                max: spread_max,
            }
        },
    }
}
