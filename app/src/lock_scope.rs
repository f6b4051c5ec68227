//! The session lock as one request holds it: taken inside the session store when the handler
//! first touches the session, given back with the save, and never left behind.
//!
//! [`lock_session`] wraps the routes that write. It takes no lock itself: it opens a scope in
//! which the store ([`crate::store`]) locks the session it is asked to load. So:
//! - the lock is on exactly the session id that tower-sessions parsed from the cookie and,
//!   with `SESSION_SECRET`, verified: one parser (the last cookie of the name wins, values
//!   are percent-decoded, UTF-8 neighbours are fine), and a cookie the session layer refuses
//!   (a forged signature, a malformed id) locks nothing;
//! - the lock is taken as late as possible: after the request body was read (axum extracts
//!   the body before the handler runs) and only if the handler touches the session;
//! - with locking on, the store refuses any write or delete of an existing session outside
//!   such a scope, or of a session this scope does not hold.
//!
//! While the lock is held its lease is renewed every third of a lease. The hold ends with the
//! save, or when the request ends (answered, failed, cut off by `REQUEST_TIMEOUT`, or dropped
//! because the client went away): a lock still held, or an acquire or save still in flight,
//! is then given back in the background ([`SessionLock::abandon`]). So one request holds a
//! lock for at most its handler's run after the body arrived, bounded by `REQUEST_TIMEOUT`;
//! a replica that dies holding it blocks the session for at most one lease.

use std::{cell::RefCell, sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use tower_sessions::session::{Id, Record};

use crate::{
    outcome::Failure,
    session_lock::{LockError, SessionLock, new_token},
};

/// Where this request is with its session's lock.
#[derive(Debug)]
enum Hold {
    /// Nothing taken yet.
    Idle,
    /// An acquire was sent with this token; it may or may not have been applied.
    Acquiring { id: Id, token: String },
    /// The lock is ours.
    Held { id: Id, token: String },
    /// A save or delete that gives the lock back is on its way.
    Writing { id: Id, token: String },
    /// The lock was given back, or its write settled what became of it.
    Done,
}

/// One request's hold on its session's lock.
#[derive(Debug)]
struct Scope {
    lock: Arc<SessionLock>,
    state: RefCell<Hold>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        // The request ended while an acquire was in flight or the lock was still ours: the
        // client went away, the handler panicked, or the request timed out.
        match std::mem::replace(self.state.get_mut(), Hold::Done) {
            Hold::Acquiring { id, token }
            | Hold::Held { id, token }
            | Hold::Writing { id, token } => {
                SessionLock::clone(&self.lock).abandon(id.to_string(), token);
            }
            Hold::Idle | Hold::Done => {}
        }
    }
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Moves the scope's state to `next` and returns what it was. `None` outside a scope.
fn replace(next: Hold) -> Option<Hold> {
    SCOPE.try_with(|s| s.state.replace(next)).ok()
}

fn lock() -> Option<Arc<SessionLock>> {
    SCOPE.try_with(|s| s.lock.clone()).ok()
}

/// The token this request holds for session `id`, if any.
fn held(id: &Id) -> Option<String> {
    SCOPE
        .try_with(|s| match &*s.state.borrow() {
            Hold::Held { id: held, token } if held == id => Some(token.clone()),
            _ => None,
        })
        .ok()
        .flatten()
}

/// Locks session `id` and loads its record in the same round trip. `None` when this
/// request takes no lock (outside [`lock_session`], or the lock is held already): the
/// store then loads the plain way.
pub(crate) async fn load(id: &Id) -> Option<Result<Option<Record>, LockError>> {
    let lock = lock()?;
    let idle = SCOPE.with(|s| matches!(&*s.state.borrow(), Hold::Idle));
    if !idle {
        return None;
    }
    let token = new_token();
    replace(Hold::Acquiring {
        id: *id,
        token: token.clone(),
    });
    let acquired = lock.acquire(id, &token).await;
    match &acquired {
        Ok(_) => {
            replace(Hold::Held { id: *id, token });
        }
        // The last attempt answered "taken": nothing of ours is left in Redis.
        Err(LockError::Timeout) => {
            replace(Hold::Idle);
        }
        // The acquire may still run at Redis: undo it once Redis answers.
        Err(LockError::Redis(_)) => {
            replace(Hold::Done);
            SessionLock::clone(&lock).abandon(id.to_string(), token);
        }
    }
    Some(acquired)
}

/// Why a locked write did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// Redis refused, failed or stayed silent; the answer says which.
    #[error("session write failed: {0:?}")]
    Store(Failure),
    /// A write of a session this request does not hold the lock of: a bug in the routes.
    #[error("refused a write of a session whose lock this request does not hold")]
    Unlocked,
}

/// Saves session `id`'s record under the lock. Refused outside [`lock_session`] or when
/// this request does not hold `id`'s lock.
pub(crate) async fn save(id: &Id, bytes: &[u8], ttl: Duration) -> Result<(), WriteError> {
    let (Some(lock), Some(token)) = (lock(), held(id)) else {
        return Err(WriteError::Unlocked);
    };
    replace(Hold::Writing {
        id: *id,
        token: token.clone(),
    });
    let saved = lock.save(id, &token, bytes, ttl).await;
    // The save gave the lock back, or resolved (or abandoned) it.
    replace(Hold::Done);
    saved.map_err(WriteError::Store)
}

/// Deletes session `id` under the lock, or once nobody holds it when this request does not.
/// Refused outside [`lock_session`].
pub(crate) async fn delete(id: &Id) -> Result<(), WriteError> {
    let lock = lock().ok_or(WriteError::Unlocked)?;
    let token = held(id);
    if let Some(token) = &token {
        replace(Hold::Writing {
            id: *id,
            token: token.clone(),
        });
    }
    let deleted = lock.delete(id, token.as_deref()).await;
    if token.is_some() {
        replace(Hold::Done);
    }
    deleted.map_err(WriteError::Store)
}

/// Middleware: opens the lock scope for a route that writes, renews the lease while the lock
/// is held, and gives it back when the request is done.
pub async fn lock_session(
    State(lock): State<Arc<SessionLock>>,
    req: Request,
    next: Next,
) -> Response {
    let scope = Scope {
        lock: lock.clone(),
        state: RefCell::new(Hold::Idle),
    };
    SCOPE
        .scope(scope, async move {
            let run = next.run(req);
            tokio::pin!(run);
            let res = tokio::select! {
                biased;
                res = &mut run => res,
                // Lock lost (Redis unreachable for a whole lease): let the request finish;
                // its fenced save will refuse to write.
                () = renew_while_held(&lock) => run.await,
            };
            if let Some(Hold::Held { id, token }) = replace(Hold::Done)
                && let Err(err) = lock.release(&id, &token).await
            {
                tracing::warn!(%err, "session lock release failed; abandoning it");
                SessionLock::clone(&lock).abandon(id.to_string(), token);
            }
            res
        })
        .await
}

/// Renews the lease every third of it while this request holds the lock. Returns only if
/// the lock was lost.
async fn renew_while_held(lock: &SessionLock) {
    let mut tick = tokio::time::interval(lock.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let held = SCOPE
            .try_with(|s| match &*s.state.borrow() {
                Hold::Held { id, token } => Some((*id, token.clone())),
                _ => None,
            })
            .ok()
            .flatten();
        let Some((id, token)) = held else { continue };
        match lock.renew(&id, &token).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("session lock lost before the request finished");
                return;
            }
            Err(err) => tracing::warn!(%err, "session lock renewal failed; retrying"),
        }
    }
}
