//! One throughput connection: a raw hyper HTTP/1.1 client connection driven in the same task
//! as its request loop (no per-request cross-task wake-ups), with its own histogram, counters
//! and cookie jar, so the hot path takes no lock and shares nothing but two atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, COOKIE, HOST, SET_COOKIE};
use http::response::Parts;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, Connection as HyperConnection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::endpoint::SERVED_BY;
use crate::jar::Jar;
use crate::latency::Latencies;
use crate::report::remember_error;
use crate::stop::Stop;
use crate::targets::Target;

/// Pause before reconnecting in closed loop, so a dead target is not hammered in a hot loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

type Sender = SendRequest<Empty<Bytes>>;
type Driver = HyperConnection<TokioIo<TcpStream>, Empty<Bytes>>;

/// An established HTTP/1.1 connection: the request handle and the I/O driver.
pub struct Link(Sender, Driver);

/// The run's shared, read-only plan plus the two shared counters.
#[derive(Debug)]
pub struct Plan {
    /// Request method.
    pub method: Method,
    /// Request path (without any target prefix).
    pub path: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether to send cookies back.
    pub cookies: bool,
    /// Open-loop rate in requests/s, in total; `None` = closed loop.
    pub rate: Option<f64>,
    /// Total request limit.
    pub requests: Option<u64>,
    /// Run length.
    pub duration: Option<Duration>,
    /// Connections in the run (the open-loop schedule's stride).
    pub connections: u64,
    /// Closed loop: requests claimed so far, against `requests`.
    pub claimed: AtomicU64,
    /// Requests finished, for the progress bar.
    pub done: Arc<AtomicU64>,
}

/// What one connection measured.
#[derive(Debug, Default)]
pub struct Stats {
    /// Latency of every response.
    pub latencies: Latencies,
    /// Responses received, any status.
    pub completed: u64,
    /// Transport errors and timeouts.
    pub errors: u64,
    /// Of the errors, timeouts.
    pub timeouts: u64,
    /// Responses by status code (a handful of codes at most, so a list beats a map).
    pub status_counts: Vec<(u16, u64)>,
    /// Responses by `X-Served-By`.
    pub served_by: Vec<(HeaderValue, u64)>,
    /// A few distinct error messages.
    pub error_examples: Vec<String>,
}

/// How a connection's request loop ended.
enum End {
    /// The schedule is exhausted or the run was stopped.
    Done,
    /// The connection broke or must be closed; reconnect and go on.
    Broken,
}

/// Opens a TCP connection and performs the HTTP/1.1 handshake.
pub async fn connect(target: &Target, timeout: Duration) -> Result<Link, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(target.addr())).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(format!("connect error: {error}")),
        Err(_) => return Err("connect timeout".to_owned()),
    };
    // Small requests must not wait for Nagle; failure to set it only costs latency.
    stream.set_nodelay(true).ok();
    let (sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake error: {error}"))?;
    Ok(Link(sender, driver))
}

/// One connection's loop state.
pub struct Connection<'a> {
    target: &'a Target,
    plan: &'a Plan,
    stop: &'a Stop,
    /// Origin-form request target: the target's path prefix plus the path.
    uri: Uri,
    /// The moment the run started; the open-loop schedule counts from here.
    start: Instant,
    /// When to stop sending.
    deadline: Option<Instant>,
    /// Open loop: the next global schedule slot this connection owns.
    next_slot: u64,
    jar: Jar,
    stats: Stats,
}

