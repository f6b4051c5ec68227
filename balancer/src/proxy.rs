//! Forwarding one client request to a backend: pick, rewrite headers, send, retry only where
//! safe, and stream the answer back.
//!
//! Retry policy. A second attempt, on the next backend, is made when:
//! - the TCP connect failed (refused, timed out): any method, nothing was sent;
//! - hyper-util's own retry when a pooled connection turned out closed before the request was
//!   written (`retry_canceled_requests`), which covers a backend closing an idle connection;
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
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::backends::{Backend, BackendSet, InFlight};

use crate::body::{BodySlot, ClientFault, RequestBody, ResponseBody};
use crate::client_conn::ClientConn;
use crate::config::Config;
use crate::error::ProxyError;
use crate::framing;
use crate::headers::{Hop, X_UPSTREAM, is_upgrade_request, set_forwarded, strip_hop_by_hop};
use crate::tunnel::tunnel;

/// What the client receives: a streamed backend body, or a small body the balancer made.
pub type ProxyBody = Either<ResponseBody, Full<Bytes>>;

/// Upper bound for `RETRY_TRIES`, so the list of tried backends fits on the stack.
const MAX_TRIES: usize = 16;

/// The forwarding service shared by all client connections of one worker.
#[derive(Debug)]
pub struct Proxy {
    /// Where requests go.
    set: Arc<BackendSet>,
    /// Pooled HTTP/1.1 client to the backends.
    client: Client<HttpConnector, RequestBody>,
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
}

/// How an attempt ended.
enum Attempted {
    /// A response to relay.
    Answered(Response<Incoming>, InFlight),
    /// Nothing to relay; the error says why.
    Failed(hyper_util::client::legacy::Error),
    /// No slot, or no headers within `UPSTREAM_TIMEOUT`.
    TimedOut,
}

