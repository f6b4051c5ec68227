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
//! With `SESSION_LOCK_OPTIMISTIC=on`, a request that can be replayed whole ([`Rerun`]) first
//! runs without the lock when its session is quiet here (no line, not contended lately): the
//! load peeks at the record and the lock, and the save is a compare-and-set
//! ([`SessionLock::save_optimistic`]). If that finds the record changed or locked, nothing
//! was written: the answer of this run is dropped and the request runs again under the lock,
//! keeping its turn in the line. An optimistic run holds no lock, so nothing of it needs
//! giving back; if it meets a held lock at the peek, or deletes the session, it takes the lock
//! in the same run instead.
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

use axum::{extract::Request, response::Response};
use fred::bytes::Bytes;
use tower_sessions::session::{Id, Record};

use tokio::time::Instant;

use crate::{
    local_queue::{Ack, HandOff, Turn},
    outcome::{self, Failure},
    rerun::Rerun,
    session_lock::{LockError, Optimistic, OptimisticKeys, Peeked, SessionLock, new_token},
};

/// Where this request is with its session's lock.
#[derive(Debug)]
enum Hold {
    /// Nothing taken yet.
    Idle,
    /// Running without the lock: the record was read as `seen` while nobody held the lock,
    /// and will be written only if it is still `seen` (compare-and-set).
    Optimistic {
        id: Id,
        seen: Bytes,
        keys: OptimisticKeys,
    },
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
    /// The optimistic write found the record changed or locked: nothing was written, and the
    /// request runs again under the lock.
    Conflict,
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
    /// Whether this run may try without the lock first (it can be run again).
    optimistic: bool,
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
            Hold::Idle | Hold::Done | Hold::Deferred | Hold::Optimistic { .. } | Hold::Conflict => {
            }
        }
    }
}

tokio::task_local! {
    // Boxed: the task-local's value is swapped in and out of the thread on every poll of the
    // request, so it should be a pointer, not the whole scope.
    static SCOPE: Box<Scope>;
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

/// Loads session `id`'s record for a write. Optimistically, when this run may and nobody
/// else uses the session here or holds its lock: the record and the lock's state in one
/// round trip, no lock taken. Otherwise it locks the session: from the previous request's
/// hand-off on this replica (no round trip), or with the lock from Redis (one). `None` when
/// this request takes no lock (outside [`lock_session`], or the lock is held already): the
/// store then loads the plain way.
pub(crate) async fn load(id: &Id) -> Option<Result<Option<Record>, LockError>> {
    let lock = lock()?;
    let (idle, optimistic) = SCOPE.with(|s| {
        let idle = matches!(&*s.state.borrow(), Hold::Idle);
        (idle, s.optimistic && s.turn.borrow().is_none())
    });
    if !idle {
        return None;
    }
    if optimistic && let Some(turn) = lock.local.uncontended_turn(*id) {
        // Held while the write runs: a later request of the session here queues behind it.
        SCOPE.with(|s| *s.turn.borrow_mut() = Some(turn));
        match lock.peek(id).await {
            // Nothing was taken: nothing to undo.
            Err(err) => return Some(Err(LockError::Redis(err))),
            Ok(Peeked {
                record: seen,
                locked: false,
                keys,
            }) => {
                let record = seen.as_deref().and_then(crate::record::decode);
                // A record that is absent or undecodable makes a fresh session (a create,
                // which needs no lock).
                if let (Some(seen), Some(_)) = (seen, &record) {
                    replace(Hold::Optimistic {
                        id: *id,
                        seen,
                        keys,
                    });
                }
                return Some(Ok(record));
            }
            // Locked elsewhere: take the lock, keeping this request's place in line.
            Ok(_) => lock.local.mark_contended(*id),
        }
    }
    // Boxed: the lock's wait and acquire make a large future, which the optimistic path
    // (most writes) should not carry.
    Some(Box::pin(load_locked(&lock, id)).await)
}

/// Locks session `id` and loads its record (see [`load`]).
async fn load_locked(lock: &Arc<SessionLock>, id: &Id) -> Result<Option<Record>, LockError> {
    let start = Instant::now();
    let deadline = start + lock.wait;
    if let Err(err) = take_turn(lock, id, deadline).await {
        lock.metrics
            .lock_wait
            .observe(start.elapsed().as_secs_f64());
        return Err(err);
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
        return Ok(Some(hand_off.record));
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
            SessionLock::clone(lock).abandon(id.to_string(), token);
        }
        // The acquire may still run at Redis: undo it once Redis answers.
        Err(LockError::Redis(_)) => {
            replace(Hold::Done);
            SessionLock::clone(lock).abandon(id.to_string(), token);
        }
    }
    acquired
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
    /// The optimistic write found the record changed or locked; nothing was written, and
    /// [`lock_session`] runs the request again under the lock.
    #[error("the session changed meanwhile; running the request again under the lock")]
    Conflict,
}

