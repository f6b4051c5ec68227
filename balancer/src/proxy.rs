//! Forwarding one client request to a backend, in named phases as pingora structures a
//! proxy: [`Proxy::prepare`] checks and rewrites the request, [`Proxy::choose`] picks the
//! upstream, [`Proxy::send`] sends it over the worker's pool ([`crate::upstream_pool`]),
//! [`Proxy::decide`] turns a failure into a retry or an answer, and [`Proxy::respond`] /
//! [`Proxy::fail`] rewrite the response and record it (metrics, logs).
//!
//! Retry policy. A second attempt, on the next backend, is made when:
//! - the TCP connect failed (refused, timed out): any method, nothing was sent;
//! - a pooled connection turned out closed before the request was written (a backend closing
//!   an idle connection): hyper hands the request back (`try_send_request`) and it goes out
//!   again on a new connection to the same backend, which is not blamed;
//! - a GET, HEAD or OPTIONS failed after it may have been sent (a reset, "connection closed
//!   before message completed": the replica died mid-request). HTTP calls these methods safe,
//!   but this demo's `GET /session` changes state, so a blind replay could count twice. Every
//!   such request carries an `X-Request-Id` (the client's when the shared `request-id` rule
//!   accepts it, else one made here), the replay carries the same id, and the app applies a
//!   request id at most once per session. So the user sees neither the failure nor a double
//!   count.
//!
//! Any other method that fails after it may have been sent is answered 502 and not retried:
//! nothing proves the backend did not act on it.
//!
//! Blame. A backend is penalised (failure counted, ejected within the budget of
//! [`BackendSet::eject`]) only for its own failures: a refused or timed-out connect, a reset
//! or truncated response, a malformed one, a stall. A client's own fault (its upload reset,
//! truncated, malformed or stalled) gets a 4xx and touches no backend. One request cannot
//! poison the rotation: a GET that fails after being sent is replayed once; if the replay
//! fails too, the client gets 502 and only the first backend's failure counts.
//!
//! Timeouts. Waiting for a request slot and for the response headers are bounded by
//! `UPSTREAM_TIMEOUT` each; the header wait starts once the request body was sent (a slow
//! upload is bounded by `BODY_IDLE_TIMEOUT` instead, and is the client's fault).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::backends::{Backend, BackendSet, InFlight};

use crate::body::{BodySlot, ClientFault, RequestBody, ResponseBody, UpstreamConn};
use crate::client_conn::ClientConn;
use crate::config::{Config, InternalPaths};
use crate::error::{ProxyError, UpstreamError};
use crate::framing;
use crate::headers::{Hop, X_UPSTREAM, is_upgrade_request, set_forwarded, strip_hop_by_hop};
use crate::metrics::Metrics;
use crate::spare::SpareHead;
use crate::tunnel::tunnel;
use crate::upstream_pool::UpstreamPool;

/// What the client receives: a streamed backend body, or a small body the balancer made.
pub type ProxyBody = Either<ResponseBody, Full<Bytes>>;

/// Upper bound for `RETRY_TRIES`, so the list of tried backends fits on the stack.
const MAX_TRIES: usize = 16;

/// The forwarding service shared by all client connections of one worker.
#[derive(Debug)]
pub struct Proxy {
    /// Where requests go.
    set: Arc<BackendSet>,
    /// What is counted.
    metrics: Arc<Metrics>,
    /// This worker's connections to the backends.
    pool: Arc<UpstreamPool<RequestBody>>,
    /// Time to get a request slot, and time to response headers once the body was sent.
    upstream_timeout: Duration,
    /// Longest pause between body chunks, either way.
    body_idle_timeout: Duration,
    /// Idle limit of upgraded tunnels.
    tunnel_idle_timeout: Duration,
    /// Attempts per request.
    tries: usize,
    /// No new attempt starts after this much time since the request arrived.
    retry_deadline: Duration,
    /// This proxy's name in `Via`, and the entry it adds.
    via_name: String,
    via: HeaderValue,
    /// Whether responses name their backend in `X-Upstream`.
    expose_upstream: bool,
    /// Paths answered 404 here: the replicas' internals.
    internal_paths: InternalPaths,
}

