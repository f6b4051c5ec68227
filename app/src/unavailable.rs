//! Turns "the session store is down" into a 503 with `Retry-After`, wherever it happened.
//!
//! A store failure can surface in two places: in a handler (loading the session), where
//! [`crate::error::AppError`] answers 503 itself, or in tower-sessions' middleware (saving
//! after the handler ran), which answers a bare 500 that no caller can tell from a bug.
//! The store flags a failure in a task-local cell scoped to the request; this middleware
//! sits outside the session layer and rewrites that 500 into the same 503 as the handler's.

use std::cell::Cell;

use axum::{
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

tokio::task_local! {
    static STORE_FAILED: Cell<bool>;
}

/// Records that the session store failed while serving the current request.
/// Outside a request scope (e.g. a unit test of the store) it does nothing.
pub fn flag() {
    let _ = STORE_FAILED.try_with(|failed| failed.set(true));
}

/// The answer while Redis is unreachable: short, plain, and retryable.
pub fn response() -> Response {
    let mut res = (
        StatusCode::SERVICE_UNAVAILABLE,
        "Session store unavailable, please retry shortly.\n",
    )
        .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// Middleware: runs the request with a fresh failure flag and maps a flagged 500 to 503.
pub async fn map_store_failures(req: Request, next: Next) -> Response {
    STORE_FAILED
        .scope(Cell::new(false), async move {
            let res = next.run(req).await;
            let failed = STORE_FAILED.try_with(Cell::get).unwrap_or(false);
            if failed && res.status() == StatusCode::INTERNAL_SERVER_ERROR {
                response()
            } else {
                res
            }
        })
        .await
}
