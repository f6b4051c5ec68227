//! One virtual user of the sequential mode: its own cookie jar shared by two connections, R
//! increments in sequence while its requests rotate over the targets, then (JSON only) a read
//! of its counter. Every answer is recorded as a [`Step`] of the user's [`Trace`], for
//! [`super::summary`] to judge.
//!
//! The user alternates between its two connections, as a browser does, so the cookie is all
//! that carries the session from one request to the next. Without the final read, nothing
//! would check that a session's last increment was kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::check::Observation;
use crate::client::{self, Outcome};
use crate::endpoint::{self, Endpoint};
use crate::evidence;
use crate::latency::Latencies;
use crate::stop::Stop;
use crate::targets::Targets;

/// Attempts at each session's final read.
const READ_ATTEMPTS: u32 = 3;

/// One answered request in a session.
#[derive(Debug, Clone)]
pub(super) struct Step {
    /// What the counter said, or that we cannot know.
    pub(super) observation: Observation,
    /// The replica that answered.
    pub(super) node: Option<String>,
    /// The session id the answer named (JSON only).
    pub(super) session: Option<String>,
    /// The answer set a cookie.
    pub(super) set_cookie: bool,
    /// Its header and body named different replicas.
    pub(super) mismatch: Option<String>,
    /// The error, when the outcome is unknown.
    pub(super) error: Option<String>,
    /// When the answer was in, since the load started.
    pub(super) finished: Duration,
    /// How long it took.
    pub(super) latency: Duration,
}

/// One user's session: its steps, its final read and latencies.
#[derive(Debug, Default)]
pub(super) struct Trace {
    /// The increments' answers, in order.
    pub(super) steps: Vec<Step>,
    /// The read after the last increment (JSON only), judged like an answer.
    pub(super) read: Option<Step>,
    /// Every request's latency.
    pub(super) latencies: Latencies,
}

/// Records one answer, in at `finished`; `increment` false for a read.
fn step(endpoint: Endpoint, increment: bool, answer: client::Answer, finished: Duration) -> Step {
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
        finished,
        latency: answer.latency,
    }
}

/// Runs one user's session to its end (or until `stop`); `counter` counts its requests for
/// the progress bar, `started` is when the load started.
#[allow(clippy::too_many_arguments)] // each is one thing the user needs; a struct would only rename them
pub(super) async fn run_user(
    user: usize,
    started: Instant,
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
        trace
            .steps
            .push(step(endpoint, true, answer, started.elapsed()));
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
            let read = step(endpoint, false, answer, started.elapsed());
            let done = read.error.is_none();
            trace.read = Some(read);
            if done {
                break;
            }
        }
    }
    trace
}
