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
//! Requests of one session on this replica wait in line ([`crate::local_queue`]); the head
//! takes the lock from Redis, or from the previous request's hand-off.
//!
//! While the lock is held its lease is renewed every third of a lease. The hold ends with the
//! save, or when the request ends (answered, failed, cut off by `REQUEST_TIMEOUT`, or dropped
//! because the client went away): a lock still held, or an acquire or save still in flight,
//! is then given back in the background ([`SessionLock::abandon`]). So one request holds a
//! lock for at most its handler's run after the body arrived, bounded by `REQUEST_TIMEOUT`;
//! a replica that dies holding it blocks the session for at most one lease.

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use tower_sessions::session::{Id, Record};

use tokio::time::Instant;

use crate::{
    local_queue::{Ack, HandOff, Turn},
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
    /// The save was deferred: the lock and the record went to the next request in line,
    /// whose write will carry this request's changes too.
    Deferred,
    /// The lock was given back, or its write settled what became of it.
    Done,
}

/// One request's hold on its session's lock.
#[derive(Debug)]
struct Scope {
    lock: Arc<SessionLock>,
    state: RefCell<Hold>,
    /// This request's turn in its session's line on this replica, once it has one.
    turn: RefCell<Option<Turn>>,
    /// Local hand-offs in a row that led to this request's lock (0: taken from Redis).
    hand_offs: Cell<u32>,
    /// Earlier requests' changes that came unwritten with the record (group commit).
    carried: RefCell<Option<Carried>>,
}

