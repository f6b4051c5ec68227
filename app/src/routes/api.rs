//! The seed-compatible `/session` and the JSON API for programs.
//!
//! | Route | Effect |
//! |---|---|
//! | `GET /session` | counts a view, `text/plain` `Session View Cnt  N` (the original's text) |
//! | `GET /api/session` | reads, never writes |
//! | `POST /api/session/views` | counts `by` views (body optional, default 1) |
//! | `DELETE /api/session` | ends the session and clears the cookie |

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::{
    error::AppError,
    replay::RequestKey,
    session::{self, Visits},
    state::AppState,
    writer::SessionWriter,
};

/// The JSON answer of the session endpoints.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionView {
    /// The view counter.
    pub views: u64,
    /// The replica that answered.
    pub node: String,
    /// The replicas that served the last visits, oldest first.
    pub history: Vec<String>,
    /// The session id abbreviated; `null` when there is no session yet.
    pub session: Option<String>,
}

impl SessionView {
    fn new(state: &AppState, session: Option<String>, visits: Visits) -> Self {
        SessionView {
            views: visits.views,
            node: state.node.to_string(),
            history: visits.history,
            session,
        }
    }
}

/// Counts `by` visits on `writer`'s session, served by this replica.
async fn count(
    state: &AppState,
    writer: &SessionWriter,
    request: RequestKey,
    by: u64,
) -> Result<Visits, AppError> {
    let node = state.node.clone();
    writer
        .update(request, move |visits| session::count(visits, &node, by))
        .await
}

/// Body of `POST /api/session/views`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    /// How many views to add, 1 to 1000.
    #[serde(default = "one")]
    pub by: u64,
}

fn one() -> u64 {
    1
}

/// `GET /session`: counts a view and answers the original demo's exact text.
pub async fn count_view_as_text(
    State(state): State<AppState>,
    request: RequestKey,
    writer: SessionWriter,
) -> Result<String, AppError> {
    let visits = count(&state, &writer, request, 1).await?;
    Ok(format!("Session View Cnt  {}", visits.views))
}

/// `GET /api/session`: the session as it is, without counting.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<SessionView>, AppError> {
    let visits = session::read(&session).await?;
    Ok(Json(SessionView::new(
        &state,
        session::short_id(&session),
        visits,
    )))
}

/// `POST /api/session/views`: counts views and returns the new state.
pub async fn increment(
    State(state): State<AppState>,
    request: RequestKey,
    writer: SessionWriter,
    // Malformed JSON is rejected by the extractor with a 400/415/422 and its reason.
    body: Option<Json<Increment>>,
) -> Result<Response, AppError> {
    let by = body.map_or(1, |Json(Increment { by })| by);
    if !(1..=1000).contains(&by) {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, "`by` must be 1 to 1000\n").into_response());
    }
    let visits = count(&state, &writer, request, by).await?;
    Ok(Json(SessionView::new(&state, writer.short_id(), visits)).into_response())
}

/// `DELETE /api/session`: ends the session.
pub async fn destroy(writer: SessionWriter) -> Result<StatusCode, AppError> {
    writer.delete().await?;
    Ok(StatusCode::NO_CONTENT)
}
