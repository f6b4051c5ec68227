//! Why a request could not be proxied, and the response the client gets for each case.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// A proxying failure; the variant decides the status code.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No backend is in rotation (or every one failed to connect): 503 at once, not a hang.
    #[error("no healthy backend available")]
    NoBackend,
    /// The backend took longer than the upstream timeout to send response headers: 504.
    #[error("backend {backend} sent no response headers within {timeout:?}")]
    Timeout {
        /// The slow backend.
        backend: SocketAddr,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The backend answered 101 to a request that did not ask for an upgrade: 502.
    #[error("backend {backend} switched protocols without being asked")]
    UnexpectedUpgrade {
        /// The misbehaving backend.
        backend: SocketAddr,
    },
    /// The backend failed after the request may have reached it (or connect failures used up
    /// every try): 502.
    #[error("backend {backend} failed: {source}")]
    Upstream {
        /// The failing backend.
        backend: SocketAddr,
        /// What hyper reported.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

impl ProxyError {
    /// The status code the client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream { .. } | ProxyError::UnexpectedUpgrade { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// A short plain-text response; internal details stay in the log, not in the body.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let body: &'static str = match self {
            ProxyError::NoBackend => "503 Service Unavailable: no healthy backend\n",
            ProxyError::Timeout { .. } => {
                "504 Gateway Timeout: the backend did not answer in time\n"
            }
            ProxyError::Upstream { .. } | ProxyError::UnexpectedUpgrade { .. } => {
                "502 Bad Gateway: the backend failed\n"
            }
        };
        let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, ProxyError::NoBackend) {
            // Health checks run every second or so; tell clients when trying again makes sense.
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
