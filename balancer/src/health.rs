//! Active health checks: `GET /readyz` (configurable) on every backend.
//!
//! Checks use their own client with no idle pool, so each one proves that the backend still
//! accepts connections, not just that an old pooled connection is open.
//!
//! Rise and fall (as in HAProxy): a backend leaves the rotation after `HEALTH_FALL` failed
//! checks in a row and comes back after `HEALTH_RISE` passing ones, so one lost probe does
//! not take a backend out and one lucky probe does not bring a flapping one back. A backend
//! never in rotation yet (just discovered) enters on its first passing check.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::backend_set::{Backend, BackendSet};

/// The header a replica names itself in (the app sets it on every answer).
const SERVED_BY: &str = "x-served-by";

/// Runs health checks against backends.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    /// Fresh connection per check.
    client: Client<HttpConnector, Empty<Bytes>>,
    /// Path to probe, e.g. `/readyz`.
    path: http::uri::PathAndQuery,
    /// A check slower than this fails.
    timeout: Duration,
    /// Passing checks in a row that bring a fallen backend back.
    rise: u32,
    /// Failing checks in a row that take a backend out.
    fall: u32,
}

impl HealthChecker {
    /// A checker probing `path` with `timeout`; `path` was validated by the config.
    pub fn new(
        path: &str,
        timeout: Duration,
        connect_timeout: Duration,
        (rise, fall): (u32, u32),
    ) -> HealthChecker {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout.min(timeout)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        HealthChecker {
            client,
            path: path
                .parse()
                .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/readyz")),
            timeout,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// True if the backend answered 2xx within the timeout. The answer's `X-Served-By` names
    /// the replica, and a failure is noted as its last error (both for the dashboard).
    pub async fn check(&self, backend: &Backend) -> bool {
        match self.probe(backend).await {
            Ok(()) => true,
            Err(why) => {
                backend.notes.error(format_args!("health check: {why}"));
                false
            }
        }
    }

    async fn probe(&self, backend: &Backend) -> Result<(), String> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(backend.authority().clone())
            .path_and_query(self.path.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let req = Request::get(uri)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let attempt = async {
            let resp = self.client.request(req).await.map_err(|e| chain(&e))?;
            if let Some(name) = resp
                .headers()
                .get(SERVED_BY)
                .and_then(|v| v.to_str().ok())
                .filter(|name| !name.is_empty())
            {
                backend.notes.set_name(name);
            }
            let status = resp.status();
            // Read the (small) body so the exchange completes cleanly before the connection closes.
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("{} answered {status}", self.path))
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// Checks `backends` concurrently and records the results, logging each change.
    pub async fn check_all(&self, backends: &[Arc<Backend>]) {
        let results = futures_util::future::join_all(backends.iter().map(|b| self.check(b))).await;
        for (b, ok) in backends.iter().zip(results) {
            let (was, now) = b.record_check(ok, self.rise, self.fall);
            if was != now {
                if now {
                    tracing::info!(upstream = %b.label(), "health check passing");
                } else {
                    tracing::warn!(upstream = %b.label(), "health check failing");
                }
            }
        }
    }

    /// Checks every known backend and refreshes the rotation (also re-admitting backends whose
    /// ejection cool-down ran out and whose check passes).
    pub async fn run_round(&self, set: &BackendSet) {
        let all = set.all();
        self.check_all(&all).await;
        set.rebuild();
    }
}

/// An error and its causes on one line ("client error (Connect): tcp connect error: Connection
/// refused"): the top level alone rarely says what happened.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
