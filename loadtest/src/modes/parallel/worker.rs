//! One worker of the parallel mode: it sends increments on the shared session, each timed on
//! the run's one clock, and tallies what came back for the checkers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::reads::timed;
use crate::bounds::{Answered, Timed};
use crate::client::{self, Outcome};
use crate::endpoint::Endpoint;
use crate::evidence;
use crate::latency::Latencies;
use crate::order::Op;
use crate::report::{NO_NODE, remember_error};
use crate::series::Sample;
use crate::stop::Stop;
use crate::targets::Targets;

/// What one worker saw.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Increments acknowledged with 2xx and a readable value.
    pub(super) acknowledged: u64,
    /// Increments refused with 4xx: known not applied.
    pub(super) failed: u64,
    /// Increments with unknown outcome.
    pub(super) unknown: u64,
    /// Every increment with its times, for the answer checks.
    pub(super) timed: Vec<Timed>,
    /// Session ids named in the answers, with how often.
    pub(super) sessions: BTreeMap<String, u64>,
    /// Replicas that acknowledged at least one increment.
    pub(super) acknowledging: BTreeSet<String>,
    /// Answers whose header and body named different replicas: which, and how.
    pub(super) mismatches: Vec<(Op, String)>,
    /// Some answer set a cookie.
    pub(super) set_cookie: bool,
    /// Answers per replica, from `X-Served-By`.
    pub(super) per_replica: BTreeMap<String, u64>,
    /// A few distinct error messages.
    pub(super) errors: Vec<String>,
    /// Every increment's latency.
    pub(super) latencies: Latencies,
    /// Every increment, for the per-second series.
    pub(super) samples: Vec<Sample>,
}

impl Tally {
    /// Increments sent: every one is recorded with its times.
    pub(super) fn sent(&self) -> u64 {
        self.timed.len() as u64
    }

    /// Adds another worker's tally into this one.
    pub(super) fn absorb(&mut self, tally: Tally) {
        self.acknowledged += tally.acknowledged;
        self.failed += tally.failed;
        self.unknown += tally.unknown;
        self.timed.extend(tally.timed);
        self.samples.extend(tally.samples);
        self.latencies.merge(&tally.latencies);
        for (node, n) in tally.per_replica {
            *self.per_replica.entry(node).or_default() += n;
        }
        self.acknowledging.extend(tally.acknowledging);
        self.mismatches.extend(tally.mismatches);
        self.set_cookie |= tally.set_cookie;
        for (session, n) in tally.sessions {
            *self.sessions.entry(session).or_default() += n;
        }
        for error in &tally.errors {
            remember_error(&mut self.errors, error);
        }
    }
}

/// One worker: increments on the shared session until it has sent `per_worker`, the
/// `deadline` passes or `stop` is set; `counter` counts its requests for the progress bar.
/// Times are taken on the run's clock (`origin`) and, for the series, since the workers
/// started (`started`).
pub(super) async fn work(
    worker: usize,
    client: &reqwest::Client,
    targets: &Targets,
    endpoint: Endpoint,
    (per_worker, deadline, origin, started): (Option<u64>, Option<Instant>, Instant, Instant),
    counter: &AtomicU64,
    stop: &Stop,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        if per_worker.is_some_and(|m| tally.sent() >= m)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || stop.is_stopped()
        {
            break;
        }
        // The opening request went to target 0; rotate from there.
        let url = targets
            .pick(worker.wrapping_add(tally.timed.len()).wrapping_add(1))
            .url(endpoint.path());
        let op = Op::Increment {
            worker: worker as u64,
            nth: tally.sent(),
        };
        let (answer, sent_us, received_us) =
            timed(origin, client::increment(client, endpoint, &url)).await;
        tally.latencies.record(answer.latency);
        tally.set_cookie |= answer.set_cookie;
        let served_by = answer.node;
        let node = served_by.clone().unwrap_or_else(|| NO_NODE.to_owned());
        *tally.per_replica.entry(node.clone()).or_default() += 1;
        let latency = answer.latency;
        let result = match answer.outcome {
            Outcome::Counted(c) => {
                tally.acknowledged += 1;
                match evidence::disagreement(endpoint, true, served_by.as_deref(), &c) {
                    Some(mismatch) => tally.mismatches.push((op, mismatch)),
                    // Only a replica both witnesses name counts as having acknowledged.
                    None => tally.acknowledging.extend(served_by),
                }
                if let Some(session) = c.session {
                    *tally.sessions.entry(session).or_default() += 1;
                }
                Answered::Value(c.views)
            }
            // A 2xx whose counter cannot be read is an unknown outcome, as in sequential mode.
            Outcome::AckedUnreadable(e) | Outcome::Unknown(e) => {
                tally.unknown += 1;
                remember_error(&mut tally.errors, &e);
                Answered::Unknown
            }
            Outcome::Refused(e) => {
                tally.failed += 1;
                remember_error(&mut tally.errors, &e);
                Answered::Refused
            }
        };
        tally.samples.push(Sample {
            at: started.elapsed(),
            latency,
            error: !matches!(result, Answered::Value(_)),
            replica: node,
        });
        tally.timed.push(Timed {
            op,
            sent_us,
            received_us,
            result,
        });
        counter.fetch_add(1, Ordering::Relaxed);
    }
    tally
}
