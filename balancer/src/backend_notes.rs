//! What the dashboard shows of a backend beyond its counters: the replica's name and its last
//! error. Both are written off the request path only (health checks, failed attempts), so
//! the mutex here is never taken by a request that succeeds.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// The longest error text kept: a line on the dashboard, not a log.
const MAX_ERROR_LEN: usize = 200;

/// The last error seen for a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// When it happened.
    pub at: SystemTime,
    /// What happened, one line.
    pub text: String,
}

/// Name and last error of one backend.
#[derive(Debug, Default)]
pub struct BackendNotes {
    /// The replica's name, from the `X-Served-By` header of its health check answers (a
    /// replica restarted at the same address may come back with another name).
    name: Mutex<Option<Arc<str>>>,
    /// The last failed check or failed attempt.
    last_error: Mutex<Option<LastError>>,
}

/// A poisoned lock only means a writer panicked between two plain stores: the value is whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BackendNotes {
    /// The replica's name, if a check learned it.
    pub fn name(&self) -> Option<Arc<str>> {
        lock(&self.name).clone()
    }

    /// Records the name a check answer carried (not stored again when unchanged).
    pub fn set_name(&self, name: &str) {
        let mut current = lock(&self.name);
        if current.as_deref() != Some(name) {
            *current = Some(Arc::from(name));
        }
    }

    /// The last error, if any.
    pub fn last_error(&self) -> Option<LastError> {
        lock(&self.last_error).clone()
    }

    /// Records an error now, cut to one short line.
    pub fn error(&self, text: impl std::fmt::Display) {
        let mut text = text.to_string().replace(['\r', '\n'], " ");
        if text.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        *lock(&self.last_error) = Some(LastError {
            at: SystemTime::now(),
            text,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_kept_as_one_short_line_and_a_name_can_change() {
        let notes = BackendNotes::default();
        assert_eq!(notes.name(), None);
        notes.set_name("replica-a");
        notes.set_name("replica-b");
        assert_eq!(notes.name().as_deref(), Some("replica-b"));
        notes.error(format!("first\nline {}", "é".repeat(300)));
        let last = notes.last_error().expect("an error");
        assert!(!last.text.contains('\n'));
        assert!(last.text.starts_with("first line "));
        assert!(last.text.len() <= MAX_ERROR_LEN + '…'.len_utf8());
    }
}