/// One client request on its way through the phases.
struct Exchange {
    /// When it arrived.
    started: Instant,
    /// The request for the next attempt: the rewritten original, or one handed back unsent.
    request: Option<Request<RequestBody>>,
    /// A copy of the rewritten head, kept only for a replayable request, for a replay after
    /// an attempt that may have been sent (hyper keeps what it sent).
    spare: Option<SpareHead>,
    /// The client's body, shared by the attempts.
    body: BodySlot,
    /// GET, HEAD or OPTIONS: may be replayed once, with its `X-Request-Id`.
    replayable: bool,
    /// Whether the client sent no `Host` (HTTP/1.0): each attempt then names its backend.
    no_host: bool,
    /// The client side of an upgrade it asked for.
    client_upgrade: Option<OnUpgrade>,
    /// Backends tried so far, in order.
    tried: [SocketAddr; MAX_TRIES],
    /// Attempts started.
    attempts: usize,
    /// Whether the one replay after a possibly-sent failure was used.
    replayed: bool,
}

/// How an attempt ended.
enum Outcome {
    /// A response to relay, on this connection.
    Answered(Response<Incoming>, InFlight, UpstreamConn),
    /// Nothing was written: the request is back, for the next backend.
    NotSent(Request<RequestBody>, UpstreamError),
    /// The request may have reached the backend.
    Failed(UpstreamError),
    /// No slot, or no headers within `UPSTREAM_TIMEOUT`.
    TimedOut,
}

/// What [`Proxy::decide`] makes of a failed attempt.
enum Next {
    /// Try again (the exchange holds the request to send).
    Retry,
    /// Answer with this error, counted against this backend (none for the client's faults
    /// and for a replay's failure).
    Fail(ProxyError, Option<Arc<Backend>>),
}

impl Proxy {
    /// A proxy over `set` with the upstream settings from `config`, counting in `metrics`.
    /// Its connection pool belongs to the calling worker.
    pub fn new(config: &Config, set: Arc<BackendSet>, metrics: Arc<Metrics>) -> Proxy {
        let pool = UpstreamPool::new(
            config.pool_max_idle,
            config.pool_idle_timeout,
            config.connect_timeout,
            metrics.upstream_connections.clone(),
        );
        Proxy {
            set,
            metrics,
            pool,
            upstream_timeout: config.upstream_timeout,
            body_idle_timeout: config.body_idle_timeout,
            tunnel_idle_timeout: config.tunnel_idle_timeout,
            tries: (config.retry_tries as usize).clamp(1, MAX_TRIES),
            retry_deadline: config.retry_deadline,
            via: framing::via_value(&config.via_name),
            via_name: config.via_name.clone(),
            expose_upstream: config.expose_upstream,
            internal_paths: config.internal_paths.clone(),
        }
    }