impl Proxy {
    /// A proxy over `set` with the client settings from `config`.
    pub fn new(config: &Config, set: Arc<BackendSet>) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .retry_canceled_requests(true)
            .build(connector);
        Proxy {
            set,
            client,
            upstream_timeout: config.upstream_timeout,
            body_idle_timeout: config.body_idle_timeout,
            tunnel_idle_timeout: config.tunnel_idle_timeout,
            tries: (config.retry_tries as usize).clamp(1, MAX_TRIES),
            retry_deadline: config.retry_deadline,
            via: framing::via_value(&config.via_name),
            via_name: config.via_name.clone(),
            expose_upstream: config.expose_upstream,
        }
    }

    /// Proxies one request. Never fails: errors become 4xx/5xx responses.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        conn: &ClientConn,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let upgrade = is_upgrade_request(req.headers());
        // Must be taken before the request is split: it is the client side of the tunnel.
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        if let Err(refused) = framing::check_request(&mut parts, &self.via_name) {
            return self.fail(refused, None, started);
        }
        strip_hop_by_hop(&mut parts.headers, upgrade);
        let hop = Hop {
            client_ip: &conn.ip,
            trusted: conn.trusted,
            scheme: "http",
        };
        set_forwarded(&mut parts.headers, hop, parts.uri.authority());
        framing::add_via(&mut parts.headers, &self.via);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let body = BodySlot::new(body, self.body_idle_timeout);
        framing::frame_body(&mut parts.headers, body.has_body());
        let replayable = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        // A replayable request always carries one id the app accepts: the client's when
        // valid, else one made here. An id the app would refuse (empty, too long, UTF-8,
        // repeated) is replaced on every method, so no replay is ever counted twice.
        request_id::ensure(&mut parts.headers, replayable);

        let mut tried = [SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)); MAX_TRIES];
        let mut client_upgrade = client_upgrade;
        // A request may be replayed once after failing where it may have been sent.
        let mut replayed = false;
        for attempt in 0..self.tries {
            if attempt > 0 {
                if started.elapsed() >= self.retry_deadline {
                    break;
                }
                self.set.metrics().retries.inc();
            }
            // A replay goes to another backend, or, with none left, to the same one over a
            // fresh connection (a backend that closed a kept-alive connection under us).
            let picked = self.set.pick(&tried[..attempt]);
            let picked = match picked {
                None if replayed => self.set.pick(&[]),
                picked => picked,
            };
            let Some(backend) = picked else {
                break;
            };
            tried[attempt] = backend.addr();
            // The headers are needed again only if this attempt fails; the last attempt can
            // give them away instead of copying.
            let headers = if attempt + 1 == self.tries {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(backend.authority().clone());
            uri.path_and_query = Some(path.clone());
            let mut up = Request::new(body.attempt());
            *up.method_mut() = parts.method.clone();
            // A valid scheme + authority + path always forms a URI.
            *up.uri_mut() = Uri::from_parts(uri).unwrap_or_default();
            // Backends speak HTTP/1.1 whatever the client used (an HTTP/1.0 client still gets
            // a 1.0 answer from our server side).
            *up.version_mut() = Version::HTTP_11;
            *up.headers_mut() = headers;

            let error = match self.attempt(&backend, up, &body).await {
                Attempted::Answered(resp, guard) => {
                    return self.respond(resp, guard, client_upgrade.take(), conn, started);
                }
                Attempted::TimedOut => {
                    let err = ProxyError::Timeout {
                        backend: backend.addr(),
                        timeout: self.upstream_timeout,
                    };
                    tracing::warn!(upstream = %backend.label(), error = %err, "upstream timeout");
                    return self.fail(err, Some(&backend), started);
                }
                Attempted::Failed(error) => error,
            };
            // The client's own upload failed: its fault, not the backend's.
            match body.client_fault() {
                Some(ClientFault::Stalled) => {
                    return self.fail(ProxyError::ClientStalled, None, started);
                }
                Some(ClientFault::Broken) => {
                    return self.fail(ProxyError::ClientBody, None, started);
                }
                None => {}
            }
            let connect = error.is_connect();
            if connect && body.is_intact() {
                backend.stats.record_failure();
                self.set.eject(&backend);
                tracing::warn!(upstream = %backend.label(), error = %error, "connect failed; trying next backend");
                continue;
            }
            if replayed {
                // The same request failed on a second backend: more likely the request than
                // two backends. Only the first failure counted.
                let err = ProxyError::Upstream {
                    backend: backend.addr(),
                    source: error,
                };
                tracing::warn!(upstream = %backend.label(), error = %err, "replay failed too; not blaming a second backend");
                return self.fail(err, None, started);
            }
            backend.stats.record_failure();
            if connect || is_broken_connection(&error) {
                self.set.eject(&backend);
            }
            if replayable && body.is_intact() && attempt + 1 < self.tries {
                replayed = true;
                tracing::warn!(upstream = %backend.label(), error = %error, "safe request failed after it may have been sent; replaying once on the next backend with the same X-Request-Id");
                continue;
            }
            let err = ProxyError::Upstream {
                backend: backend.addr(),
                source: error,
            };
            tracing::warn!(upstream = %backend.label(), error = %err, "request failed after it may have been sent; not retried");
            return self.fail(err, Some(&backend), started);
        }
        // No backend in rotation, or every attempt failed to connect (nothing was sent).
        self.fail(ProxyError::NoBackend, None, started)
    }

    /// One exchange with `backend`: a slot within `UPSTREAM_TIMEOUT`, then response headers
    /// within `UPSTREAM_TIMEOUT` of the body being sent.
    async fn attempt(
        &self,
        backend: &Arc<Backend>,
        up: Request<RequestBody>,
        body: &BodySlot,
    ) -> Attempted {
        let Ok(guard) = tokio::time::timeout(self.upstream_timeout, backend.start_request()).await
        else {
            return Attempted::TimedOut;
        };
        let headers_due = async {
            body.sent().await;
            tokio::time::sleep(self.upstream_timeout).await;
        };
        tokio::select! {
            answer = self.client.request(up) => match answer {
                Ok(resp) => Attempted::Answered(resp, guard),
                Err(error) => Attempted::Failed(error),
            },
            () = headers_due => Attempted::TimedOut,
        }
    }

    /// Turns a backend response into the client response.
    fn respond(
        &self,
        mut resp: Response<Incoming>,
        guard: InFlight,
        client_upgrade: Option<OnUpgrade>,
        conn: &ClientConn,
        started: Instant,
    ) -> Response<ProxyBody> {
        let backend = Arc::clone(guard.backend());
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client_side) = client_upgrade else {
                // A 101 nobody asked for cannot be relayed: the client would not follow.
                let err = ProxyError::UnexpectedUpgrade {
                    backend: backend.addr(),
                };
                tracing::warn!(upstream = %backend.label(), error = %err, "bad backend response");
                drop(guard);
                return self.fail(err, Some(&backend), started);
            };
            let upstream_side = hyper::upgrade::on(&mut resp);
            let mut guard = guard;
            guard.release_slot();
            tokio::spawn(tunnel(
                client_side,
                upstream_side,
                guard,
                Arc::clone(&conn.permit),
                self.tunnel_idle_timeout,
            ));
            strip_hop_by_hop(resp.headers_mut(), true);
            self.finish_headers(resp.headers_mut(), &backend);
            backend.stats.record_status(101);
            self.set.metrics().latency.observe(started.elapsed());
            return resp.map(|_| Either::Right(Full::new(Bytes::new())));
        }
        framing::fix_response_length(resp.headers_mut());
        strip_hop_by_hop(resp.headers_mut(), false);
        self.finish_headers(resp.headers_mut(), &backend);
        backend.stats.record_status(resp.status().as_u16());
        self.set.metrics().latency.observe(started.elapsed());
        let idle = self.body_idle_timeout;
        resp.map(|b| Either::Left(ResponseBody::new(b, guard, idle)))
    }

    /// Headers this hop adds to every relayed response.
    fn finish_headers(&self, headers: &mut http::HeaderMap, backend: &Backend) {
        framing::add_via(headers, &self.via);
        if self.expose_upstream {
            headers.insert(&X_UPSTREAM, backend.header_value().clone());
        }
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
                self.set.metrics().client_errors.inc();
            }
            None => {
                self.set
                    .metrics()
                    .unrouted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.set.metrics().latency.observe(started.elapsed());
        err.to_response().map(Either::Right)
    }
}

/// True if the error means the backend connection broke (reset, closed mid-message), which
/// points at a dying backend and is worth a passive ejection. Called only once the client's
/// body is known to be fine, so an error in the chain is the backend side's.
fn is_broken_connection(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
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
