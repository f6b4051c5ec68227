//! Exactly once per request id: a replayed request is answered, not applied again.
//!
//! The balancer replays a `GET` whose replica died mid-request, with the same
//! `X-Request-Id`, and a client may retry anything with the id it chose. The session keeps
//! the requests applied to it most recently (up to [`KEPT`]), each with the counter value it
//! produced; a request found there is answered with that value and changes nothing.
//!
//! - A request is its method, its path and its id: a `GET /session` that reuses the id of a
//!   `POST /api/session/views` is a different request.
//! - Ids follow the rule shared with the balancer (crate `request-id`); a request with an
//!   id outside it is answered 400 rather than silently counted without protection.
//! - Under the session lock, the check and the write are one atomic step.
//! - Not guaranteed: a replay that arrives after [`KEPT`] newer requests of the same session
//!   was applied, or after the session ended, counts again.

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

/// How many applied requests a session remembers: enough for a person's tabs and their
/// retries, and for every replay the balancer makes (it replays at once).
pub const KEPT: usize = 32;

/// The identity of a request that may be replayed, or none when it carries no id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestKey(Option<String>);

impl RequestKey {
    /// The key of a request `method path` with id `id`.
    pub fn new(method: &str, path: &str, id: Option<&str>) -> RequestKey {
        RequestKey(id.map(|id| format!("{method} {path} {id}")))
    }

    /// The key as stored in the session, if the request has an id.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A request's id that breaks the shared rule.
#[derive(Debug)]
pub struct InvalidRequestId(request_id::Invalid);

impl IntoResponse for InvalidRequestId {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{}\n", self.0)).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestKey {
    type Rejection = InvalidRequestId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let id = request_id::parse(&parts.headers).map_err(InvalidRequestId)?;
        Ok(RequestKey::new(parts.method.as_str(), parts.uri.path(), id))
    }
}

/// One applied request and the counter value it answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Applied {
    /// `METHOD /path id`.
    pub request: String,
    /// The counter value the request produced.
    pub views: u64,
}

/// The counter value `key` produced, if it was applied already.
pub fn find(applied: &[Applied], key: &RequestKey) -> Option<u64> {
    let key = key.as_str()?;
    applied.iter().find(|a| a.request == key).map(|a| a.views)
}

/// Remembers that `key` produced `views`, forgetting the oldest beyond [`KEPT`].
pub fn remember(applied: &mut Vec<Applied>, key: &RequestKey, views: u64) {
    let Some(key) = key.as_str() else { return };
    applied.push(Applied {
        request: key.to_owned(),
        views,
    });
    let excess = applied.len().saturating_sub(KEPT);
    applied.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_method_path_and_id() {
        let get = RequestKey::new("GET", "/session", Some("r1"));
        let post = RequestKey::new("POST", "/api/session/views", Some("r1"));
        let mut applied = Vec::new();
        remember(&mut applied, &get, 4);
        assert_eq!(find(&applied, &get), Some(4));
        assert_eq!(find(&applied, &post), None);
        assert_eq!(find(&applied, &RequestKey::default()), None);
    }

    #[test]
    fn only_the_latest_kept_are_remembered() {
        let mut applied = Vec::new();
        for i in 0..(KEPT as u64 + 5) {
            let key = RequestKey::new("GET", "/", Some(&format!("r{i}")));
            remember(&mut applied, &key, i);
        }
        assert_eq!(applied.len(), KEPT);
        assert_eq!(
            find(&applied, &RequestKey::new("GET", "/", Some("r4"))),
            None
        );
        assert_eq!(
            find(&applied, &RequestKey::new("GET", "/", Some("r5"))),
            Some(5)
        );
        remember(&mut applied, &RequestKey::default(), 99);
        assert_eq!(applied.len(), KEPT, "requests without an id are not kept");
    }
}
