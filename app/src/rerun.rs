//! A request kept so that it can run a second time: what the session lock's optimistic try
//! needs when its compare-and-set finds the session changed ([`crate::lock_scope`]).
//!
//! Only requests whose body is known to be small are kept (a `Content-Length` of at most
//! [`KEPT_BODY_MAX`], or no body): the body is read into memory once and given to each run.
//! Any other request is not kept, and runs once, under the lock from the start.

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::Request,
    http::{Extensions, HeaderMap, Method, StatusCode, Uri, Version},
    response::{IntoResponse, Response},
};

/// The largest body kept for a second run.
pub const KEPT_BODY_MAX: u64 = 64 * 1024;

/// Everything a second run of a request needs.
#[derive(Debug)]
pub struct Rerun {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
}

impl Rerun {
    /// Reads `req`'s body when it is small, and returns the request to run now with what a
    /// second run needs; a request with a large or unknown body comes back as it was, with
    /// `None`. A body that fails to arrive is answered 400.
    pub async fn keep(req: Request) -> Result<(Request, Option<Rerun>), Response> {
        let hint = req.body().size_hint();
        if hint.exact() == Some(0) {
            let rerun = Rerun::of(&req, Bytes::new());
            return Ok((req, Some(rerun)));
        }
        if hint.upper().is_none_or(|upper| upper > KEPT_BODY_MAX) {
            return Ok((req, None));
        }
        let (parts, body) = req.into_parts();
        let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
            return Err((
                StatusCode::BAD_REQUEST,
                "The request body could not be read.\n",
            )
                .into_response());
        };
        let req = Request::from_parts(parts, Body::from(body.clone()));
        let rerun = Rerun::of(&req, body);
        Ok((req, Some(rerun)))
    }

    /// A copy of `req` with `body`.
    fn of(req: &Request, body: Bytes) -> Rerun {
        Rerun {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            extensions: req.extensions().clone(),
            body,
        }
    }

    /// The request again, as it first arrived.
    pub fn request(self) -> Request {
        let mut req = Request::new(Body::from(self.body));
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        req
    }
}