/// When this request runs optimistically on session `id`: the bytes it read and the keys,
/// taken (the state moves to `Done`).
fn take_optimistic(id: &Id) -> Option<(Bytes, OptimisticKeys)> {
    SCOPE
        .try_with(|s| {
            let mut state = s.state.borrow_mut();
            if !matches!(&*state, Hold::Optimistic { id: read, .. } if read == id) {
                return None;
            }
            match std::mem::replace(&mut *state, Hold::Done) {
                Hold::Optimistic { seen, keys, .. } => Some((seen, keys)),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// The optimistic write: compare-and-set; on a conflict, the request is marked to run again.
async fn save_optimistic(
    lock: &SessionLock,
    id: &Id,
    (seen, keys): (Bytes, OptimisticKeys),
    bytes: &[u8],
    ttl: Duration,
) -> Result<(), WriteError> {
    match lock.save_optimistic(id, &keys, &seen, bytes, ttl).await {
        Ok(Optimistic::Written) => Ok(()),
        Ok(Optimistic::Conflict) => {
            lock.local.mark_contended(*id);
            replace(Hold::Conflict);
            outcome::nothing_written();
            Err(WriteError::Conflict)
        }
        Err(failure) => Err(WriteError::Store(failure)),
    }
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
    if let (Some(lock), Some(seen)) = (lock(), take_optimistic(&record.id)) {
        return save_optimistic(&lock, &record.id, seen, bytes, ttl).await;
    }
    // Boxed, like the locked load: the optimistic path's future stays small.
    Box::pin(save_locked(record, bytes, ttl)).await
}

/// [`save`] under the lock.
async fn save_locked(record: &Record, bytes: &[u8], ttl: Duration) -> Result<(), WriteError> {
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
    if take_optimistic(id).is_some() {
        // A delete always takes the lock: it has nothing to compare.
        replace(Hold::Idle);
    }
    if SCOPE.with(|s| matches!(&*s.state.borrow(), Hold::Idle))
        && let Err(err) = Box::pin(load_locked(&lock, id)).await
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

/// The layer that opens the lock scope for a route that writes ([`lock_session`]). A plain
/// tower layer rather than `axum::middleware::from_fn`: it composes with the session layer
/// into one route level, so a write pays for no extra boxed service per request.
#[derive(Debug, Clone)]
pub struct LockLayer {
    lock: Arc<SessionLock>,
}

impl LockLayer {
    /// Lock scopes on `lock`.
    pub fn new(lock: Arc<SessionLock>) -> LockLayer {
        LockLayer { lock }
    }
}

impl<S> tower::Layer<S> for LockLayer {
    type Service = LockService<S>;

    fn layer(&self, inner: S) -> LockService<S> {
        LockService {
            inner,
            lock: self.lock.clone(),
        }
    }
}

/// See [`LockLayer`].
#[derive(Debug, Clone)]
pub struct LockService<S> {
    inner: S,
    lock: Arc<SessionLock>,
}

impl<S> tower::Service<Request> for LockService<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The instance polled ready serves this request; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(lock_session(self.lock.clone(), req, ready))
    }
}

/// Opens the lock scope for a request that writes, renews the lease while the lock is held,
/// and gives it back when the request is done. With optimistic writes on, a request that can
/// be run again ([`Rerun`]) first runs without the lock; when its compare-and-set finds the
/// session changed, nothing was written, its answer is dropped, and it runs again under the
/// lock.
async fn lock_session<S>(
    lock: Arc<SessionLock>,
    req: Request,
    mut inner: S,
) -> Result<Response, std::convert::Infallible>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    let (req, rerun) = if lock.optimistic {
        match Rerun::keep(req).await {
            Ok(kept) => kept,
            Err(res) => return Ok(res),
        }
    } else {
        (req, None)
    };
    let how = match rerun {
        Some(_) => Run::Optimistic,
        None => Run::Locked(None),
    };
    // One call site, so the request's future holds one run's state, not one per path.
    let (res, conflict) = run_in_scope(&lock, inner.call(req), how).await;
    let (Some(turn), Some(rerun)) = (conflict, rerun) else {
        return Ok(res);
    };
    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
    // Boxed: the rare second run should not double the size of every request's future.
    let again = run_in_scope(&lock, inner.call(rerun.request()), Run::Locked(turn));
    Ok(Box::pin(again).await.0)
}

/// How a run of the request goes at its session.
enum Run {
    /// Without the lock first, if the session is quiet here.
    Optimistic,
    /// Under the lock, from the given place in line if it has one (a second run keeps the
    /// first run's turn, so it does not go to the back of the line).
    Locked(Option<Turn>),
}

/// One run of the request in a fresh lock scope. Returns the answer and, when the run's
/// optimistic write found the session changed (nothing was written), `Some` with the
/// request's turn in line, if it held one, for the second run.
async fn run_in_scope<F>(
    lock: &Arc<SessionLock>,
    run: F,
    how: Run,
) -> (Response, Option<Option<Turn>>)
where
    F: Future<Output = Result<Response, std::convert::Infallible>>,
{
    let (optimistic, turn) = match how {
        Run::Optimistic => (true, None),
        Run::Locked(turn) => (false, turn),
    };
    let scope = Scope {
        lock: lock.clone(),
        state: RefCell::new(Hold::Idle),
        turn: RefCell::new(turn),
        hand_offs: Cell::new(0),
        carried: RefCell::new(None),
        optimistic,
    };
    SCOPE
        .scope(Box::new(scope), async move {
            tokio::pin!(run);
            let res = tokio::select! {
                biased;
                res = &mut run => res,
                // Lock lost (Redis unreachable for a whole lease): let the request finish;
                // its fenced save will refuse to write.
                () = renew_once_held(lock) => run.await,
            };
            let res = match res {
                Ok(res) => res,
                Err(never) => match never {},
            };
            // The Redis calls below are rare at this point, and their futures are large:
            // boxed, they cost only the requests that make them, not every request's future.
            if SCOPE.with(|s| s.carried.borrow().is_some()) {
                Box::pin(flush_carried(lock)).await;
            }
            let conflict = match replace(Hold::Done) {
                Some(Hold::Held { id, token }) => {
                    Box::pin(release_or_abandon(lock, &id, token)).await;
                    false
                }
                Some(Hold::Conflict) => true,
                _ => false,
            };
            // A hand-off left for a request that gave up: free the lock in Redis now.
            let unclaimed = SCOPE.with(|s| {
                let mut turn = s.turn.borrow_mut();
                turn.as_mut().and_then(Turn::unclaimed_hand_off)
            });
            if let Some(left) = unclaimed {
                Box::pin(release_or_abandon(lock, &left.record.id, left.token)).await;
            }
            let turn = conflict.then(|| SCOPE.with(|s| s.turn.borrow_mut().take()));
            (res, turn)
        })
        .await
}

/// Once the request holds the lock, waits a third of a lease, then renews while the request
/// runs: most requests end before, and pay only for one timer (the renewal future, with its
/// Redis call, is boxed and made only for slow ones); an optimistic run, which never takes
/// the lock, pays for none.
///
/// No waker is needed for the first step: the lock is only ever taken while the request
/// itself is polled, and the `select!` in [`run_in_scope`] polls this right after it.
async fn renew_once_held(lock: &SessionLock) {
    std::future::poll_fn(|_| {
        let held = SCOPE
            .try_with(|s| matches!(&*s.state.borrow(), Hold::Held { .. }))
            .unwrap_or(false);
        if held {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
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
