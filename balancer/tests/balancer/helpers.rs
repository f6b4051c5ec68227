//! Test scaffolding: a balancer on 127.0.0.1:0, real app replicas on a real redis-server,
//! small hyper servers for header/slow/upgrade cases, a resolver tests can steer, and a raw
//! TCP client for requests an HTTP library would refuse to send.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use app::testing::{RedisServer, Replica};
use balancer::discovery::ResolveFuture;
use balancer::{Config, Resolver, SystemResolver};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// Logs stay quiet unless `TEST_LOG` is set.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "debug,hyper=info,hyper_util=info",
                ))
                .with_test_writer()
                .init();
        }
    });
}

/// A balancer config for tests: fast discovery and health rounds so tests stay short.
pub fn test_config(upstreams: &[String]) -> Config {
    let mut config = Config::with_upstreams(
        upstreams
            .iter()
            .map(|u| u.parse().expect("valid upstream"))
            .collect(),
    );
    config.resolve_interval = Duration::from_millis(200);
    config.health_interval = Duration::from_millis(100);
    config.health_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(500);
    config.drain_timeout = Duration::from_secs(5);
    // Tests read which backend answered; off by default (it reveals internal addresses).
    config.expose_upstream = true;
    config
}

/// `host:port` strings for socket addresses.
pub fn upstreams(addrs: &[SocketAddr]) -> Vec<String> {
    addrs.iter().map(ToString::to_string).collect()
}

/// An HTTP client that never goes through a proxy from the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A running in-process balancer.
pub struct TestBalancer {
    /// Client-facing address.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestBalancer {
    /// Starts with the system resolver.
    pub async fn start(config: Config) -> TestBalancer {
        Self::start_with_resolver(config, Arc::new(SystemResolver)).await
    }

    /// Starts with `resolver`; returns once the listeners are bound (the first discovery
    /// round runs before serving, so early requests wait in the backlog).
    pub async fn start_with_resolver(config: Config, resolver: Arc<dyn Resolver>) -> TestBalancer {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let addr = listener.local_addr().expect("addr");
        let admin_addr = admin.local_addr().expect("admin addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(balancer::run_with_resolver(
            listener,
            admin,
            config,
            resolver,
            async move {
                let _ = stopped.await;
            },
        ));
        TestBalancer {
            addr,
            admin: admin_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://addr{path}` on the client port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        http_client()
            .get(format!("http://{}/status", self.admin))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        http_client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the unlabelled counter `name` (e.g. `balancer_retries_total`) in `/metrics`.
    pub async fn counter(&self, name: &str) -> u64 {
        let metrics = self.metrics().await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
    }

    /// Waits (at most 10 s) until exactly `n` backends are in rotation.
    pub async fn wait_healthy(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status().await;
            if status["healthy"].as_u64() == Some(n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never reached {n} healthy backends: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the shutdown signal (what SIGTERM does in the binary) without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `run` to return.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        match self.task.take() {
            Some(t) => t.await.expect("balancer task panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestBalancer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A real redis-server and `n` real app replicas named node-0..node-(n-1).
pub struct Cluster {
    /// Kept alive for the replicas (killed on drop); held, never read.
    _redis: RedisServer,
    /// `None` once stopped.
    pub replicas: Vec<Option<Replica>>,
}

impl Cluster {
    /// Starts Redis and the replicas.
    pub async fn start(n: usize) -> Cluster {
        let redis = RedisServer::start();
        let mut replicas = Vec::new();
        for i in 0..n {
            let config = app::Config::for_test(&redis.url(), &format!("node-{i}"));
            replicas.push(Some(Replica::start(config).await));
        }
        Cluster {
            _redis: redis,
            replicas,
        }
    }

    /// Addresses of the running replicas.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().flatten().map(Replica::addr).collect()
    }

    /// Gracefully stops replica `i` (its listener is dropped).
    pub async fn stop(&mut self, i: usize) {
        if let Some(r) = self.replicas[i].take() {
            r.stop().await;
        }
    }
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// A small hyper HTTP/1.1 server (with upgrades) on 127.0.0.1:0; dropping or `kill`ing it
/// closes the listener and every open connection.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `handler` for every request.
    pub async fn start<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        Self::start_with_idle_close(handler, None).await
    }

    /// Like `start`, but closes keep-alive connections idle for `idle_close` (hyper's header
    /// read timeout also covers the wait for the next request), as a backend with a short
    /// keep-alive timeout does.
    pub async fn start_with_idle_close<F, Fut>(
        handler: F,
        idle_close: Option<Duration>,
    ) -> TestServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            // Connections live in this set so that aborting the server kills them too.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let handler = Arc::clone(&handler);
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = Arc::clone(&handler);
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    if let Some(idle) = idle_close {
                        builder
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(idle);
                    }
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        TestServer {
            addr,
            accepted,
            task,
        }
    }

    /// Kills the server: listener and connections closed, new connects refused.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response with `body`.
pub fn text(body: impl Into<String>) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(body.into())))
}

/// The request's headers as `name: value` lines, for servers that echo what they received.
pub fn header_lines(req: &Request<Incoming>) -> String {
    req.headers()
        .iter()
        .map(|(k, v)| format!("{}: {}\n", k, v.to_str().unwrap_or("<binary>")))
        .collect()
}

/// A resolver whose answers the test sets.
#[derive(Default)]
pub struct TestResolver {
    answers: Mutex<HashMap<String, Vec<SocketAddr>>>,
}

impl TestResolver {
    /// From now on `host` resolves to `addrs` (the port in `UPSTREAMS` is ignored).
    pub fn set(&self, host: &str, addrs: Vec<SocketAddr>) {
        self.answers
            .lock()
            .expect("lock")
            .insert(host.to_owned(), addrs);
    }
}

impl Resolver for TestResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let answer = self.answers.lock().expect("lock").get(host).cloned();
        Box::pin(async move {
            answer.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown host"))
        })
    }
}

