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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::backends::{Backend, BackendSet, InFlight};

use crate::body::{BodySlot, RequestBody, ResponseBody};
use crate::config::Config;
use crate::error::ProxyError;
use crate::headers::{X_UPSTREAM, is_upgrade_request, set_forwarded, strip_hop_by_hop};

/// What the client receives: a streamed backend body, or a small body the balancer made.
pub type ProxyBody = Either<ResponseBody, Full<Bytes>>;

/// Upper bound for `RETRY_TRIES`, so the list of tried backends fits on the stack.
const MAX_TRIES: usize = 16;

/// The forwarding service shared by all client connections.
#[derive(Debug)]
pub struct Proxy {
    /// Where requests go.
    set: Arc<BackendSet>,
    /// Pooled HTTP/1.1 client to the backends.
    client: Client<HttpConnector, RequestBody>,
    /// Time to response headers, per attempt.
    upstream_timeout: Duration,
    /// Attempts per request.
    tries: usize,
    /// No new attempt starts after this much time since the request arrived.
    retry_deadline: Duration,
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
            tries: (config.retry_tries as usize).clamp(1, MAX_TRIES),
            retry_deadline: config.retry_deadline,
        }
    }

    /// Proxies one request. Never fails: errors become 502/503/504 responses.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        client_ip: &HeaderValue,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let upgrade = is_upgrade_request(req.headers());
        // Must be taken before the request is split: it is the client side of the tunnel.
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        set_forwarded(&mut parts.headers, client_ip, parts.uri.authority());
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let body = BodySlot::new(body);
        let replayable = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        // A replayable request always carries one id the app accepts: the client's when
        // valid, else one made here. An id the app would refuse (empty, too long, UTF-8,
        // repeated) is replaced on every method, so no replay is ever counted twice.
        request_id::ensure(&mut parts.headers, replayable);

        let mut tried = [SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)); MAX_TRIES];
        let mut client_upgrade = client_upgrade;
        for attempt in 0..self.tries {
            if attempt > 0 {
                if started.elapsed() >= self.retry_deadline {
                    break;
                }
                self.set.metrics().retries.inc();
            }
            let Some(backend) = self.set.pick(&tried[..attempt]) else {
                break;
            };
            tried[attempt] = backend.addr();
            // The headers are needed again only if this attempt fails to connect; the last
            // attempt can give them away instead of copying.
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

            // Waiting for a free slot on a saturated backend counts against the timeout.
            let exchange = async {
                let guard = backend.start_request().await;
                (guard, self.client.request(up).await)
            };
            match tokio::time::timeout(self.upstream_timeout, exchange).await {
                Ok((guard, Ok(resp))) => {
                    return self.respond(resp, guard, client_upgrade.take(), started);
                }
                Ok((guard, Err(error))) => {
                    drop(guard);
                    backend.stats.record_failure();
                    let connect = error.is_connect();
                    if connect || is_broken_connection(&error) {
                        self.set.eject(&backend);
                    }
                    if connect && body.is_intact() {
                        tracing::warn!(upstream = %backend.label(), error = %error, "connect failed; trying next backend");
                        continue;
                    }
                    if replayable && body.is_intact() && attempt + 1 < self.tries {
                        tracing::warn!(upstream = %backend.label(), error = %error, "safe request failed after it may have been sent; replaying on the next backend with the same X-Request-Id");
                        continue;
                    }
                    let err = ProxyError::Upstream {
                        backend: backend.addr(),
                        source: error,
                    };
                    tracing::warn!(upstream = %backend.label(), error = %err, "request failed after it may have been sent; not retried");
                    return self.fail(err, Some(&backend), started);
                }
                Err(_) => {
                    let err = ProxyError::Timeout {
                        backend: backend.addr(),
                        timeout: self.upstream_timeout,
                    };
                    tracing::warn!(upstream = %backend.label(), error = %err, "upstream timeout");
                    return self.fail(err, Some(&backend), started);
                }
            }
        }
        // No backend in rotation, or every attempt failed to connect (nothing was sent).
        self.fail(ProxyError::NoBackend, None, started)
    }

    /// Turns a backend response into the client response.
    fn respond(
        &self,
        mut resp: Response<Incoming>,
        mut guard: InFlight,
        client_upgrade: Option<OnUpgrade>,
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
            guard.release_slot();
            tokio::spawn(tunnel(client_side, upstream_side, guard));
            strip_hop_by_hop(resp.headers_mut(), true);
            resp.headers_mut()
                .insert(&X_UPSTREAM, backend.header_value().clone());
            backend.stats.record_status(101);
            self.set.metrics().latency.observe(started.elapsed());
            return resp.map(|_| Either::Right(Full::new(Bytes::new())));
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        resp.headers_mut()
            .insert(&X_UPSTREAM, backend.header_value().clone());
        backend.stats.record_status(resp.status().as_u16());
        self.set.metrics().latency.observe(started.elapsed());
        resp.map(|b| Either::Left(ResponseBody::new(b, guard)))
    }

    /// Counts and renders an error response.
    fn fail(
        &self,
        err: ProxyError,
        backend: Option<&Arc<Backend>>,
        started: Instant,
    ) -> Response<ProxyBody> {
        match backend {
            Some(b) => b.stats.record_status(err.status().as_u16()),
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
/// points at a dying backend and is worth a passive ejection.
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

/// Copies bytes both ways between an upgraded client and backend connection (e.g. WebSocket).
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, guard: InFlight) {
    let label = guard.backend().label().to_owned();
    match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => {
            let mut c = TokioIo::new(c);
            let mut u = TokioIo::new(u);
            match tokio::io::copy_bidirectional(&mut c, &mut u).await {
                Ok((up, down)) => {
                    tracing::debug!(upstream = %label, bytes_up = up, bytes_down = down, "tunnel closed")
                }
                Err(e) => tracing::debug!(upstream = %label, error = %e, "tunnel ended with error"),
            }
        }
        (c, u) => {
            tracing::warn!(upstream = %label, client_ok = c.is_ok(), upstream_ok = u.is_ok(), "upgrade failed");
        }
    }
    drop(guard);
}
