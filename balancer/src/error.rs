//! Why a request could not be proxied, and the response the client gets for each case.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// A proxying failure; the variant decides the status code. The first group are the
/// client's own faults: they never count against a backend.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A request this proxy refuses to forward as it is (duplicate `Host`, ...): 400.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The client's upload failed: reset, closed early, or malformed framing: 400.
    #[error("the client's request body failed")]
    ClientBody,
    /// The client's upload stalled for `BODY_IDLE_TIMEOUT`: 408.
    #[error("the client's request body stalled")]
    ClientStalled,
    /// CONNECT: this is a reverse proxy, not a tunnel to anywhere: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1): 501.
    #[error("transfer coding not implemented")]
    NotImplemented,
    /// A path of `INTERNAL_PATHS` (a replica's internals) on the public port: 404.
    #[error("not found")]
    NotFound,
    /// More header lines than a backend accepts once this hop's are added
    /// (`UPSTREAM_MAX_HEADERS`): 431.
    #[error("too many header lines for the backends")]
    TooManyHeaders,
    /// The request already passed through this proxy (`Via`): 508.
    #[error("request loop: already passed through this proxy")]
    Loop,
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
    /// No backend had a free request slot within `UPSTREAM_TIMEOUT`: 504. Load, not a
    /// fault: counted against no backend.
    #[error("no request slot on backend {backend} within {timeout:?}")]
    SlotTimeout {
        /// The last backend waited on.
        backend: SocketAddr,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The backend answered 101 to a request that did not ask for an upgrade, or switched to
    /// a protocol it was not offered: 502.
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
        /// What went wrong.
        #[source]
        source: UpstreamError,
    },
}

/// What went wrong between the balancer and a backend.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connect failed or timed out: nothing was sent.
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The exchange failed (reset, closed early, malformed response, the request body
    /// failed while being sent).
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl ProxyError {
    /// True for the client's own faults, which never count against a backend.
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::ClientBody
                | ProxyError::ClientStalled
                | ProxyError::MethodNotAllowed
                | ProxyError::NotImplemented
                | ProxyError::NotFound
                | ProxyError::TooManyHeaders
                | ProxyError::Loop
        )
    }

    /// The status code the client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBody => StatusCode::BAD_REQUEST,
            ProxyError::ClientStalled => StatusCode::REQUEST_TIMEOUT,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Loop => StatusCode::LOOP_DETECTED,
            ProxyError::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout { .. } | ProxyError::SlotTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Upstream { .. } | ProxyError::UnexpectedUpgrade { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// A short plain-text response; internal details stay in the log, not in the body.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let body: &'static str = match self {
            ProxyError::BadRequest(why) => why,
            ProxyError::ClientBody => {
                "400 Bad Request: the request body ended early or was malformed\n"
            }
            ProxyError::ClientStalled => "408 Request Timeout: the request body stalled\n",
            ProxyError::MethodNotAllowed => "405 Method Not Allowed\n",
            ProxyError::NotImplemented => {
                "501 Not Implemented: only the chunked transfer coding is supported\n"
            }
            ProxyError::Loop => {
                "508 Loop Detected: the request already passed through this proxy\n"
            }
            ProxyError::NotFound => "404 Not Found\n",
            ProxyError::TooManyHeaders => {
                "431 Request Header Fields Too Large: too many header lines\n"
            }
            ProxyError::NoBackend => "503 Service Unavailable: no healthy backend\n",
            ProxyError::Timeout { .. } => {
                "504 Gateway Timeout: the backend did not answer in time\n"
            }
            ProxyError::SlotTimeout { .. } => "504 Gateway Timeout: every backend was busy\n",
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
        if matches!(self, ProxyError::MethodNotAllowed) {
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        if matches!(self, ProxyError::ClientBody | ProxyError::ClientStalled) {
            // The rest of a broken body cannot be skipped reliably.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, ProxyError::NoBackend) {
            // Health checks run every second or so; tell clients when trying again makes sense.
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
