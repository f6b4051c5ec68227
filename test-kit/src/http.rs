//! Fake HTTP backends and raw HTTP/1.1 tools: a small hyper server with upgrades, a
//! streaming server, a backend on raw sockets for answers no HTTP library would send, and
//! readers for what comes back. For tests of the proxy itself; tests that claim cluster
//! behaviour use real app replicas.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// An HTTP client that never goes through a proxy from the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
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

/// Waits (at most 10 s) until `url` answers 200, e.g. a replica's `/readyz` once every
/// connection of its Redis pool answers.
pub async fn wait_for_200(url: &str) {
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|res| res.status() == 200)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
