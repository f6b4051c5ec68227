//! Forwarding one client request to a backend, in named phases as pingora structures a
//! proxy: [`Proxy::prepare`] checks and rewrites the request, [`Proxy::choose`] picks the
//! upstream, [`Proxy::send`] makes one attempt over the worker's pool
//! ([`crate::upstream_pool`]), [`Proxy::decide`] turns every outcome of an attempt into the
//! next step (relay, tunnel, retry, or an answer made here), and [`Proxy::respond`],
//! [`Proxy::tunnel`] and [`Proxy::fail`] rewrite the response and record it (metrics, logs).
//! The engine here sends and retries; the policy (what a failure leads to, and whom it is
//! blamed on) is [`crate::verdict`]'s, applied in [`Proxy::decide`] only.
//!
//! "Was anything sent?" is answered in one place, `Exchange::failed`, for every failed
//! attempt (a wait for a request slot that timed out included): nothing (the request is in
//! hand: no slot, no connection, or hyper handed it back unsent), at most the head (the body
//! untouched: the whole request can go again), or some of the body (nothing can carry it
//! again), and then whether all of it.
//!
//! Retry policy (see [`crate::verdict`]). A second attempt, on the next backend, is made when:
//! - nothing reached the backend: no request slot within `UPSTREAM_TIMEOUT` (load: not
//!   blamed), the TCP connect failed (refused, timed out: blamed), any method;
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
//! [`BackendSet::eject`]) only for what it did: a refused or timed-out connect, a reset or
//! truncated response, a malformed one, a stall. A client's own fault (its upload reset,
//! truncated, malformed or stalled) gets a 4xx and touches no backend. A backend that stops
//! taking an upload (it answered early, or closed) is not at fault either: its answer is
//! relayed ([`crate::upstream_io`] keeps the exchange reading after the refused write), and
//! without an answer the client gets a 502 that ejects nothing. One request cannot poison
//! the rotation: a GET that fails after being sent is replayed once; if the replay fails
//! too, the client gets 502 and only the first backend's failure counts.
//!
//! Timeouts. Waiting for a request slot and for the response headers are bounded by
//! `UPSTREAM_TIMEOUT` each; the header wait starts once the request body was sent, or the
//! backend refused the rest of it (a slow upload is bounded by `BODY_IDLE_TIMEOUT` instead,
//! and is the client's fault).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, UPGRADE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::backend_set::{Backend, BackendSet, InFlight};

use crate::body::{BodySlot, RequestBody, ResponseBody, UpstreamConn};
use crate::client_conn::ClientConn;
use crate::config::{Config, InternalPaths, UpgradeProtocols};
use crate::error::{ProxyError, UpstreamError};
use crate::framing;
use crate::headers::{Hop, X_UPSTREAM, set_forwarded, strip_hop_by_hop};
use crate::metrics::Metrics;
use crate::spare::SpareHead;
use crate::tls::HttpsRedirect;
use crate::tunnel::tunnel;
use crate::upstream_pool::UpstreamPool;
use crate::verdict::{self, Blame, Cause, Facts, Reached, Reply, Step, Verdict};

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
    /// Protocols a client may upgrade to.
    upgrades: UpgradeProtocols,
    /// Most header lines a forwarded request may carry (`UPSTREAM_MAX_HEADERS`).
    upstream_max_headers: usize,
    /// `HTTPS_REDIRECT`: where plain requests are sent instead of being forwarded.
    redirect: Option<HttpsRedirect>,
}

/// The client side of an upgrade it asked for, and what was offered to the backend.
struct Upgrade {
    /// The client's connection, once hyper hands it over.
    client: OnUpgrade,
    /// The `Upgrade` value the backend got.
    offered: HeaderValue,
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
    /// Whether the client sent no `Host` (HTTP/1.0): each attempt then names its backend.
    no_host: bool,
    /// The upgrade the client asked for, if honoured.
    upgrade: Option<Upgrade>,
    /// Backends tried so far, in order.
    tried: [SocketAddr; MAX_TRIES],
    /// Attempts started.
    attempts: usize,
    /// Whether the one replay after a possibly-sent failure was used.
    replayed: bool,
    /// The answer when no attempt is left, if not "no backend" (503).
    gave_up: Option<ProxyError>,
}