/// The record as the previous request left it, unwritten, and the requests whose changes
/// are in it, waiting for the write that carries them.
#[derive(Debug)]
struct Carried {
    /// Written as it is if this request writes nothing itself.
    record: Record,
    /// Answered with the outcome of the write that carries their changes.
    acks: Vec<Ack>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        // Earlier requests waiting for this one's write: it never happened (or never came
        // back), and their answers must say so.
        let failure = match &*self.state.get_mut() {
            Hold::Writing { .. } => Failure::Unknown,
            _ => Failure::Unavailable,
        };
        for ack in self
            .carried
            .get_mut()
            .take()
            .into_iter()
            .flat_map(|c| c.acks)
        {
            let _ = ack.send(Err(failure));
        }
        // The request ended while an acquire was in flight or the lock was still ours: the
        // client went away, the handler panicked, or the request timed out.
        match std::mem::replace(self.state.get_mut(), Hold::Done) {
            Hold::Acquiring { id, token }
            | Hold::Held { id, token }
            | Hold::Writing { id, token } => {
                SessionLock::clone(&self.lock).abandon(id.to_string(), token);
            }
            Hold::Idle | Hold::Done | Hold::Deferred => {}
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

/// The session and token of the lock this request holds, if any.
fn held_lock() -> Option<(Id, String)> {
    SCOPE
        .try_with(|s| match &*s.state.borrow() {
            Hold::Held { id, token } => Some((*id, token.clone())),
            _ => None,
        })
        .ok()
        .flatten()
}

/// The token this request holds for session `id`, if any.
fn held(id: &Id) -> Option<String> {
    held_lock().and_then(|(held, token)| (held == *id).then_some(token))
}

/// The carried changes' acknowledgements, taken (the record is dropped: a newer one
/// carries them from now on).
fn take_acks() -> Vec<Ack> {
    SCOPE
        .try_with(|s| s.carried.borrow_mut().take().map(|c| c.acks))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Waits for this request's turn in the session's line on this replica, until `deadline`.
async fn take_turn(lock: &SessionLock, id: &Id, deadline: Instant) -> Result<(), LockError> {
    let has_turn = SCOPE.with(|s| s.turn.borrow().is_some());
    if has_turn {
        return Ok(());
    }
    let Ok(turn) = tokio::time::timeout_at(deadline, lock.local.turn(*id)).await else {
        lock.metrics.lock_timeouts.inc();
        return Err(LockError::Timeout);
    };
    SCOPE.with(|s| *s.turn.borrow_mut() = Some(turn));
    Ok(())
}

/// The hand-off the previous request of this session left here, if any.
fn take_hand_off() -> Option<HandOff> {
    SCOPE.with(|s| s.turn.borrow_mut().as_mut().and_then(Turn::take_hand_off))
}

/// Locks session `id` and loads its record: from the previous request's hand-off on this
/// replica (no round trip), or with the lock from Redis (one). `None` when this request
/// takes no lock (outside [`lock_session`], or the lock is held already): the store then
/// loads the plain way.
pub(crate) async fn load(id: &Id) -> Option<Result<Option<Record>, LockError>> {
    let lock = lock()?;
    let idle = SCOPE.with(|s| matches!(&*s.state.borrow(), Hold::Idle));
    if !idle {
        return None;
    }
    let start = Instant::now();
    let deadline = start + lock.wait;
    if let Err(err) = take_turn(&lock, id, deadline).await {
        lock.metrics
            .lock_wait
            .observe(start.elapsed().as_secs_f64());
        return Some(Err(err));
    }
    if let Some(hand_off) = take_hand_off() {
        replace(Hold::Held {
            id: *id,
            token: hand_off.token,
        });
        SCOPE.with(|s| {
            s.hand_offs.set(hand_off.count);
            if !hand_off.pending.is_empty() {
                *s.carried.borrow_mut() = Some(Carried {
                    record: hand_off.record.clone(),
                    acks: hand_off.pending,
                });
            }
        });
        lock.metrics
            .lock_wait
            .observe(start.elapsed().as_secs_f64());
        lock.metrics.lock_hand_offs.inc();
        return Some(Ok(Some(hand_off.record)));
    }
    let token = new_token();
    replace(Hold::Acquiring {
        id: *id,
        token: token.clone(),
    });
    let acquired = lock.acquire(id, &token, start, deadline).await;
    match &acquired {
        Ok(_) => {
            replace(Hold::Held { id: *id, token });
        }
        // We may still be first in line, or have been handed the lock just after our last
        // attempt: leave the line and let go once Redis answers.
        Err(LockError::Timeout) => {
            replace(Hold::Idle);
            SessionLock::clone(&lock).abandon(id.to_string(), token);
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

/// Answers the earlier requests whose changes the write just made carried.
fn settle_carried(result: Result<(), Failure>) {
    for ack in take_acks() {
        let _ = ack.send(result);
    }
}

/// Saves `record` (encoded as `bytes`) under the lock. When the next request of the session
/// waits on this replica (within the hand-off budget), the lock and the record go on to it:
/// with group commit unwritten, this request then waiting for the write that carries its
/// changes; without, written first with the lease renewed. Refused outside
/// [`lock_session`] or when this request does not hold the lock.
pub(crate) async fn save(record: &Record, bytes: &[u8], ttl: Duration) -> Result<(), WriteError> {
    let id = &record.id;
    let (Some(lock), Some(token)) = (lock(), held(id)) else {
        return Err(WriteError::Unlocked);
    };
    let hand_offs = SCOPE.with(|s| s.hand_offs.get());
    let someone_waits = SCOPE.with(|s| s.turn.borrow().as_ref().is_some_and(Turn::others_waiting));
    let keep = someone_waits && hand_offs < lock.hand_offs;
    if keep && lock.group_commit {
        let (ack, written) = tokio::sync::oneshot::channel();
        let mut pending = take_acks();
        pending.push(ack);
        replace(Hold::Deferred);
        let turn = SCOPE.with(|s| s.turn.borrow_mut().take());
        if let Some(mut turn) = turn {
            turn.hand_off(HandOff {
                token,
                record: record.clone(),
                count: hand_offs + 1,
                pending,
            });
            // The next in line goes now; if it gave up meanwhile, the line settles the
            // hand-off (writes it, answers us).
            drop(turn);
        }
        return match written.await {
            Ok(result) => result.map_err(WriteError::Store),
            // Dropped unanswered: nobody can say whether a write was sent.
            Err(_) => Err(WriteError::Store(Failure::Unknown)),
        };
    }
    replace(Hold::Writing {
        id: *id,
        token: token.clone(),
    });
    let saved = lock.save(id, &token, bytes, ttl, keep).await;
    // The save freed the lock, kept it for the next request, or resolved what became of it.
    replace(Hold::Done);
    settle_carried(saved.map(|_| ()));
    match saved {
        Ok(true) => {
            let unclaimed = SCOPE.with(|s| {
                let mut turn = s.turn.borrow_mut();
                let turn = turn.as_mut()?;
                turn.hand_off(HandOff {
                    token,
                    record: record.clone(),
                    count: hand_offs + 1,
                    pending: Vec::new(),
                });
                // The waiter may have given up meanwhile.
                turn.unclaimed_hand_off()
            });
            if let Some(left) = unclaimed {
                release_or_abandon(&lock, id, left.token).await;
            }
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(failure) => Err(WriteError::Store(failure)),
    }
}

/// Writes the record earlier requests left unwritten when this request wrote nothing itself
/// (it only read, was a replay, or failed), and answers them.
async fn flush_carried(lock: &SessionLock) {
    let Some(carried) = SCOPE.with(|s| s.carried.borrow_mut().take()) else {
        return;
    };
    let Some((id, token)) = held_lock() else {
        for ack in carried.acks {
            let _ = ack.send(Err(Failure::Unavailable));
        }
        return;
    };
    replace(Hold::Writing {
        id,
        token: token.clone(),
    });
    lock.write_carried(&token, &carried.record, carried.acks)
        .await;
    replace(Hold::Done);
}

/// Deletes session `id` under its lock: the one this request holds, or one it takes first
/// (waiting in line like a write). Refused outside [`lock_session`].
pub(crate) async fn delete(id: &Id) -> Result<(), WriteError> {
    let lock = lock().ok_or(WriteError::Unlocked)?;
    if held(id).is_none()
        && let Some(Err(err)) = load(id).await
    {
        return Err(WriteError::Store(err.failure()));
    }
    let token = held(id).ok_or(WriteError::Unlocked)?;
    replace(Hold::Writing {
        id: *id,
        token: token.clone(),
    });
    let deleted = lock.delete(id, &token).await;
    replace(Hold::Done);
    // Earlier requests' unwritten changes ended with the session, after them.
    settle_carried(deleted);
    deleted.map_err(WriteError::Store)
}

async fn release_or_abandon(lock: &SessionLock, id: &Id, token: String) {
    if let Err(err) = lock.release(id, &token).await {
        tracing::warn!(%err, "session lock release failed; abandoning it");
        SessionLock::clone(lock).abandon(id.to_string(), token);
    }
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
        turn: RefCell::new(None),
        hand_offs: Cell::new(0),
        carried: RefCell::new(None),
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
                () = renew_after_a_third(&lock) => run.await,
            };
            flush_carried(&lock).await;
            if let Some(Hold::Held { id, token }) = replace(Hold::Done) {
                release_or_abandon(&lock, &id, token).await;
            }
            // A hand-off left for a request that gave up: free the lock in Redis now.
            let unclaimed = SCOPE.with(|s| {
                let mut turn = s.turn.borrow_mut();
                turn.as_mut().and_then(Turn::unclaimed_hand_off)
            });
            if let Some(left) = unclaimed {
                release_or_abandon(&lock, &left.record.id, left.token).await;
            }
            res
        })
        .await
}

/// Waits a third of a lease, then renews while the request runs: most requests end before,
/// and pay only for one timer (the renewal future, with its Redis call, is boxed and made
/// only for slow ones).
async fn renew_after_a_third(lock: &SessionLock) {
    tokio::time::sleep(lock.lease / 3).await;
    Box::pin(renew_while_held(lock)).await;
}

/// Renews the lease every third of it while this request holds the lock. Returns only if
/// the lock was lost.
async fn renew_while_held(lock: &SessionLock) {
    let mut tick = tokio::time::interval(lock.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The first tick is immediate: the caller already waited a third of a lease.
        tick.tick().await;
        let Some((id, token)) = held_lock() else {
            continue;
        };
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
