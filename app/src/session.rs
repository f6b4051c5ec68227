//! What this demo keeps in a session, and the pure functions on it.
//!
//! The record holds a view counter, the names of the last replicas that served it, and the
//! requests applied most recently ([`crate::replay`]). Reading never writes (so a read costs
//! one Redis round trip). Writing is the session writer's ([`crate::writer`]): a route hands
//! it a change, a pure function of [`Visits`] such as [`count`], and the writer applies it,
//! writes the record once and answers.

use serde::{Deserialize, Serialize};
use tower_sessions::{Session, session::Record};

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

/// Counts `by` visits served by `node`: the change every counting route makes.
pub fn count(visits: &mut Visits, node: &str, by: u64) {
    visits.views = visits.views.saturating_add(by);
    visits.history.push(node.to_owned());
    let excess = visits.history.len().saturating_sub(HISTORY_LEN);
    visits.history.drain(..excess);
}

/// A session's state as the writer changes it: the visits and the requests applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// What the API shows.
    pub visits: Visits,
    /// The requests applied most recently, with the count each produced.
    pub applied: Vec<Applied>,
}

impl State {
    /// The state stored in `record`. A value that no longer decodes (an older format, a hand
    /// edit) reads as its default, so the user keeps going instead of seeing a 500.
    pub fn of(record: &Record) -> State {
        fn field<T: serde::de::DeserializeOwned + Default>(record: &Record, key: &str) -> T {
            match record.data.get(key).cloned().map(serde_json::from_value) {
                Some(Ok(value)) => value,
                Some(Err(err)) => {
                    tracing::warn!(%err, key, "undecodable session value; starting from default");
                    T::default()
                }
                None => T::default(),
            }
        }
        State {
            visits: Visits {
                views: field(record, VIEWS),
                history: field(record, HISTORY),
            },
            applied: field(record, APPLIED),
        }
    }

    /// Writes this state into `record`'s data.
    pub fn store(&self, record: &mut Record) {
        let mut put = |key: &str, value: serde_json::Result<serde_json::Value>| match value {
            Ok(value) => {
                record.data.insert(key.to_owned(), value);
            }
            // Plain numbers, strings and lists always serialize; never reached.
            Err(err) => tracing::error!(%err, key, "session value not serializable"),
        };
        put(VIEWS, serde_json::to_value(self.visits.views));
        put(HISTORY, serde_json::to_value(&self.visits.history));
        if !self.applied.is_empty() {
            put(APPLIED, serde_json::to_value(&self.applied));
        }
    }

    /// Applies `change` for `request`, unless `request` was applied already: then nothing
    /// changes and the answer repeats the count it produced. Returns the visits to answer
    /// and whether the state changed.
    pub fn apply(&mut self, request: &RequestKey, change: impl Fn(&mut Visits)) -> (Visits, bool) {
        if let Some(views) = replay::find(&self.applied, request) {
            tracing::info!(
                request = request.as_str(),
                "replayed request; not counted again"
            );
            let mut answer = self.visits.clone();
            answer.views = views;
            return (answer, false);
        }
        change(&mut self.visits);
        replay::remember(&mut self.applied, request, self.visits.views);
        (self.visits.clone(), true)
    }
}

/// Reads a value of `session`, treating one that no longer decodes as absent.
async fn get<T: serde::de::DeserializeOwned + Default>(
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

/// The session's visits without counting this request (a read route's plain load).
pub async fn read(session: &Session) -> Result<Visits, AppError> {
    Ok(Visits {
        views: get(session, VIEWS).await?,
        history: get(session, HISTORY).await?,
    })
}

/// The whole state of `session`, through tower-sessions (the memory store's writer).
pub async fn load(session: &Session) -> Result<State, AppError> {
    Ok(State {
        visits: read(session).await?,
        applied: get(session, APPLIED).await?,
    })
}

/// Puts `state` into `session`, for tower-sessions to write (a new session's create, or the
/// memory store).
pub async fn put(session: &Session, state: &State) -> Result<(), AppError> {
    session.insert(VIEWS, state.visits.views).await?;
    session.insert(HISTORY, &state.visits.history).await?;
    if !state.applied.is_empty() {
        session.insert(APPLIED, &state.applied).await?;
    }
    Ok(())
}

/// The current session id, abbreviated, if the session exists.
pub fn short_id(session: &Session) -> Option<String> {
    session.id().map(|id| abbreviate(&id.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tower_sessions::session::Id;

    use super::*;

    fn empty() -> Record {
        Record {
            id: Id::default(),
            data: HashMap::new(),
            expiry_date: time::OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn count_counts_and_keeps_the_last_ten_nodes() {
        let mut visits = Visits::default();
        for i in 0..12 {
            count(&mut visits, &format!("n{i}"), 1);
        }
        assert_eq!(visits.views, 12);
        assert_eq!(visits.history.len(), HISTORY_LEN);
        assert_eq!(visits.history.first().map(String::as_str), Some("n2"));
        assert_eq!(visits.history.last().map(String::as_str), Some("n11"));
    }

    #[test]
    fn an_undecodable_value_reads_as_default() {
        let mut record = empty();
        record.data.insert(VIEWS.into(), "not a number".into());
        let mut state = State::of(&record);
        assert_eq!(state.visits.views, 0);
        let (answer, changed) = state.apply(&RequestKey::default(), |v| count(v, "a", 1));
        assert_eq!((answer.views, changed), (1, true));
    }

    #[test]
    fn a_state_survives_its_record() {
        let mut state = State::default();
        state.apply(&RequestKey::new("GET", "/", Some("r1")), |v| {
            count(v, "a", 2)
        });
        let mut record = empty();
        state.store(&mut record);
        assert_eq!(State::of(&record), state);
    }

    #[test]
    fn a_request_id_is_counted_once_even_after_newer_requests() {
        let mut state = State::default();
        let mut visit = |node: &str, id: &str| {
            let key = RequestKey::new("GET", "/session", Some(id));
            state.apply(&key, |v| count(v, node, 1)).0.views
        };
        // r1 r2 r1 r3 r2 r1: four distinct requests, each answered with its own count.
        let answers = [
            visit("a", "r1"),
            visit("b", "r2"),
            visit("b", "r1"),
            visit("a", "r3"),
            visit("b", "r2"),
            visit("b", "r1"),
        ];
        assert_eq!(answers, [1, 2, 1, 3, 2, 1]);
        assert_eq!(state.visits.history, ["a", "b", "a"]);
    }

    #[test]
    fn abbreviation_is_short() {
        assert_eq!(abbreviate("abcdefghijklmnop"), "abcdefgh");
    }
}
