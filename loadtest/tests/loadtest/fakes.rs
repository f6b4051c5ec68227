//! The third audit's fake servers: one axum process on 127.0.0.1:0 answering as app-1, app-2
//! and app-3 in turn (as the audit's Python fake did), speaking the app's contract
//! (`POST /api/session/views`, `GET /session`, `GET /api/session`), each with one way of being
//! wrong that the checker's earlier rules accepted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

/// How the fake is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Counts right, keeps sessions by cookie, names itself the same way twice: must pass.
    Correct,
    /// The audit's first case, made deterministic for `--parallel 4`. From increments 30 and
    /// 70 of a session on, the fake holds three arrivals (one per worker): the first two are
    /// applied (`r − 1`, `r`) and their answers held, the third is held unapplied.
    /// The fourth, from the last free worker, adds 2 and is answered `r + 2` at once; that
    /// worker's next request, necessarily sent after that answer arrived (every other worker
    /// is waiting), is answered `r + 1` and adds nothing; then the held ones are released.
    /// The answers are a permutation of the right ones, the final value is exact, every
    /// count-based bound holds (two lower values are still unanswered when `r + 1` is sent),
    /// but a request sent after another's answer saw a lower count.
    Backwards,
    /// The session's opening increment answers 1 but is never stored.
    LoseFirst,
    /// Reads answer `18446744073709551615` (an unsigned −1); increments answer the value
    /// before them: 0, 1, 2 …
    WrappedRead,
    /// `X-Served-By` rotates, the body's `node` and `history` always say app-1.
    HeaderOnlyHops,
    /// `X-Served-By` and `node` agree and rotate; the history says app-1 whoever counted.
    StaleHistory,
    /// No `X-Served-By`; the body's `node` and `history` rotate: one witness only.
    BodyOnlyNames,
    /// No cookie, no session id: one counter per TCP connection.
    NoSession,
    /// No cookie, no session id: one counter for everyone.
    GlobalCounter,
    /// Sets a session cookie and names its id, but counts per TCP connection: the cookie is
    /// never read.
    CookieIgnored,
    /// Counts right, but `GET /api/session` answers one less than the last increment (reads
    /// served from a copy one write behind; a reload shows the count before the last click).
    StaleReads,
}

/// One counter.
#[derive(Debug, Default)]
struct Counter {
    /// The stored value.
    value: u64,
    /// Increments received.
    increments: u64,
    /// Replicas that counted the last visits, oldest first (at most 10, as the app keeps).
    history: Vec<String>,
    /// [`Case::Backwards`]: where the counter is in its scheme.
    phase: Phase,
}

/// [`Case::Backwards`]'s scheme.
#[derive(Debug, Default, Clone, Copy)]
enum Phase {
    /// Counting right.
    #[default]
    Normal,
    /// Holding the other workers' requests: this many so far.
    Holding(u64),
    /// `r + 2` answered; the next arrival gets the value skipped.
    Owing(u64),
}

/// The other workers whose requests [`Case::Backwards`] holds (`--parallel 4`).
const HELD: u64 = 3;

/// What a held request does once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Answer at once.
    No,
    /// Applied already; answer once released.
    Answer,
    /// Apply once released, then answer.
    Apply,
}

#[derive(Default)]
struct Counters {
    /// Requests answered, for the app-1/2/3 rotation.
    requests: u64,
    /// Session ids handed out.
    next_id: u64,
    /// Counters by session id (or connection, or one for everyone).
    by_key: HashMap<String, Counter>,
}

#[derive(Clone)]
struct Shared {
    case: Case,
    counters: Arc<Mutex<Counters>>,
    /// Bumped when [`Case::Backwards`] releases the requests it held.
    release: Arc<watch::Sender<u64>>,
}

/// A running fake; stops when dropped.
pub struct Fake {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Starts one fake on 127.0.0.1:0.
    pub async fn start(case: Case) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared {
            case,
            counters: Arc::default(),
            release: Arc::new(watch::Sender::new(0)),
        };
        let router = Router::new()
            .route("/api/session/views", post(increment_json))
            .route("/session", get(increment_text))
            .route("/api/session", get(read))
            .with_state(shared);
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        Fake { addr, task }
    }

    /// Its URL, for `--target`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one request gets back.
struct Answer {
    /// The counter's key, to apply a held increment later.
    key: String,
    /// Whether, and how, it waits for the release.
    hold: Hold,
    /// The release round when it was held: it waits for the next one.
    round: u64,
    views: u64,
    /// `X-Served-By`.
    served_by: String,
    /// The body's `node`.
    node: String,
    history: Vec<String>,
    /// The session id named in the body, if the fake keeps sessions by id.
    session: Option<String>,
    /// A `Set-Cookie` value to send.
    cookie: Option<String>,
}

fn cookie_sid(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("sid=").map(str::to_owned))
}

