//! Test helpers: real app replicas on a real redis-server, a deliberately broken counter
//! server (a tiny axum router) for the faults a healthy cluster never shows, and a way to run
//! the real `loadtest` binary and read its exit code and JSON.

#![allow(dead_code)] // each topic module uses a different subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::config::SessionStoreKind;
use app::testing::{RedisServer, Replica};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// Redis plus `n` replicas named `node-0`, `node-1`, …
pub struct Cluster {
    pub redis: RedisServer,
    pub replicas: Vec<Replica>,
}

impl Cluster {
    /// Replicas sharing sessions in one Redis, with the app's defaults (session lock on).
    pub async fn shared(n: usize) -> Cluster {
        Cluster::start(n, |_| {}).await
    }

    /// Replicas each keeping sessions in their own memory (`SESSION_STORE=memory`).
    pub async fn memory(n: usize) -> Cluster {
        Cluster::start(n, |c| c.session_store = SessionStoreKind::Memory).await
    }

    pub async fn start(n: usize, configure: impl Fn(&mut app::Config)) -> Cluster {
        let redis = RedisServer::start();
        let mut replicas = Vec::new();
        for i in 0..n {
            let mut config = app::Config::for_test(&redis.url(), &format!("node-{i}"));
            configure(&mut config);
            replicas.push(Replica::start(config).await);
        }
        Cluster { redis, replicas }
    }

    /// Every replica's URL, comma-separated, for `--target` (client-side round robin).
    pub fn targets(&self) -> String {
        self.replicas
            .iter()
            .map(Replica::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

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
    /// Acknowledges every n-th increment with the value it would have had, but never stores it.
    DropEvery(u64),
    /// Sleeps this long before every answer.
    Slow(Duration),
}

#[derive(Default)]
struct Counters {
    next_id: u64,
    /// Session id -> (stored value, increments received).
    sessions: HashMap<String, (u64, u64)>,
}

#[derive(Clone)]
struct Broken {
    fault: Fault,
    node: HeaderValue,
    counters: Arc<Mutex<Counters>>,
}

/// A counter server with a deliberate fault, speaking the app's contract.
pub struct BrokenServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl BrokenServer {
    pub async fn start(fault: Fault) -> BrokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Broken {
            fault,
            node: HeaderValue::from_str(&format!("broken-{}", addr.port())).expect("ascii"),
            counters: Arc::default(),
        };
        let router = Router::new()
            .route("/api/session/views", post(increment_json))
            .route("/session", get(increment_text))
            .route("/api/session", get(read))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        BrokenServer { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for BrokenServer {
    fn drop(&mut self) {
        self.task.abort();
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
        .next()
}

/// Applies one increment with the fault; returns (status, value, session id, new cookie?).
fn apply(state: &Broken, headers: &HeaderMap) -> (StatusCode, u64, String, bool) {
    let mut counters = state.counters.lock().expect("not poisoned");
    let known = session_id(headers).filter(|id| counters.sessions.contains_key(id));
    let (id, fresh) = match known {
        Some(id) => (id, false),
        None => {
            counters.next_id += 1;
            let id = format!("s{}", counters.next_id);
            counters.sessions.insert(id.clone(), (0, 0));
            (id, true)
        }
    };
    let entry = counters.sessions.get_mut(&id).expect("just ensured");
    entry.1 += 1;
    let n = entry.1;
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
        Fault::DropEvery(every) if every > 0 && n.is_multiple_of(every) => {
            (StatusCode::OK, entry.0 + 1)
        }
        _ => {
            entry.0 += 1;
            (StatusCode::OK, entry.0)
        }
    };
    (status, value, id, fresh)
}

async fn delay(state: &Broken) {
    if let Fault::Slow(pause) = state.fault {
        tokio::time::sleep(pause).await;
    }
}

fn respond(state: &Broken, status: StatusCode, id: &str, fresh: bool, body: Response) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert("x-served-by", state.node.clone());
    if fresh {
        let cookie = HeaderValue::from_str(&format!("sid={id}; Path=/; HttpOnly")).expect("ascii");
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn increment_json(State(state): State<Broken>, headers: HeaderMap) -> Response {
    delay(&state).await;
    let (status, views, id, fresh) = apply(&state, &headers);
    let node = state.node.to_str().unwrap_or("?").to_owned();
    let body = Json(json!({"views": views, "node": node, "history": [], "session": id}));
    respond(&state, status, &id, fresh, body.into_response())
}

async fn increment_text(State(state): State<Broken>, headers: HeaderMap) -> Response {
    delay(&state).await;
    let (status, views, id, fresh) = apply(&state, &headers);
    let body = format!("Session View Cnt  {views}");
    respond(&state, status, &id, fresh, body.into_response())
}

async fn read(State(state): State<Broken>, headers: HeaderMap) -> Response {
    let counters = state.counters.lock().expect("not poisoned");
    let id = session_id(&headers).unwrap_or_default();
    let views = counters.sessions.get(&id).map_or(0, |(v, _)| *v);
    let node = state.node.to_str().unwrap_or("?").to_owned();
    let body = Json(json!({"views": views, "node": node, "history": [], "session": id}));
    respond(&state, StatusCode::OK, &id, false, body.into_response())
}