impl<'a> Connection<'a> {
    /// A connection that owns schedule slots `index`, `index + connections`, ….
    pub fn new(
        index: u64,
        target: &'a Target,
        plan: &'a Plan,
        stop: &'a Stop,
        start: Instant,
    ) -> Result<Connection<'a>, String> {
        let uri = format!("{}{}", target.path_prefix(), plan.path)
            .parse::<Uri>()
            .map_err(|e| format!("bad path {}: {e}", plan.path))?;
        Ok(Connection {
            target,
            plan,
            stop,
            uri,
            start,
            deadline: plan.duration.map(|d| start + d),
            next_slot: index,
            jar: Jar::default(),
            stats: Stats::default(),
        })
    }

    /// Runs the schedule to its end, reconnecting when the connection breaks.
    pub async fn run(mut self, mut link: Option<Link>) -> Stats {
        loop {
            let Link(mut sender, driver) = match link.take() {
                Some(link) => link,
                None => match connect(self.target, self.plan.timeout).await {
                    Ok(link) => link,
                    Err(error) => {
                        // A failed connect costs one scheduled request, so a dead target shows
                        // up as errors and the loop stays bounded by the schedule.
                        if self.next_send().await.is_none() {
                            break;
                        }
                        self.fail(&error, false);
                        if self.plan.rate.is_none() {
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                        }
                        continue;
                    }
                },
            };
            // The driver never finishes from the select's point of view: when the connection
            // closes, the pending or next request fails and the loop reconnects.
            let driver = async move {
                driver.await.ok();
                std::future::pending::<()>().await;
            };
            let requests = self.requests(&mut sender);
            tokio::pin!(driver, requests);
            let end = tokio::select! {
                biased;
                end = &mut requests => end,
                () = &mut driver => End::Broken,
            };
            if let End::Done = end {
                break;
            }
        }
        self.stats
    }

    async fn requests(&mut self, sender: &mut Sender) -> End {
        loop {
            if sender.ready().await.is_err() {
                // Closed while idle (keep-alive timeout): not a failed request, just reconnect.
                return End::Broken;
            }
            let Some(measure_from) = self.next_send().await else {
                return End::Done;
            };
            let request = self.request();
            let exchange = async {
                let response = sender.send_request(request).await?;
                let (parts, mut body) = response.into_parts();
                while let Some(frame) = body.frame().await {
                    frame?;
                }
                Ok::<Parts, hyper::Error>(parts)
            };
            match tokio::time::timeout(self.plan.timeout, exchange).await {
                Ok(Ok(parts)) => {
                    self.stats.latencies.record(measure_from.elapsed());
                    self.on_response(&parts);
                    if wants_close(&parts) {
                        return End::Broken;
                    }
                }
                Ok(Err(error)) => {
                    self.fail(&format!("request error: {error}"), false);
                    return End::Broken;
                }
                Err(_) => {
                    // The connection is in an unknown state: drop it.
                    self.fail("timeout", true);
                    return End::Broken;
                }
            }
        }
    }

    /// Waits for this connection's next slot. Returns the instant latency is measured from:
    /// now in closed loop, the intended send time in open loop (so queueing behind a slow
    /// response counts, i.e. no coordinated omission); `None` when the run is over.
    async fn next_send(&mut self) -> Option<Instant> {
        if self.stop.is_stopped() {
            return None;
        }
        let now = Instant::now();
        match self.plan.rate {
            None => {
                if self.deadline.is_some_and(|d| now >= d) {
                    return None;
                }
                if let Some(limit) = self.plan.requests
                    && self.plan.claimed.fetch_add(1, Ordering::Relaxed) >= limit
                {
                    return None;
                }
                Some(now)
            }
            Some(rate) => {
                let slot = self.next_slot;
                if self.plan.requests.is_some_and(|n| slot >= n) {
                    return None;
                }
                let intended = self.start + Duration::from_secs_f64(slot as f64 / rate);
                if self.deadline.is_some_and(|d| intended >= d) {
                    return None;
                }
                self.next_slot = slot.saturating_add(self.plan.connections);
                if intended > now {
                    tokio::select! {
                        () = tokio::time::sleep_until(intended.into()) => {}
                        () = self.stop.stopped() => return None,
                    }
                }
                Some(intended)
            }
        }
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.method_mut() = self.plan.method.clone();
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.target.host_header().clone());
        if let Some(cookie) = self.jar.header() {
            headers.insert(COOKIE, cookie.clone());
        }
        request
    }

    fn on_response(&mut self, parts: &Parts) {
        self.stats.completed += 1;
        self.plan.done.fetch_add(1, Ordering::Relaxed);
        let code = parts.status.as_u16();
        match self
            .stats
            .status_counts
            .iter_mut()
            .find(|(c, _)| *c == code)
        {
            Some((_, n)) => *n += 1,
            None => self.stats.status_counts.push((code, 1)),
        }
        if let Some(node) = parts.headers.get(SERVED_BY) {
            match self.stats.served_by.iter_mut().find(|(n, _)| n == node) {
                Some((_, count)) => *count += 1,
                None => self.stats.served_by.push((node.clone(), 1)),
            }
        }
        if self.plan.cookies {
            for set_cookie in parts.headers.get_all(SET_COOKIE) {
                self.jar.store(set_cookie);
            }
        }
    }

    fn fail(&mut self, message: &str, timeout: bool) {
        self.stats.errors += 1;
        if timeout {
            self.stats.timeouts += 1;
        }
        self.plan.done.fetch_add(1, Ordering::Relaxed);
        remember_error(&mut self.stats.error_examples, message);
    }
}

/// Whether the server asked to close the connection after this response.
fn wants_close(parts: &Parts) -> bool {
    parts
        .headers
        .get(CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}