/// Handles one request; `increment` false for `GET /api/session`.
fn handle(shared: &Shared, peer: SocketAddr, headers: &HeaderMap, increment: bool) -> Answer {
    let case = shared.case;
    let mut counters = shared.counters.lock().expect("not poisoned");
    counters.requests += 1;
    let served_by = format!("app-{}", counters.requests % 3 + 1);
    let (key, session, cookie) = match case {
        Case::NoSession => (peer.to_string(), None, None),
        Case::GlobalCounter => ("everyone".to_owned(), None, None),
        Case::CookieIgnored => {
            let id = format!("c{}", peer.port());
            (peer.to_string(), Some(id.clone()), Some(id))
        }
        _ => match cookie_sid(headers).filter(|id| counters.by_key.contains_key(id)) {
            Some(id) => (id.clone(), Some(id), None),
            None if !increment => (String::new(), None, None),
            None => {
                counters.next_id += 1;
                let id = format!("s{}", counters.next_id);
                (id.clone(), Some(id.clone()), Some(id))
            }
        },
    };
    let counter = counters.by_key.entry(key.clone()).or_default();
    let (views, hold) = if increment {
        counter.increments += 1;
        count(case, counter, &shared.release)
    } else if case == Case::WrappedRead {
        (u64::MAX, Hold::No)
    } else if case == Case::StaleReads {
        (counter.value.saturating_sub(1), Hold::No)
    } else {
        (counter.value, Hold::No)
    };
    if increment {
        counter.history.push(served_by.clone());
        let excess = counter.history.len().saturating_sub(10);
        counter.history.drain(..excess);
    }
    let (node, history) = match case {
        Case::HeaderOnlyHops => ("app-1".to_owned(), vec!["app-1".to_owned()]),
        Case::StaleHistory => (served_by.clone(), vec!["app-1".to_owned()]),
        _ => (served_by.clone(), counter.history.clone()),
    };
    Answer {
        key,
        hold,
        // Read under the counters' lock, which the release is sent under too.
        round: *shared.release.borrow(),
        views,
        served_by,
        node,
        history,
        session,
        cookie,
    }
}

/// Applies one increment the case's way: the value it answers, and whether it is held.
fn count(case: Case, counter: &mut Counter, release: &watch::Sender<u64>) -> (u64, Hold) {
    let n = counter.increments;
    let mut add = |by: u64| {
        counter.value += by;
        counter.value
    };
    match case {
        Case::LoseFirst if n == 1 => (counter.value + 1, Hold::No),
        Case::WrappedRead => (add(1) - 1, Hold::No),
        Case::Backwards => match counter.phase {
            Phase::Normal if n % 40 == 30 => {
                counter.phase = Phase::Holding(1);
                (add(1), Hold::Answer)
            }
            Phase::Holding(held) if held + 1 < HELD => {
                counter.phase = Phase::Holding(held + 1);
                (add(1), Hold::Answer)
            }
            Phase::Holding(held) if held < HELD => {
                counter.phase = Phase::Holding(held + 1);
                (0, Hold::Apply)
            }
            Phase::Holding(_) => {
                let top = add(2);
                counter.phase = Phase::Owing(top - 1);
                (top, Hold::No)
            }
            Phase::Owing(skipped) => {
                counter.phase = Phase::Normal;
                release.send_modify(|round| *round += 1);
                (skipped, Hold::No)
            }
            Phase::Normal => (add(1), Hold::No),
        },
        _ => (add(1), Hold::No),
    }
}

/// Waits for [`Case::Backwards`]'s release, then applies a held increment if it must.
async fn after_release(shared: &Shared, answer: &mut Answer) {
    if answer.hold == Hold::No {
        return;
    }
    let round = answer.round;
    shared
        .release
        .subscribe()
        .wait_for(|now| *now > round)
        .await
        .expect("the sender lives in the shared state");
    if answer.hold == Hold::Apply {
        let mut counters = shared.counters.lock().expect("not poisoned");
        let counter = counters.by_key.entry(answer.key.clone()).or_default();
        counter.value += 1;
        answer.views = counter.value;
    }
}

fn respond(case: Case, answer: &Answer, body: Response) -> Response {
    let mut response = body;
    let headers = response.headers_mut();
    if case != Case::BodyOnlyNames {
        headers.insert(
            "x-served-by",
            HeaderValue::from_str(&answer.served_by).expect("ascii"),
        );
    }
    if let Some(id) = &answer.cookie {
        let cookie = format!("sid={id}; Path=/; HttpOnly");
        headers.insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("ascii"),
        );
    }
    response
}

fn json_body(answer: &Answer) -> Response {
    Json(json!({
        "views": answer.views,
        "node": answer.node,
        "history": answer.history,
        "session": answer.session,
    }))
    .into_response()
}

async fn increment_json(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let mut answer = handle(&shared, peer, &headers, true);
    after_release(&shared, &mut answer).await;
    respond(shared.case, &answer, json_body(&answer))
}

async fn increment_text(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let mut answer = handle(&shared, peer, &headers, true);
    after_release(&shared, &mut answer).await;
    let body = format!("Session View Cnt  {}", answer.views).into_response();
    respond(shared.case, &answer, body)
}

async fn read(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let answer = handle(&shared, peer, &headers, false);
    respond(shared.case, &answer, json_body(&answer))
}
