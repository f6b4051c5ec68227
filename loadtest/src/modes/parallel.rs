//! `--parallel K`: open one session, read its counter (the base), race K workers × M
//! increments on that one cookie, read the final value, and judge every answer with Jepsen's
//! counter checker ([`crate::bounds`]), in real-time order ([`crate::order`]), on one clock
//! for the opening, the reads and every increment.
//!
//! All workers share one client, hence one cookie jar: this is one browser with K tabs, which
//! is exactly the case last-write-wins sessions get wrong.
//!
//! Reads: with `--endpoint json` the base and the final read are `GET /api/session`, which
//! changes nothing. The original demo's text route has no read, so with `--endpoint text` a
//! read is one more increment, sent alone: the base is its answer (the value the workers start
//! from), the final value is the final read's answer minus one (the value they left).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bounds::{self, Answered, History, Seen, Timed};
use crate::client::{self, Answer, Outcome};
use crate::config::Config;
use crate::endpoint::{self, Endpoint};
use crate::error::RunError;
use crate::evidence;
use crate::latency::Latencies;
use crate::order::Op;
use crate::progress::{Goal, Progress};
use crate::report::{Common, NO_NODE, ParallelReport, Verdict, per_second, remember_error};
use crate::stop::Stop;
use crate::targets::Targets;
use crate::violation::{Found, Rule};

/// Attempts at a read; with the JSON endpoint it changes nothing, so retrying is safe.
const READ_ATTEMPTS: u32 = 3;

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: u64,
    failed: u64,
    unknown: u64,
    /// Every increment with its times, for the answer checks.
    timed: Vec<Timed>,
    /// Session ids named in the answers, with how often.
    sessions: BTreeMap<String, u64>,
    /// Replicas that acknowledged at least one increment.
    acknowledging: std::collections::BTreeSet<String>,
    /// Answers whose header and body named different replicas: which, and how.
    mismatches: Vec<(Op, String)>,
    /// Some answer set a cookie.
    set_cookie: bool,
    per_replica: BTreeMap<String, u64>,
    errors: Vec<String>,
    latencies: Latencies,
}

impl Tally {
    /// Increments sent: every one is recorded with its times.
    fn sent(&self) -> u64 {
        self.timed.len() as u64
    }
}

/// One operation outside the workers (the opening or a read) that answered a value.
struct Observed {
    /// Its value and times.
    seen: Seen,
    /// The session id it named.
    session: Option<String>,
    /// It set a cookie.
    set_cookie: bool,
    /// Its header and body named different replicas.
    mismatch: Option<String>,
}

/// Microseconds from `origin`, the run's one clock.
fn micros(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.duration_since(origin).as_micros()).unwrap_or(u64::MAX)
}

/// Sends `request` and times it on the run's clock.
async fn timed<F: Future<Output = Answer>>(origin: Instant, request: F) -> (Answer, u64, u64) {
    let sent_at = Instant::now();
    let answer = request.await;
    (
        answer,
        micros(origin, sent_at),
        micros(origin, Instant::now()),
    )
}

/// The value of an opening or read answer, or why there is none.
fn observe(
    endpoint: Endpoint,
    increment: bool,
    (answer, sent_us, received_us): (Answer, u64, u64),
) -> Result<Observed, String> {
    match answer.outcome {
        Outcome::Counted(counter) => Ok(Observed {
            seen: Seen {
                sent_us,
                received_us,
                value: counter.views,
            },
            mismatch: evidence::disagreement(endpoint, increment, answer.node.as_deref(), &counter),
            session: counter.session,
            set_cookie: answer.set_cookie,
        }),
        Outcome::AckedUnreadable(e) | Outcome::Unknown(e) | Outcome::Refused(e) => Err(e),
    }
}

