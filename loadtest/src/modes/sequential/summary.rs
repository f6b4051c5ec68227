//! Judges the traces of a sequential run: each session's answers by [`crate::check`], the
//! replica each answer names by [`crate::evidence`], and counts what the report shows (hops,
//! sessions shared, rotations, replicas per session). A session counts as shared only if the
//! server keeps one: it set a cookie or named an id.

use std::collections::BTreeMap;

use super::Sequential;
use super::report::{AnomalyCounts, LocatedAnomaly, SequentialReport, Spread};
use super::user::Trace;
use crate::check::{self, Observation};
use crate::latency::Latencies;
use crate::report::{Common, NO_NODE, Verdict, per_second, remember_error};
use crate::series::Recorder;
use crate::targets::Targets;

/// How many anomalies the report lists in detail.
const EXAMPLES: usize = 20;

/// The report of a run of `settings` against `targets` that left `traces`, one per user, in
/// `elapsed_s` seconds; not yet judged.
pub(super) fn summarise(
    settings: &Sequential,
    targets: &Targets,
    traces: &[Trace],
    elapsed_s: f64,
) -> SequentialReport {
    let mut anomalies = AnomalyCounts::default();
    let mut examples = Vec::new();
    let mut error_examples = Vec::new();
    let mut per_replica: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Latencies::new();
    let mut series = Recorder::default();
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
            series.record(
                step.finished,
                Some(step.latency),
                step.error.is_some(),
                Some(node.as_bytes()),
            );
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
            latency_distribution: latencies.distribution(),
            per_second: series.finish(),
            elapsed_s,
            req_per_s: per_second(sent, elapsed_s),
            interrupted: false,
        },
        endpoint: settings.endpoint,
        users: settings.users,
        requests_per_user: settings.requests,
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