/// Writes `request` on a fresh connection and reads until the peer closes (at most 5 s).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // Written concurrently with reading: a server may answer (431) before taking it all.
    let (mut rd, mut wr) = stream.split();
    let write = async {
        let _ = wr.write_all(request).await;
    };
    let read = async {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out)).await;
        out
    };
    let ((), out) = tokio::join!(write, read);
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a raw HTTP/1.1 response into (status line, lowercased header lines, body).
pub fn parse_response(raw: &str) -> (String, Vec<(String, String)>, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A port nothing listens on (bound then released).
pub async fn closed_port_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// A server whose non-health responses stream a body made by `body()` (health checks get
/// an immediate 200), for tests about streaming and timing.
pub struct StreamingServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

type StreamBodyFn =
    Arc<dyn Fn() -> http_body_util::combinators::BoxBody<Bytes, Infallible> + Send + Sync>;

impl StreamingServer {
    /// Serves `body()` for every request except `/readyz`.
    pub async fn start<F>(body: F) -> StreamingServer
    where
        F: Fn() -> http_body_util::combinators::BoxBody<Bytes, Infallible> + Send + Sync + 'static,
    {
        let body: StreamBodyFn = Arc::new(body);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = Arc::clone(&body);
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let body = Arc::clone(&body);
                        async move {
                            let b = if req.uri().path() == "/readyz" {
                                http_body_util::combinators::BoxBody::new(Full::new(
                                    Bytes::from_static(b"ok"),
                                ))
                            } else {
                                body()
                            };
                            Ok::<_, Infallible>(Response::new(b))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        StreamingServer { addr, task }
    }
}

/// A backend streaming 32 MiB (512 chunks of 64 KiB) to every request but `/readyz`: more
/// than socket buffers hold, so a client that stops reading stalls it.
pub async fn big_stream() -> StreamingServer {
    use futures_util::StreamExt as _;
    StreamingServer::start(|| {
        let chunks = futures_util::stream::iter(0..512).map(|_| {
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
        });
        http_body_util::combinators::BoxBody::new(http_body_util::StreamBody::new(chunks))
    })
    .await
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a [`RawBackend`] does with a request that is not a health check.
#[derive(Debug, Clone)]
pub enum RawReply {
    /// Close the connection without a byte.
    Close,
    /// Write these bytes, then close.
    Write(Vec<u8>),
    /// Write these bytes, then keep the connection open and silent.
    WriteThenStall(Vec<u8>),
}

/// A backend written on raw sockets, for responses no HTTP library would send. Health checks
/// (`GET /readyz`) get a proper 200; every other request gets `reply(request head)`.
pub struct RawBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Non-health requests seen (heads, lower-cased).
    pub seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

/// The `content-length` of a lower-cased message head, 0 when it has none.
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads one HTTP/1.1 message (request or response): the head, then a `content-length` or
/// chunked body (as far as it comes within 2 s). Returns the whole text.
pub async fn read_message(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = content_length(&head);
            let chunked = head.contains("transfer-encoding: chunked");
            let body = &buf[end + 4..];
            let complete = if chunked {
                body.ends_with(b"0\r\n\r\n")
            } else {
                body.len() >= length
            };
            if complete {
                return String::from_utf8_lossy(&buf).into_owned();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
}

impl RawBackend {
    /// Serves `reply` on 127.0.0.1:0.
    pub async fn start(reply: impl Fn(&str) -> RawReply + Send + Sync + 'static) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let reply = Arc::new(reply);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (reply, log) = (Arc::clone(&reply), Arc::clone(&log));
                conns.spawn(async move {
                    let request = read_message(&mut stream).await;
                    if request.is_empty() {
                        return;
                    }
                    if request.to_lowercase().starts_with("get /readyz") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                        return;
                    }
                    log.lock().expect("lock").push(request.to_lowercase());
                    match reply(&request) {
                        RawReply::Close => {}
                        RawReply::Write(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            let _ = stream.shutdown().await;
                        }
                        RawReply::WriteThenStall(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        RawBackend { addr, seen, task }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The number of ejections `/status` reports in all.
pub async fn ejections(lb: &TestBalancer) -> u64 {
    lb.status().await["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter_map(|b| b["ejections"].as_u64())
        .sum()
}

/// The 5xx responses `/status` counts against backends, in all.
pub async fn backend_5xx(lb: &TestBalancer) -> u64 {
    lb.status().await["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter_map(|b| b["responses"]["5xx"].as_u64())
        .sum()
}

/// Reads until `n` complete responses (each `content-length: 1`-style small body) arrived,
/// within 3 s; returns their status lines and bodies.
pub async fn read_responses(stream: &mut TcpStream, n: usize) -> Vec<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut out = Vec::new();
        let mut rest = &buf[..];
        while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
            let len = content_length(&head);
            if rest.len() < end + 4 + len {
                break;
            }
            let status = head.lines().next().unwrap_or_default().to_owned();
            let body = String::from_utf8_lossy(&rest[end + 4..end + 4 + len]).into_owned();
            out.push((status, body));
            rest = &rest[end + 4 + len..];
        }
        if out.len() >= n {
            return out;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(k)) if k > 0 => buf.extend_from_slice(&chunk[..k]),
            _ => return out,
        }
    }
}
