//! The parallel mode's operations outside the workers, the opening increment and the reads,
//! and the run's one clock ([`timed`], which the workers use too): real-time order spans them
//! all.
//!
//! With `--endpoint json` a read is `GET /api/session`, which changes nothing. The original
//! demo's text route has no read, so with `--endpoint text` a read is one more increment, sent
//! alone.

use std::time::{Duration, Instant};

use crate::bounds::Seen;
use crate::client::{self, Answer, Outcome};
use crate::endpoint::{self, Endpoint};
use crate::evidence;
use crate::targets::Targets;

/// Attempts at a read; with the JSON endpoint it changes nothing, so retrying is safe.
const READ_ATTEMPTS: u32 = 3;

/// One operation outside the workers (the opening or a read) that answered a value.
pub(super) struct Observed {
    /// Its value and times.
    pub(super) seen: Seen,
    /// The session id it named.
    pub(super) session: Option<String>,
    /// It set a cookie.
    pub(super) set_cookie: bool,
    /// Its header and body named different replicas.
    pub(super) mismatch: Option<String>,
}

/// Microseconds from `origin`, the run's one clock.
fn micros(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.duration_since(origin).as_micros()).unwrap_or(u64::MAX)
}

/// Sends `request` and times it on the run's clock.
pub(super) async fn timed<F: Future<Output = Answer>>(
    origin: Instant,
    request: F,
) -> (Answer, u64, u64) {
    let sent_at = Instant::now();
    let answer = request.await;
    (
        answer,
        micros(origin, sent_at),
        micros(origin, Instant::now()),
    )
}

/// The value of an opening or read answer, or why there is none.
pub(super) fn observe(
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
pub(super) async fn read(
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