/// How one attempt ended.
// The large variant is the common one: boxing it would allocate on every request.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// A response, on this connection.
    Answered(Response<Incoming>, InFlight, UpstreamConn),
    /// No response: why, and how far the request got (decided by `Exchange::failed`).
    Failed(Cause, Reached, Option<UpstreamError>),
}

/// What [`Proxy::decide`] makes of an attempt.
enum Next {
    /// Relay this response.
    Relay(Response<Incoming>, InFlight, UpstreamConn),
    /// Relay this 101 and join the client's side of the upgrade to the backend's.
    Tunnel(Response<Incoming>, InFlight, OnUpgrade),
    /// Try the next backend (the exchange holds the request to send).
    Retry,
    /// Try the same backend again on a new connection.
    Reconnect,
    /// Answer with this error, counted against this backend (none for the client's faults
    /// and what is nobody's).
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
            config.max_header_size as usize,
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
            upgrades: config.upgrade_protocols.clone(),
            upstream_max_headers: config.upstream_max_headers as usize,
            redirect: config
                .tls
                .tls_listen_addr
                .filter(|_| config.tls.https_redirect)
                .map(|addr| HttpsRedirect::to_port(addr.port())),
        }
    }

    /// Proxies one request. Never fails: errors become 4xx/5xx responses.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ClientConn) -> Response<ProxyBody> {
        if let Some(redirect) = &self.redirect
            && conn.scheme == "http"
        {
            return redirect.respond(&req).map(Either::Right);
        }
        let mut ex = match self.prepare(req, conn) {
            Ok(ex) => ex,
            Err((refused, started)) => return self.fail(refused, None, started),
        };
        // Set when the last attempt is to be made again on a new connection.
        let mut again: Option<Arc<Backend>> = None;
        loop {
            let (backend, fresh) = match again.take() {
                Some(backend) => (backend, true),
                None => match self.next_backend(&mut ex) {
                    Some(backend) => (backend, false),
                    None => break,
                },
            };
            let Some(up) = ex.next_request(&backend) else {
                break;
            };
            let attempt = self.send(&backend, up, fresh, &mut ex).await;
            match self.decide(&backend, attempt, &mut ex) {
                Next::Relay(resp, guard, upstream) => {
                    return self.respond(resp, guard, upstream, &ex);
                }
                Next::Tunnel(resp, guard, client) => {
                    return self.tunnel(resp, guard, client, &ex, conn);
                }
                Next::Retry => {}
                Next::Reconnect => again = Some(backend),
                Next::Fail(err, blamed) => return self.fail(err, blamed.as_ref(), ex.started),
            }
        }
        // No backend in rotation, every attempt failed to connect (nothing was sent), or
        // every backend was busy.
        let err = ex.gave_up.take().unwrap_or(ProxyError::NoBackend);
        self.fail(err, None, ex.started)
    }

    /// Phase 1: refuses what must not be forwarded (the replicas' internals, bad framing,
    /// a bad `Host` or request-target, loops, too many headers), and rewrites the rest for
    /// the backend (hop-by-hop headers out, `X-Forwarded-*`, `Via`, framing,
    /// `X-Request-Id`).
    fn prepare(
        &self,
        mut req: Request<Incoming>,
        conn: &ClientConn,
    ) -> Result<Exchange, (ProxyError, Instant)> {
        let started = Instant::now();
        let refuse = |e| (e, started);
        let offered = self.upgrades.offered(req.version(), req.headers());
        // Must be taken before the request is split: it is the client side of the tunnel.
        let upgrade = offered.map(|offered| Upgrade {
            client: hyper::upgrade::on(&mut req),
            offered,
        });
        let (mut parts, body) = req.into_parts();
        framing::check_request(&mut parts, &self.via_name).map_err(refuse)?;
        if self.internal_paths.contains(parts.uri.path()) {
            return Err(refuse(ProxyError::NotFound));
        }
        if strip_hop_by_hop(&mut parts.headers, upgrade.is_some()) {
            return Err(refuse(ProxyError::BadRequest(
                "400 Bad Request: Connection lists Host\n",
            )));
        }
        if let Some(upgrade) = &upgrade {
            parts.headers.insert(UPGRADE, upgrade.offered.clone());
        }
        let hop = Hop {
            client_ip: &conn.ip,
            trusted: conn.trusted,
            scheme: conn.scheme,
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
        // What the backend will get, the `Host` named for an HTTP/1.0 client included.
        if parts.headers.len() + usize::from(no_host) > self.upstream_max_headers {
            return Err(refuse(ProxyError::TooManyHeaders));
        }
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
            no_host,
            upgrade,
            tried: [SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)); MAX_TRIES],
            attempts: 0,
            replayed: false,
            gave_up: None,
        })
    }

    /// The backend for the next attempt, while attempts and the retry deadline are left;
    /// counts it.
    fn next_backend(&self, ex: &mut Exchange) -> Option<Arc<Backend>> {
        if ex.attempts >= self.tries {
            return None;
        }
        if ex.attempts > 0 {
            if ex.started.elapsed() >= self.retry_deadline {
                return None;
            }
            self.metrics.retries.inc();
        }
        let backend = self.choose(ex)?;
        ex.tried[ex.attempts] = backend.addr();
        ex.attempts += 1;
        Some(backend)
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

    /// Phase 3: one attempt with `backend` over this worker's pool (a new connection when
    /// `fresh`): a slot within `UPSTREAM_TIMEOUT`, then response headers within
    /// `UPSTREAM_TIMEOUT` of the body being sent (or refused). Decides nothing: every way it
    /// can end is reported to [`Proxy::decide`].
    async fn send(
        &self,
        backend: &Arc<Backend>,
        up: Request<RequestBody>,
        fresh: bool,
        ex: &mut Exchange,
    ) -> Attempt {
        let Ok(guard) = tokio::time::timeout(self.upstream_timeout, backend.start_request()).await
        else {
            return ex.failed(Cause::SlotTimeout, Some(up), false, None);
        };
        let conn = if fresh {
            // A fresh connection is the cold path, and its future is large: behind a pointer,
            // it does not make every attempt's future that large (as in the pool).
            Box::pin(self.pool.connect(backend.addr())).await
        } else {
            self.pool.get(backend.addr()).await
        };
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                return ex.failed(
                    Cause::Connect,
                    Some(up),
                    false,
                    Some(UpstreamError::Connect(e)),
                );
            }
        };
        let answer = {
            let (sender, refusal) = conn.split();
            let body = &ex.body;
            let headers_due = async {
                tokio::select! {
                    biased;
                    () = body.sent() => {}
                    () = refusal.refused() => {}
                }
                tokio::time::sleep(self.upstream_timeout).await;
            };
            tokio::pin!(headers_due);
            tokio::select! {
                // The answer first: no random draw per poll, and an answer that came with
                // the deadline still counts.
                biased;
                answer = sender.try_send_request(up) => Some(answer),
                () = &mut headers_due => None,
            }
        };
        let refused = conn.split().1.is_refused();
        match answer {
            Some(Ok(resp)) => Attempt::Answered(resp, guard, conn),
            None => ex.failed(Cause::HeaderTimeout, None, refused, None),
            Some(Err(mut e)) => {
                let back = e.take_message();
                let error = e.into_error();
                let cause = if back.is_some() && conn.is_reused() {
                    // Closed while idle in the pool: nothing was written.
                    Cause::Stale
                } else {
                    cause_of(&error)
                };
                ex.failed(cause, back, refused, Some(error.into()))
            }
        }
    }

    /// Phase 4: the one decision on every attempt. A response is relayed (a 101 tunnelled
    /// if it switches to what the client was offered); a failure is judged by
    /// [`verdict::judge`], its blame applied here, and turned into the next step.
    fn decide(&self, backend: &Arc<Backend>, attempt: Attempt, ex: &mut Exchange) -> Next {
        let (cause, reached, error) = match attempt {
            Attempt::Answered(resp, guard, upstream) => {
                if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                    return Next::Relay(resp, guard, upstream);
                }
                // An upgraded connection never goes back to the pool.
                drop(upstream);
                return match ex.upgrade.take() {
                    Some(up)
                        if UpgradeProtocols::switched_as_offered(&up.offered, resp.headers()) =>
                    {
                        Next::Tunnel(resp, guard, up.client)
                    }
                    // A 101 nobody asked for cannot be relayed: the client would not follow.
                    // One to a protocol not offered would open a tunnel past the allow-list.
                    _ => {
                        let err = ProxyError::UnexpectedUpgrade {
                            backend: backend.addr(),
                        };
                        tracing::warn!(upstream = %backend.label(), error = %err, "bad backend response");
                        Next::Fail(err, Some(Arc::clone(backend)))
                    }
                };
            }
            Attempt::Failed(cause, reached, error) => (cause, reached, error),
        };
        let facts = Facts {
            client_fault: ex.body.client_fault(),
            replayable: ex.spare.is_some() && ex.attempts < self.tries,
            replayed: ex.replayed,
        };
        let Verdict { step, blame } = verdict::judge(cause, reached, facts);
        if blame >= Blame::Failure {
            backend.stats.record_failure();
        }
        if blame == Blame::Eject {
            self.set.eject(backend);
        }
        if blame >= Blame::Failure {
            match &error {
                Some(e) => backend.notes.error(e),
                None => backend.notes.error(format_args!("{cause:?}")),
            }
        }
        let shown = error
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        let label = backend.label();
        match step {
            Step::Retry => {
                if cause == Cause::SlotTimeout {
                    tracing::warn!(upstream = %label, timeout = ?self.upstream_timeout, "no request slot in time; trying the next backend");
                    ex.gave_up = Some(ProxyError::SlotTimeout {
                        backend: backend.addr(),
                        timeout: self.upstream_timeout,
                    });
                } else {
                    tracing::warn!(upstream = %label, error = shown, "nothing was sent; trying the next backend");
                }
                Next::Retry
            }
            Step::Reconnect => Next::Reconnect,
            Step::Replay => {
                ex.replayed = true;
                tracing::warn!(upstream = %label, error = shown, "safe request failed after it may have been sent; replaying once on the next backend with the same X-Request-Id");
                Next::Retry
            }
            Step::Answer(reply) => {
                let err = match (reply, error) {
                    (Reply::Client(fault), _) => match fault {
                        crate::body::ClientFault::Stalled => ProxyError::ClientStalled,
                        crate::body::ClientFault::Broken => ProxyError::ClientBody,
                    },
                    // Every cause answered 502 carries its error; a 504 carries none.
                    (Reply::GatewayTimeout, _) | (Reply::BadGateway, None) => ProxyError::Timeout {
                        backend: backend.addr(),
                        timeout: self.upstream_timeout,
                    },
                    (Reply::BadGateway, Some(source)) => ProxyError::Upstream {
                        backend: backend.addr(),
                        source,
                    },
                };
                match (reply, reached, blame) {
                    (Reply::Client(_), _, _) => {}
                    (Reply::GatewayTimeout, _, _) => {
                        tracing::warn!(upstream = %label, error = %err, "upstream timeout");
                    }
                    (_, Reached::Body { whole: false }, _) => {
                        tracing::warn!(upstream = %label, error = %err, "backend stopped taking the request body and sent no answer; not blamed");
                    }
                    (_, _, Blame::Nobody) => {
                        tracing::warn!(upstream = %label, error = %err, "replay failed too; not blaming a second backend");
                    }
                    _ => {
                        tracing::warn!(upstream = %label, error = %err, "request failed after it may have been sent; not retried");
                    }
                }
                Next::Fail(err, (blame != Blame::Nobody).then(|| Arc::clone(backend)))
            }
        }
    }

    /// Phase 5: turns a backend response into the client response (hop-by-hop headers out,
    /// framing, `Via`, `X-Upstream`), and records it.
    fn respond(
        &self,
        mut resp: Response<Incoming>,
        guard: InFlight,
        upstream: UpstreamConn,
        ex: &Exchange,
    ) -> Response<ProxyBody> {
        let backend = Arc::clone(guard.backend());
        framing::fix_response_length(resp.headers_mut());
        strip_hop_by_hop(resp.headers_mut(), false);
        self.finish_headers(resp.headers_mut(), &backend);
        self.record(&backend, resp.status().as_u16(), ex.started);
        let idle = self.body_idle_timeout;
        resp.map(|b| Either::Left(ResponseBody::new(b, guard, idle, upstream)))
    }

    /// Phase 5 of an upgrade: relays the 101 and starts the tunnel between the client's
    /// connection and the backend's, which holds the client connection's hold and the
    /// backend's in-flight count (not its request slot) for its whole life.
    fn tunnel(
        &self,
        mut resp: Response<Incoming>,
        mut guard: InFlight,
        client: OnUpgrade,
        ex: &Exchange,
        conn: &ClientConn,
    ) -> Response<ProxyBody> {
        let backend = Arc::clone(guard.backend());
        let upstream_side = hyper::upgrade::on(&mut resp);
        guard.release_slot();
        tokio::spawn(tunnel(
            client,
            upstream_side,
            guard,
            Arc::clone(&conn.hold),
            self.tunnel_idle_timeout,
        ));
        strip_hop_by_hop(resp.headers_mut(), true);
        self.finish_headers(resp.headers_mut(), &backend);
        self.record(&backend, 101, ex.started);
        resp.map(|_| Either::Right(Full::new(Bytes::new())))
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
            Some(b) => {
                b.stats.record_status(err.status().as_u16());
                b.notes.error(&err);
            }
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
    /// A failed attempt, with the one answer to "was anything sent?": nothing when the
    /// request is back in hand (`handed_back`: no slot, no connection, or hyper returned it
    /// unsent), else at most the head while the body is untouched, else some of the body,
    /// and all of it only if hyper took the whole body and the backend `refused` no write
    /// (hyper buffers: a body handed over whole may still not have gone out).
    fn failed(
        &mut self,
        cause: Cause,
        handed_back: Option<Request<RequestBody>>,
        refused: bool,
        error: Option<UpstreamError>,
    ) -> Attempt {
        let reached = match handed_back {
            Some(request) => {
                self.request = Some(request);
                Reached::Nothing
            }
            None if self.body.is_intact() => Reached::Head,
            None => Reached::Body {
                whole: self.body.is_sent() && !refused,
            },
        };
        Attempt::Failed(cause, reached, error)
    }

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

/// What a failed exchange says about the backend: a too-large response head, a broken
/// connection (reset, closed mid-message: a dying backend, worth an ejection), or a malformed
/// response. The client's own upload faults are told apart before this matters
/// ([`crate::verdict`]).
fn cause_of(error: &hyper::Error) -> Cause {
    if error.is_parse_too_large() {
        return Cause::HeadTooLarge;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return Cause::Broken;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | ConnectionRefused
            ) {
                return Cause::Broken;
            }
        }
        source = e.source();
    }
    Cause::Malformed
}
