//! What this demo keeps in a session, and the two operations on it.
//!
//! The record holds a view counter and the names of the last replicas that served it.
//! Reading never writes (so a read costs one Redis round trip); a visit loads, changes and
//! lets tower-sessions save the record after the handler returns.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::{
    error::AppError,
    replay::{self, Applied, RequestKey},
};

const VIEWS: &str = "views";
const HISTORY: &str = "history";
/// The requests applied most recently, for [`crate::replay`].
const APPLIED: &str = "applied";

/// How many recent replicas a session remembers for the page.
pub const HISTORY_LEN: usize = 10;

/// A session as the API shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Visits {
    /// How many times this session was counted.
    pub views: u64,
    /// The replicas that served the last visits, oldest first.
    pub history: Vec<String>,
}

/// The session's id cut to a few characters: enough to follow one user in the logs,
/// never enough to replay the cookie.
pub fn abbreviate(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Reads a value, treating one that no longer decodes (an older format, a hand edit) as
/// absent so the user keeps going instead of seeing a 500.
async fn get_or_default<T: serde::de::DeserializeOwned + Default>(
    session: &Session,
    key: &str,
) -> Result<T, AppError> {
    match session.get::<T>(key).await {
        Ok(value) => Ok(value.unwrap_or_default()),
        Err(tower_sessions::session::Error::SerdeJson(err)) => {
            tracing::warn!(%err, key, "undecodable session value; starting from default");
            Ok(T::default())
        }
        Err(err) => Err(err.into()),
    }
}

/// The session's visits without counting this request.
pub async fn read(session: &Session) -> Result<Visits, AppError> {
    Ok(Visits {
        views: get_or_default(session, VIEWS).await?,
        history: get_or_default(session, HISTORY).await?,
    })
}

/// Counts `by` visits served by `node` and returns the new state. The record is saved by
/// the session layer after the response is built.
///
/// A request already applied to this session (same method, path and `X-Request-Id`; see
/// [`crate::replay`]) is not counted again: the answer repeats the count it produced. Under
/// the session lock this check and the write are atomic, so a replayed request counts once.
pub async fn visit(
    session: &Session,
    node: &str,
    by: u64,
    request: &RequestKey,
    save_delay: Option<Duration>,
) -> Result<Visits, AppError> {
    let mut visits = read(session).await?;
    let mut applied: Vec<Applied> = get_or_default(session, APPLIED).await?;
    if let Some(views) = replay::find(&applied, request) {
        tracing::info!(
            request = request.as_str(),
            "replayed request; not counted again"
        );
        visits.views = views;
        return Ok(visits);
    }
    visits.views = visits.views.saturating_add(by);
    visits.history.push(node.to_owned());
    let excess = visits.history.len().saturating_sub(HISTORY_LEN);
    visits.history.drain(..excess);
    if let Some(delay) = save_delay {
        tokio::time::sleep(delay).await;
    }
    session.insert(VIEWS, visits.views).await?;
    session.insert(HISTORY, &visits.history).await?;
    if request.as_str().is_some() {
        replay::remember(&mut applied, request, visits.views);
        session.insert(APPLIED, &applied).await?;
    }
    Ok(visits)
}

/// Ends the session: deletes the record and, through the layer, clears the cookie.
pub async fn end(session: &Session) -> Result<(), AppError> {
    session.flush().await?;
    Ok(())
}

/// The current session id, abbreviated, if the session exists.
pub fn short_id(session: &Session) -> Option<String> {
    session.id().map(|id| abbreviate(&id.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tower_sessions::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn visit_counts_and_keeps_the_last_ten_nodes() {
        let session = Session::new(None, Arc::new(MemoryStore::default()), None);
        for i in 0..12 {
            visit(&session, &format!("n{i}"), 1, &RequestKey::default(), None)
                .await
                .expect("visit");
        }
        let visits = read(&session).await.expect("read");
        assert_eq!(visits.views, 12);
        assert_eq!(visits.history.len(), HISTORY_LEN);
        assert_eq!(visits.history.first().map(String::as_str), Some("n2"));
        assert_eq!(visits.history.last().map(String::as_str), Some("n11"));
    }

    #[tokio::test]
    async fn an_undecodable_value_reads_as_default() {
        let session = Session::new(None, Arc::new(MemoryStore::default()), None);
        session.insert(VIEWS, "not a number").await.expect("insert");
        assert_eq!(read(&session).await.expect("read").views, 0);
        assert_eq!(
            visit(&session, "a", 1, &RequestKey::default(), None)
                .await
                .expect("visit")
                .views,
            1
        );
    }

    async fn views_after(session: &Session, node: &str, id: Option<&str>) -> u64 {
        let key = RequestKey::new("GET", "/session", id);
        visit(session, node, 1, &key, None)
            .await
            .expect("visit")
            .views
    }

    #[tokio::test]
    async fn a_request_id_is_counted_once_even_after_newer_requests() {
        let session = Session::new(None, Arc::new(MemoryStore::default()), None);
        // r1 r2 r1 r3 r2 r1: four distinct requests, each answered with its own count.
        let answers = [
            views_after(&session, "a", Some("r1")).await,
            views_after(&session, "b", Some("r2")).await,
            views_after(&session, "b", Some("r1")).await,
            views_after(&session, "a", Some("r3")).await,
            views_after(&session, "b", Some("r2")).await,
            views_after(&session, "b", Some("r1")).await,
        ];
        assert_eq!(answers, [1, 2, 1, 3, 2, 1]);
        assert_eq!(views_after(&session, "b", None).await, 4);
        assert_eq!(
            read(&session).await.expect("read").history,
            ["a", "b", "a", "b"]
        );
    }

    #[test]
    fn abbreviation_is_short() {
        assert_eq!(abbreviate("abcdefghijklmnop"), "abcdefgh");
    }
}