/// Reads the counter: `GET /api/session` for JSON; for text, one increment sent alone
/// (`increments` counts it), whose answer is the value after it.
async fn read(
    client: &reqwest::Client,
    targets: &Targets,
    endpoint: Endpoint,
    origin: Instant,
    increments: &mut u64,
) -> Result<Observed, String> {
    let mut last_error = String::new();
    for attempt in 0..READ_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let answer = match endpoint {
            Endpoint::Json => {
                let url = targets.pick(0).url(endpoint::READ_PATH);
                let get = client::send(client, reqwest::Method::GET, &url, endpoint::parse_json);
                observe(endpoint, false, timed(origin, get).await)
            }
            Endpoint::Text => {
                *increments += 1;
                let url = targets.pick(0).url(endpoint.path());
                let get = client::increment(client, endpoint, &url);
                observe(endpoint, true, timed(origin, get).await)
            }
        };
        match answer {
            Ok(observed) => return Ok(observed),
            // A text read that failed may have counted: no later bound could be trusted.
            Err(e) if endpoint == Endpoint::Text => return Err(e),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Runs the parallel mode.
pub async fn run(
    config: &Config,
    workers: u64,
    per_worker: Option<u64>,
    duration: Option<Duration>,
    stop: &Stop,
) -> Result<ParallelReport, RunError> {
    let targets = Arc::new(config.target.clone());
    let endpoint = config.endpoint;
    let client = client::build(config.timeout)?;

    // One clock for the opening, the reads and the workers: real-time order spans them all.
    let origin = Instant::now();
    // The opening increment makes the session (and its cookie); the base is read after it.
    let opening_url = targets.pick(0).url(endpoint.path());
    let opening = timed(origin, client::increment(&client, endpoint, &opening_url)).await;
    let opened = observe(endpoint, true, opening).map_err(|reason| RunError::Opening {
        target: opening_url.clone(),
        reason,
    })?;
    let mut reads = 0;
    let base = read(&client, &targets, endpoint, origin, &mut reads)
        .await
        .map_err(|reason| RunError::Opening {
            target: opening_url.clone(),
            reason: format!("reading the base value: {reason}"),
        })?;

    let goal = match (per_worker, duration) {
        (Some(m), _) => Goal::Requests(workers.saturating_mul(m)),
        (None, Some(d)) => Goal::Duration(d),
        (None, None) => Goal::Requests(0),
    };
    let progress = Progress::start(!config.no_progress && !config.json, goal);
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let client = client.clone();
            let targets = Arc::clone(&targets);
            let counter = progress.counter();
            let stop = stop.clone();
            tokio::spawn(async move {
                work(
                    worker as usize,
                    &client,
                    &targets,
                    endpoint,
                    (per_worker, deadline, origin),
                    &counter,
                    &stop,
                )
                .await
            })
        })
        .collect();
    let mut total = Tally::default();
    let mut lost_workers = 0;
    for task in tasks {
        let Ok(tally) = task.await else {
            // A worker that panicked is a bug here; its requests are missing from the plan.
            lost_workers += 1;
            continue;
        };
        total.acknowledged += tally.acknowledged;
        total.failed += tally.failed;
        total.unknown += tally.unknown;
        total.timed.extend(tally.timed);
        total.latencies.merge(&tally.latencies);
        for (node, n) in tally.per_replica {
            *total.per_replica.entry(node).or_default() += n;
        }
        total.acknowledging.extend(tally.acknowledging);
        total.mismatches.extend(tally.mismatches);
        total.set_cookie |= tally.set_cookie;
        for (session, n) in tally.sessions {
            *total.sessions.entry(session).or_default() += n;
        }
        for error in &tally.errors {
            remember_error(&mut total.errors, error);
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    progress.finish();

    let final_read = read(&client, &targets, endpoint, origin, &mut reads).await;
    if let Err(e) = &final_read {
        remember_error(&mut total.errors, &format!("final read: {e}"));
    }
    let final_ok = final_read.as_ref().ok();
    let requests = total.sent();
    let judged = bounds::judge(&History {
        reads_increment: endpoint == Endpoint::Text,
        opening: opened.seen,
        base: base.seen,
        increments: std::mem::take(&mut total.timed),
        final_read: final_ok.map(|r| r.seen),
    });
    let mut evidence = Found::default();
    let outside = [
        (Op::Opening, Some(&opened)),
        (Op::BaseRead, Some(&base)),
        (Op::FinalRead, final_ok),
    ];
    let mismatches = outside
        .iter()
        .filter_map(|(op, o)| o.and_then(|o| o.mismatch.clone()).map(|m| (*op, m)))
        .chain(total.mismatches.iter().cloned());
    for (op, mismatch) in mismatches {
        evidence.add(Rule::NodeMismatch, || format!("{op}: {mismatch}"));
    }
    let mut violations = judged.violations;
    violations.extend(evidence.into_vec());
    let set_cookie =
        total.set_cookie || outside.iter().any(|(_, o)| o.is_some_and(|o| o.set_cookie));
    // A brand-new session has no id yet in the answer that creates it; the reads have one.
    let session = base
        .session
        .clone()
        .or_else(|| opened.session.clone())
        .or_else(|| final_ok.and_then(|r| r.session.clone()));
    let other_sessions: BTreeMap<String, u64> = total
        .sessions
        .iter()
        .filter(|(id, _)| Some(*id) != session.as_ref())
        .map(|(id, n)| (id.clone(), *n))
        .collect();
    let planned = per_worker.map(|m| workers.saturating_mul(m));
    let mut report = ParallelReport {
        common: Common {
            verdict: Verdict::Fail,
            reasons: Vec::new(),
            notes: Vec::new(),
            targets: targets.names(),
            requests,
            errors: total.failed + total.unknown,
            error_examples: total.errors,
            requests_per_replica: total.per_replica,
            latency: total.latencies.summary(),
            elapsed_s,
            req_per_s: per_second(requests, elapsed_s),
            interrupted: stop.is_stopped(),
        },
        endpoint,
        workers,
        per_worker,
        planned,
        lost_workers,
        replicas_acknowledging: total.acknowledging.len() as u64,
        session,
        other_sessions,
        session_cookie: set_cookie,
        opening_value: opened.seen.value,
        base_value: base.seen.value,
        reads,
        acknowledged: total.acknowledged,
        failed: total.failed,
        unknown: total.unknown,
        final_value: judged.final_value,
        counter: judged.counter,
        violations,
    };
    report.judge();
    Ok(report)
}

async fn work(
    worker: usize,
    client: &reqwest::Client,
    targets: &Targets,
    endpoint: Endpoint,
    (per_worker, deadline, origin): (Option<u64>, Option<Instant>, Instant),
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
        *tally.per_replica.entry(node).or_default() += 1;
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