    /// Proxies one request. Never fails: errors become 4xx/5xx responses.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ClientConn) -> Response<ProxyBody> {
        let mut ex = match self.prepare(req, conn) {
            Ok(ex) => ex,
            Err((refused, started)) => return self.fail(refused, None, started),
        };
        while ex.attempts < self.tries {
            if ex.attempts > 0 {
                if ex.started.elapsed() >= self.retry_deadline {
                    break;
                }
                self.metrics.retries.inc();
            }
            let Some(backend) = self.choose(&ex) else {
                break;
            };
            ex.tried[ex.attempts] = backend.addr();
            ex.attempts += 1;
            let Some(up) = ex.next_request(&backend) else {
                break;
            };
            let failed = match self.send(&backend, up, &ex.body).await {
                Outcome::Answered(resp, guard, upstream) => {
                    return self.respond(resp, guard, upstream, &mut ex, conn);
                }
                Outcome::TimedOut => {
                    let err = ProxyError::Timeout {
                        backend: backend.addr(),
                        timeout: self.upstream_timeout,
                    };
                    tracing::warn!(upstream = %backend.label(), error = %err, "upstream timeout");
                    return self.fail(err, Some(&backend), ex.started);
                }
                Outcome::NotSent(req, error) => {
                    ex.request = Some(req);
                    (error, false)
                }
                Outcome::Failed(error) => (error, true),
            };
            match self.decide(&backend, failed, &mut ex) {
                Next::Retry => {}
                Next::Fail(err, blamed) => return self.fail(err, blamed.as_ref(), ex.started),
            }
        }
        // No backend in rotation, or every attempt failed to connect (nothing was sent).
        self.fail(ProxyError::NoBackend, None, ex.started)
    }

    /// Phase 1: refuses what must not be forwarded (the replicas' internals, bad framing,
    /// loops), and rewrites the rest for the backend
    /// (hop-by-hop headers out, `X-Forwarded-*`, `Via`, framing, `X-Request-Id`).
    fn prepare(
        &self,
        mut req: Request<Incoming>,
        conn: &ClientConn,
    ) -> Result<Exchange, (ProxyError, Instant)> {
        let started = Instant::now();
        if self.internal_paths.contains(req.uri().path()) {
            return Err((ProxyError::NotFound, started));
        }
        let upgrade = is_upgrade_request(req.headers());
        // Must be taken before the request is split: it is the client side of the tunnel.
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        framing::check_request(&mut parts, &self.via_name).map_err(|e| (e, started))?;
        strip_hop_by_hop(&mut parts.headers, upgrade);
        let hop = Hop {
            client_ip: &conn.ip,
            trusted: conn.trusted,
            scheme: "http",
        };
        set_forwarded(&mut parts.headers, hop, parts.uri.authority());
        framing::add_via(&mut parts.headers, &self.via);
        let body = BodySlot::new(body, self.body_idle_timeout);
        framing::frame_body(&mut parts.headers, body.has_body());
        let replayable = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        // A replayable request always carries one id the app accepts: the client's when
        // valid, else one made here. An id the app would refuse (empty, too long, UTF-8,
        // repeated) is replaced on every method, so no replay is ever counted twice.
        request_id::ensure(&mut parts.headers, replayable);
        let no_host = !parts.headers.contains_key(HOST);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let spare = (replayable && self.tries > 1)
            .then(|| SpareHead::copy(&parts.method, &path, &parts.headers));
        let request = upstream_request(parts, path, body.attempt());
        Ok(Exchange {
            started,
            request: Some(request),
            spare,
            body,
            replayable,
            no_host,
            client_upgrade,
            tried: [SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)); MAX_TRIES],
            attempts: 0,
            replayed: false,
        })
    }

    /// Phase 2: the next backend in rotation not tried yet. A replay goes to another
    /// backend, or, with none left, to the same one again (the failed connection was
    /// dropped, so on another connection).
    fn choose(&self, ex: &Exchange) -> Option<Arc<Backend>> {
        match self.set.pick(&ex.tried[..ex.attempts]) {
            None if ex.replayed => self.set.pick(&[]),
            picked => picked,
        }
    }

    /// Phase 3: one exchange with `backend` over this worker's pool: a slot within
    /// `UPSTREAM_TIMEOUT`, then response headers within `UPSTREAM_TIMEOUT` of the body being
    /// sent. A pooled connection found closed before anything was written is replaced by a
    /// new one to the same backend, once.
    async fn send(
        &self,
        backend: &Arc<Backend>,
        up: Request<RequestBody>,
        body: &BodySlot,
    ) -> Outcome {
        let Ok(guard) = tokio::time::timeout(self.upstream_timeout, backend.start_request()).await
        else {
            return Outcome::TimedOut;
        };
        let mut conn = match self.pool.get(backend.addr()).await {
            Ok(conn) => conn,
            Err(e) => return Outcome::NotSent(up, UpstreamError::Connect(e)),
        };
        let headers_due = async {
            body.sent().await;
            tokio::time::sleep(self.upstream_timeout).await;
        };
        tokio::pin!(headers_due);
        let mut up = up;
        loop {
            let answer = tokio::select! {
                // The answer first: no random draw per poll, and an answer that came with
                // the deadline still counts.
                biased;
                answer = conn.send(up) => answer,
                () = &mut headers_due => return Outcome::TimedOut,
            };
            match answer {
                Ok(resp) => return Outcome::Answered(resp, guard, conn),
                Err(mut e) => match e.take_message() {
                    // Closed while idle in the pool: not the backend's failure.
                    Some(back) if conn.is_reused() => {
                        up = back;
                        // Boxed, as in the pool: a cold path with a large future.
                        conn = match Box::pin(self.pool.connect(backend.addr())).await {
                            Ok(fresh) => fresh,
                            Err(e) => return Outcome::NotSent(up, UpstreamError::Connect(e)),
                        };
                    }
                    Some(back) => return Outcome::NotSent(back, e.into_error().into()),
                    None => return Outcome::Failed(e.into_error().into()),
                },
            }
        }
    }

    /// Phase 4: what a failed attempt leads to. The client's own upload faults are answered
    /// at once and blame nobody; a request that was not sent goes on to the next backend; one
    /// that may have been sent is replayed once if that is safe, else answered 502.
    fn decide(
        &self,
        backend: &Arc<Backend>,
        (error, maybe_sent): (UpstreamError, bool),
        ex: &mut Exchange,
    ) -> Next {
        match ex.body.client_fault() {
            Some(ClientFault::Stalled) => return Next::Fail(ProxyError::ClientStalled, None),
            Some(ClientFault::Broken) => return Next::Fail(ProxyError::ClientBody, None),
            None => {}
        }
        if !maybe_sent {
            backend.stats.record_failure();
            self.set.eject(backend);
            tracing::warn!(upstream = %backend.label(), error = %error, "connect failed; trying next backend");
            return Next::Retry;
        }
        if ex.replayed {
            // The same request failed on a second backend: more likely the request than
            // two backends. Only the first failure counted.
            let err = ProxyError::Upstream {
                backend: backend.addr(),
                source: error,
            };
            tracing::warn!(upstream = %backend.label(), error = %err, "replay failed too; not blaming a second backend");
            return Next::Fail(err, None);
        }
        backend.stats.record_failure();
        if is_broken_connection(&error) {
            self.set.eject(backend);
        }
        if ex.replayable && ex.body.is_intact() && ex.attempts < self.tries {
            ex.replayed = true;
            tracing::warn!(upstream = %backend.label(), error = %error, "safe request failed after it may have been sent; replaying once on the next backend with the same X-Request-Id");
            return Next::Retry;
        }
        let err = ProxyError::Upstream {
            backend: backend.addr(),
            source: error,
        };
        tracing::warn!(upstream = %backend.label(), error = %err, "request failed after it may have been sent; not retried");
        Next::Fail(err, Some(Arc::clone(backend)))
    }

    /// Phase 5: turns a backend response into the client response (hop-by-hop headers out,
    /// framing, `Via`, `X-Upstream`), starts the tunnel of an upgrade, and records it.
    fn respond(
        &self,
        mut resp: Response<Incoming>,
        guard: InFlight,
        upstream: UpstreamConn,
        ex: &mut Exchange,
        conn: &ClientConn,
    ) -> Response<ProxyBody> {
        let backend = Arc::clone(guard.backend());
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            // An upgraded connection never goes back to the pool.
            drop(upstream);
            let Some(client_side) = ex.client_upgrade.take() else {
                // A 101 nobody asked for cannot be relayed: the client would not follow.
                let err = ProxyError::UnexpectedUpgrade {
                    backend: backend.addr(),
                };
                tracing::warn!(upstream = %backend.label(), error = %err, "bad backend response");
                drop(guard);
                return self.fail(err, Some(&backend), ex.started);
            };
            let upstream_side = hyper::upgrade::on(&mut resp);
            let mut guard = guard;
            guard.release_slot();
            tokio::spawn(tunnel(
                client_side,
                upstream_side,
                guard,
                Arc::clone(&conn.hold),
                self.tunnel_idle_timeout,
            ));
            strip_hop_by_hop(resp.headers_mut(), true);
            self.finish_headers(resp.headers_mut(), &backend);
            self.record(&backend, 101, ex.started);
            return resp.map(|_| Either::Right(Full::new(Bytes::new())));
        }
        framing::fix_response_length(resp.headers_mut());
        strip_hop_by_hop(resp.headers_mut(), false);
        self.finish_headers(resp.headers_mut(), &backend);
        self.record(&backend, resp.status().as_u16(), ex.started);
        let idle = self.body_idle_timeout;
        resp.map(|b| Either::Left(ResponseBody::new(b, guard, idle, upstream)))
    }

    /// Headers this hop adds to every relayed response.
    fn finish_headers(&self, headers: &mut http::HeaderMap, backend: &Backend) {
        framing::add_via(headers, &self.via);
        if self.expose_upstream {
            headers.insert(&X_UPSTREAM, backend.header_value().clone());
        }
    }

    /// Records a relayed response: its status against its backend, and the latency.
    fn record(&self, backend: &Backend, status: u16, started: Instant) {
        backend.stats.record_status(status);
        self.metrics.latency.observe(started.elapsed());
    }

    /// Counts and renders an error response; `backend` is the one to count it against (none
    /// for the client's own faults).
    fn fail(
        &self,
        err: ProxyError,
        backend: Option<&Arc<Backend>>,
        started: Instant,
    ) -> Response<ProxyBody> {
        match backend {
            Some(b) => b.stats.record_status(err.status().as_u16()),
            None if err.is_client_fault() => {
                self.metrics.client_errors.inc();
            }
            None => {
                self.metrics
                    .unrouted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.metrics.latency.observe(started.elapsed());
        err.to_response().map(Either::Right)
    }
}

impl Exchange {
    /// The request for an attempt on `backend`: the one in hand (not sent yet), or for a
    /// replay one rebuilt from the spare copy. `None` when there is nothing left to send.
    fn next_request(&mut self, backend: &Backend) -> Option<Request<RequestBody>> {
        let mut req = match self.request.take() {
            Some(req) => req,
            None => {
                let (method, path, headers) = self.spare.take()?.restore()?;
                let mut parts = Request::new(()).into_parts().0;
                parts.method = method;
                parts.headers = headers;
                upstream_request(parts, path, self.body.attempt())
            }
        };
        if self.no_host {
            // An HTTP/1.1 request needs a Host; name the backend, as any client would.
            req.headers_mut()
                .insert(HOST, backend.header_value().clone());
        }
        Some(req)
    }
}

/// The request a backend gets: origin-form target, HTTP/1.1 whatever the client used (an
/// HTTP/1.0 client still gets a 1.0 answer from our server side), the rewritten headers.
fn upstream_request(parts: Parts, path: PathAndQuery, body: RequestBody) -> Request<RequestBody> {
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = Uri::from(path);
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = parts.headers;
    up
}

/// True if the error means the backend connection broke (reset, closed mid-message), which
/// points at a dying backend and is worth a passive ejection. Called only once the client's
/// body is known to be fine, so an error in the chain is the backend side's.
fn is_broken_connection(error: &UpstreamError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = match error {
        UpstreamError::Connect(_) => return true,
        UpstreamError::Http(h) => Some(h),
    };
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | ConnectionRefused
            ) {
                return true;
            }
        }
        source = e.source();
    }
    false
}
