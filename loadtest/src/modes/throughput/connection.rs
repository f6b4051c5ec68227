//! One throughput connection: its schedule, its prebuilt request, its own histogram, counters
//! and cookie jar. The hot path takes no lock and shares nothing but two relaxed atomics and
//! its thread's per-second recorder (a `RefCell`: the thread's connections take turns).

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use tokio::net::TcpStream;

use crate::http1::{ExchangeError, Http1};
use crate::jar::Jar;
use crate::latency::Latencies;
use crate::report::remember_error;
use crate::series::Recorder;
use crate::stop::Stop;
use crate::targets::Target;

/// Pause before reconnecting in closed loop, so a dead target is not hammered in a hot loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

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
    /// Responses by `X-Served-By` value.
    pub served_by: Vec<(Vec<u8>, u64)>,
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

/// Opens a TCP connection with Nagle off.
pub async fn connect(target: &Target, timeout: Duration) -> Result<Http1, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(target.addr())).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(format!("connect error: {error}")),
        Err(_) => return Err("connect timeout".to_owned()),
    };
    // Small requests must not wait for Nagle; failure to set it only costs latency.
    stream.set_nodelay(true).ok();
    Ok(Http1::new(stream))
}

/// One connection's loop state.
pub struct Connection<'a> {
    target: &'a Target,
    plan: &'a Plan,
    stop: &'a Stop,
    /// The complete request, rebuilt only when the cookie changes.
    request: Vec<u8>,
    /// HEAD responses have no body whatever their headers say.
    head_request: bool,
    /// The moment the run started; the open-loop schedule counts from here.
    start: Instant,
    /// When to stop sending.
    deadline: Option<Instant>,
    /// Open loop: the next global schedule slot this connection owns.
    next_slot: u64,
    jar: Jar,
    stats: Stats,
    /// The load thread's requests second by second, shared by its connections.
    series: &'a RefCell<Recorder>,
}

impl<'a> Connection<'a> {
    /// A connection that owns schedule slots `index`, `index + connections`, ….
    pub fn new(
        index: u64,
        target: &'a Target,
        plan: &'a Plan,
        stop: &'a Stop,
        start: Instant,
        series: &'a RefCell<Recorder>,
    ) -> Connection<'a> {
        let mut connection = Connection {
            target,
            plan,
            stop,
            request: Vec::with_capacity(256),
            head_request: plan.method == Method::HEAD,
            start,
            deadline: plan.duration.map(|d| start + d),
            next_slot: index,
            jar: Jar::default(),
            stats: Stats::default(),
            series,
        };
        connection.build_request();
        connection
    }

    /// Runs the schedule to its end, reconnecting when the connection breaks.
    pub async fn run(mut self, mut link: Option<Http1>) -> Stats {
        loop {
            let mut http = match link.take() {
                Some(http) => http,
                None => match connect(self.target, self.plan.timeout).await {
                    Ok(http) => http,
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
            if let End::Done = self.requests(&mut http).await {
                break;
            }
        }
        self.stats
    }

    async fn requests(&mut self, http: &mut Http1) -> End {
        loop {
            let Some(measure_from) = self.next_send().await else {
                return End::Done;
            };
            let stats = &mut self.stats;
            let jar = &mut self.jar;
            let cookies = self.plan.cookies;
            let mut cookie_changed = false;
            let mut served_by = None;
            let exchange = http.exchange(&self.request, self.head_request, |name, value| {
                if name.eq_ignore_ascii_case(crate::endpoint::SERVED_BY) {
                    // Counted once the response is complete, so a response cut off after its
                    // head counts as an error and for no replica.
                    served_by = Some(match stats.served_by.iter().position(|(n, _)| n == value) {
                        Some(index) => index,
                        None => {
                            stats.served_by.push((value.to_vec(), 0));
                            stats.served_by.len() - 1
                        }
                    });
                } else if cookies && name.eq_ignore_ascii_case("set-cookie") {
                    cookie_changed |= jar.store(value);
                }
            });
            let result = tokio::time::timeout(self.plan.timeout, exchange).await;
            if cookie_changed {
                self.build_request();
            }
            match result {
                Ok(Ok(head)) => {
                    // One clock read for the latency and the second it lands in.
                    let now = Instant::now();
                    let latency = now.saturating_duration_since(measure_from);
                    self.stats.latencies.record(latency);
                    let replica = match served_by.and_then(|i| self.stats.served_by.get_mut(i)) {
                        Some((name, count)) => {
                            *count += 1;
                            Some(name.as_slice())
                        }
                        None => None,
                    };
                    self.series.borrow_mut().record(
                        now.saturating_duration_since(self.start),
                        Some(latency),
                        head.status >= 400,
                        replica,
                    );
                    self.stats.completed += 1;
                    self.plan.done.fetch_add(1, Ordering::Relaxed);
                    match self
                        .stats
                        .status_counts
                        .iter_mut()
                        .find(|(c, _)| *c == head.status)
                    {
                        Some((_, n)) => *n += 1,
                        None => self.stats.status_counts.push((head.status, 1)),
                    }
                    if !head.keep_alive {
                        return End::Broken;
                    }
                }
                Ok(Err(error)) => {
                    let message = match error {
                        ExchangeError::Closed => "connection closed mid-response".to_owned(),
                        other => other.to_string(),
                    };
                    self.fail(&message, false);
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

    /// Serialises the request once; it only changes with the cookie.
    fn build_request(&mut self) {
        let request = &mut self.request;
        request.clear();
        // Writes into a Vec cannot fail.
        let _ = write!(
            request,
            "{} {}{} HTTP/1.1\r\nHost: {}\r\n",
            self.plan.method,
            self.target.path_prefix(),
            self.plan.path,
            self.target.host_header().to_str().unwrap_or_default()
        );
        if let Some(cookie) = self.jar.header() {
            let _ = write!(request, "Cookie: {cookie}\r\n");
        }
        if matches!(self.plan.method, Method::POST | Method::PUT | Method::PATCH) {
            request.extend_from_slice(b"Content-Length: 0\r\n");
        }
        request.extend_from_slice(b"\r\n");
    }

    fn fail(&mut self, message: &str, timeout: bool) {
        self.stats.errors += 1;
        self.series
            .borrow_mut()
            .record(self.start.elapsed(), None, true, None);
        if timeout {
            self.stats.timeouts += 1;
        }
        self.plan.done.fetch_add(1, Ordering::Relaxed);
        remember_error(&mut self.stats.error_examples, message);
    }
}
