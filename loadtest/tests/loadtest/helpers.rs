//! Test helpers: a deliberately broken counter server (a tiny axum router) for the faults a
//! healthy cluster never shows, and a way to run the real `loadtest` binary and read its exit
//! code and JSON.

#![allow(dead_code)] // each topic module uses a different subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// Parses a configuration exactly as the binary would.
pub fn config(args: &[&str]) -> loadtest::Config {
    loadtest::Config::try_from_args(std::iter::once("loadtest").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs the library entry point with no ctrl-c.
pub async fn run(args: &[&str]) -> loadtest::Report {
    let config = config(args);
    tokio::time::timeout(
        Duration::from_secs(60),
        loadtest::run(&config, std::future::pending()),
    )
    .await
    .expect("a bounded run finishes within 60 s")
    .expect("the run could take place")
}

/// What the binary did.
pub struct Cli {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    /// The `--json` report on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs the real binary (async, so in-process servers keep serving meanwhile).
pub async fn cli(args: &[&str], env: &[(&str, &str)]) -> Cli {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command.args(args).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("LOADTEST_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("loadtest exits within 60 s")
        .expect("loadtest binary runs");
    Cli {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// How the broken server mistreats each session's increments (counted per session from 1).
#[derive(Debug, Clone, Copy, Default)]
pub enum Fault {
    /// Counts correctly.
    #[default]
    None,
    /// Adds 2 on increment `gap_at`, 0 on increment `repeat_at`.
    GapAndRepeat { gap_at: u64, repeat_at: u64 },
    /// Answers 500 on increment `at`, but applies it anyway.
    ErrorButApply { at: u64 },
    /// Answers 500 on increment `at` without applying it, and applies it just before
    /// increment `at + 2`: an unknown outcome that takes effect after the next answer.
    ApplyLate { at: u64 },
    /// Acknowledges every n-th increment with the value it would have had, but never stores it.
    DropEvery(u64),
    /// Loses increment `lose_at` (acknowledged, never stored) and applies `double_at` twice:
    /// the final value is right, two answers are not.
    LoseOneDoubleOne { lose_at: u64, double_at: u64 },
    /// Counts right, but every odd increment answers the value from before it.
    StaleAnswers,
    /// Counts right, but answers every increment after the first with a body no one can read.
    Unreadable,
    /// Counts right, but the first increment of a session answers 100.
    WrongFirstAnswer,
    /// Counts right, but on increment `at` moves the session to a new id, count carried over.
    Rotate { at: u64 },
    /// Sleeps this long before every answer.
    Slow(Duration),
}

#[derive(Default)]
struct Counters {
    next_id: u64,
    /// Session id -> (stored value, increments received, increments to apply later).
    sessions: HashMap<String, (u64, u64, u64)>,
}

#[derive(Clone)]
struct Broken {
    fault: Fault,
    node: HeaderValue,
    counters: Arc<Mutex<Counters>>,
}

/// A counter server with a deliberate fault, speaking the app's contract; with several
/// replicas, they share one set of counters (sessions are shared) and each names itself.
pub struct BrokenServer {
    pub addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BrokenServer {
    /// One replica.
    pub async fn start(fault: Fault) -> BrokenServer {
        BrokenServer::replicas(fault, 1, true).await
    }

    /// `n` replicas sharing their counters; `read_route` false leaves out `GET /api/session`,
    /// as the original demo has only its text route.
    pub async fn replicas(fault: Fault, n: usize, read_route: bool) -> BrokenServer {
        let counters: Arc<Mutex<Counters>> = Arc::default();
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let state = Broken {
                fault,
                node: HeaderValue::from_str(&format!("broken-{}", addr.port())).expect("ascii"),
                counters: Arc::clone(&counters),
            };
            let mut router = Router::new()
                .route("/api/session/views", post(increment_json))
                .route("/session", get(increment_text))
                .route("/healthz", get(|| async { "ok" }));
            if read_route {
                router = router.route("/api/session", get(read));
            }
            let router = router.with_state(state);
            tasks.push(tokio::spawn(async move {
                axum::serve(listener, router).await.expect("serve");
            }));
            addrs.push(addr);
        }
        BrokenServer { addrs, tasks }
    }

    /// The first replica's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addrs[0])
    }

    /// Every replica's URL, comma-separated, for `--target`.
    pub fn targets(&self) -> String {
        self.addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for BrokenServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("sid="))
        .map(str::to_owned)
        .next_back()
}

/// What one increment answered.
struct Applied {
    status: StatusCode,
    views: u64,
    id: String,
    /// Set a new cookie (a new or rotated session).
    fresh: bool,
    /// A body no one can read.
    garbage: bool,
}

/// Applies one increment with the fault.
fn apply(state: &Broken, headers: &HeaderMap) -> Applied {
    let mut counters = state.counters.lock().expect("not poisoned");
    let known = session_id(headers).filter(|id| counters.sessions.contains_key(id));
    let (mut id, mut fresh) = match known {
        Some(id) => (id, false),
        None => {
            counters.next_id += 1;
            let id = format!("s{}", counters.next_id);
            counters.sessions.insert(id.clone(), (0, 0, 0));
            (id, true)
        }
    };
    let entry = counters.sessions.get_mut(&id).expect("just ensured");
    entry.1 += 1;
    let n = entry.1;
    let mut garbage = false;
    let (status, value) = match state.fault {
        Fault::GapAndRepeat { gap_at, .. } if n == gap_at => {
            entry.0 += 2;
            (StatusCode::OK, entry.0)
        }
        Fault::GapAndRepeat { repeat_at, .. } if n == repeat_at => (StatusCode::OK, entry.0),
        Fault::ErrorButApply { at } if n == at => {
            entry.0 += 1;
            (StatusCode::INTERNAL_SERVER_ERROR, entry.0)
        }
        Fault::ApplyLate { at } if n == at => {
            entry.2 += 1;
            (StatusCode::INTERNAL_SERVER_ERROR, entry.0)
        }
        Fault::ApplyLate { at } if n == at + 2 => {
            entry.0 += entry.2 + 1;
            entry.2 = 0;
            (StatusCode::OK, entry.0)
        }
        Fault::DropEvery(every) if every > 0 && n.is_multiple_of(every) => {
            (StatusCode::OK, entry.0 + 1)
        }
        Fault::LoseOneDoubleOne { lose_at, .. } if n == lose_at => (StatusCode::OK, entry.0 + 1),
        Fault::LoseOneDoubleOne { double_at, .. } if n == double_at => {
            entry.0 += 2;
            (StatusCode::OK, entry.0)
        }
        Fault::StaleAnswers if n % 2 == 1 => {
            entry.0 += 1;
            (StatusCode::OK, entry.0 - 1)
        }
        Fault::WrongFirstAnswer if n == 1 => {
            entry.0 += 1;
            (StatusCode::OK, 100)
        }
        Fault::Unreadable if n > 1 => {
            entry.0 += 1;
            garbage = true;
            (StatusCode::OK, entry.0)
        }
        _ => {
            entry.0 += 1;
            (StatusCode::OK, entry.0)
        }
    };
    if let Fault::Rotate { at } = state.fault
        && n == at
    {
        let carried = *entry;
        counters.next_id += 1;
        let new_id = format!("s{}", counters.next_id);
        counters.sessions.remove(&id);
        counters.sessions.insert(new_id.clone(), carried);
        id = new_id;
        fresh = true;
    }
    Applied {
        status,
        views: value,
        id,
        fresh,
        garbage,
    }
}

async fn delay(state: &Broken) {
    if let Fault::Slow(pause) = state.fault {
        tokio::time::sleep(pause).await;
    }
}

fn respond(state: &Broken, applied: &Applied, body: Response) -> Response {
    let mut response = (applied.status, body).into_response();
    response
        .headers_mut()
        .insert("x-served-by", state.node.clone());
    if applied.fresh {
        let cookie =
            HeaderValue::from_str(&format!("sid={}; Path=/; HttpOnly", applied.id)).expect("ascii");
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn increment_json(State(state): State<Broken>, headers: HeaderMap) -> Response {
    delay(&state).await;
    let applied = apply(&state, &headers);
    if applied.garbage {
        return respond(&state, &applied, "<html>oops</html>".into_response());
    }
    let node = state.node.to_str().unwrap_or("?").to_owned();
    let body =
        Json(json!({"views": applied.views, "node": node, "history": [], "session": applied.id}));
    respond(&state, &applied, body.into_response())
}

async fn increment_text(State(state): State<Broken>, headers: HeaderMap) -> Response {
    delay(&state).await;
    let applied = apply(&state, &headers);
    if applied.garbage {
        return respond(&state, &applied, "Session View Cnt  ???".into_response());
    }
    let body = format!("Session View Cnt  {}", applied.views);
    respond(&state, &applied, body.into_response())
}

async fn read(State(state): State<Broken>, headers: HeaderMap) -> Response {
    let counters = state.counters.lock().expect("not poisoned");
    let id = session_id(&headers).unwrap_or_default();
    let views = counters.sessions.get(&id).map_or(0, |(v, _, _)| *v);
    let node = state.node.to_str().unwrap_or("?").to_owned();
    let body = Json(json!({"views": views, "node": node, "history": [], "session": id}));
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert("x-served-by", state.node.clone());
    response
}
