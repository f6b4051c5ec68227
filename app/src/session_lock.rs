//! Per-session locking in Redis: no lost updates when one session's requests run in
//! parallel on different replicas.
//!
//! Every session store in the field (express-session, tower-sessions, Spring Session)
//! loads the whole record, changes it and writes it back, so when two requests of one
//! session overlap, the last writer wins and the other's change is lost. This middleware
//! sits *outside* the session layer on the routes that write: it takes a lock for the
//! session before the session is loaded and releases it once the session is saved, so one
//! session's writes run one at a time across every replica.
//!
//! - Acquire: `SET session-lock:{id} <random token> NX PX <lease>` and, in the same Lua
//!   script, `GET id`: the record the session layer is about to load comes back with the
//!   lock, so locking adds no round trip to the load. Retried with jittered backoff until
//!   `SESSION_LOCK_WAIT_MS`; then 503 with `Retry-After`, never an unlocked write.
//! - Save: the store writes the record *and* releases the lock in one script, and only if
//!   the lock still holds our token (a fenced write). A write whose lock was lost fails
//!   with a 503 instead of overwriting someone else's update.
//! - Renew: while the request runs, the lease is extended every third of it, only while
//!   the key still holds our token.
//! - Release: a request that did not save (a read-only outcome, an error, a deleted
//!   session) releases with a Lua compare-and-delete. A drop guard releases the lock when
//!   the client disconnects or the handler panics; if the process dies, the lease expires.
//! - Requests without a well-formed session cookie take no lock: a new session cannot race.
//!
//! The lock key carries the session id as a hash tag (`{id}`), so the lock and the record
//! live in the same Redis Cluster slot and one script can touch both. A locked write costs
//! two round trips, the same as an unlocked one.

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use fred::{clients::Pool, interfaces::LuaInterface, types::Value};
use rand::Rng;
use tokio::time::Instant;
use tower_sessions::session::{Id, Record};

use crate::{error::AppError, metrics::Metrics, session::cookie_value};

/// Takes the lock if free and returns `{1, record}`; `{0}` when someone holds it.
const ACQUIRE: &str = "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
     return {1, redis.call('get', KEYS[2])} end return {0}";
/// Writes the record and releases the lock, only while the lock is ours.
/// KEYS: record, lock. ARGV: bytes, expiry (unix seconds), token.
pub(crate) const SAVE_AND_RELEASE: &str = "if redis.call('get', KEYS[2]) == ARGV[3] then \
     redis.call('set', KEYS[1], ARGV[1], 'EXAT', ARGV[2]) redis.call('del', KEYS[2]) \
     return 1 end return 0";
/// Deletes the lock only if it still holds our token, so a request whose lease ran out
/// never frees a lock that another request holds by now.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) else return 0 end";
/// Extends the lease only if the lock is still ours.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
/// Length of the base64 HMAC that a signed cookie's value starts with (cookie crate).
const SIGNATURE_LEN: usize = 44;
/// Backoff bounds between attempts while the lock is taken.
const MIN_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(8);

/// The lock's settings and the Redis pool it lives in.
#[derive(Debug, Clone)]
pub struct SessionLock {
    /// Where lock keys live: the same Redis as the sessions.
    pub pool: Pool,
    /// The session cookie's name, whose value names the session.
    pub cookie_name: &'static str,
    /// Whether cookie values carry a signature before the session id.
    pub signed: bool,
    /// How long a lock lives unless renewed: the backstop when a holder dies.
    pub lease: Duration,
    /// How long a request waits for the lock before answering 503.
    pub wait: Duration,
    /// Wait times and timeouts are exported here.
    pub metrics: Arc<Metrics>,
}

/// Why no lock was taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another request kept the lock for the whole wait.
    #[error("lock still taken after the wait")]
    Timeout,
    /// Redis failed or did not answer in time.
    #[error(transparent)]
    Redis(#[from] fred::error::Error),
}

impl From<LockError> for AppError {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Timeout => AppError::LockTimeout,
            LockError::Redis(err) => AppError::Lock(err),
        }
    }
}

/// The Redis key of the lock of session `id`. The `{id}` hash tag puts it in the record's
/// Redis Cluster slot.
pub fn lock_key(id: &str) -> String {
    format!("session-lock:{{{id}}}")
}

/// The lock held by the request being served, visible to the store inside it.
struct Held {
    id: Id,
    key: String,
    token: String,
    /// The record fetched with the lock, until the session layer asks for it.
    prefetched: RefCell<Option<Option<Record>>>,
    /// Set once the store's save released the lock.
    released: Cell<bool>,
}

tokio::task_local! {
    static HELD: Held;
}

/// The record fetched together with the lock of session `id`, once.
pub(crate) fn take_prefetched(id: &Id) -> Option<Option<Record>> {
    HELD.try_with(|held| {
        if held.id == *id {
            held.prefetched.borrow_mut().take()
        } else {
            None
        }
    })
    .ok()
    .flatten()
}

/// The lock key and token if this request holds the lock of session `id`.
pub(crate) fn held_for(id: &Id) -> Option<(String, String)> {
    HELD.try_with(|held| (held.id == *id).then(|| (held.key.clone(), held.token.clone())))
        .ok()
        .flatten()
}

/// Records that the store released the lock along with its save.
pub(crate) fn mark_released() {
    let _ = HELD.try_with(|held| held.released.set(true));
}

/// The session id named by the request's cookie, if it is well formed.
fn session_id(req: &Request, name: &str, signed: bool) -> Option<Id> {
    let value = cookie_value(req.headers(), name)?;
    // The signature is checked by the session layer; a forged one only ever locks (and
    // prefetches) a session that the session layer then refuses to load.
    let id = if signed {
        value.get(SIGNATURE_LEN..)?
    } else {
        value
    };
    id.parse().ok()
}

fn decode(value: &Value) -> Option<Record> {
    let bytes = value.as_bytes()?;
    match rmp_serde::from_slice(bytes) {
        Ok(record) => Some(record),
        Err(err) => {
            tracing::warn!(%err, "undecodable session record; starting a fresh session");
            None
        }
    }
}

/// A lock just taken, with the session record read in the same round trip.
struct Acquired {
    token: String,
    record: Option<Record>,
}

impl SessionLock {
    /// Takes the lock of session `id`, waiting up to `self.wait`.
    async fn acquire(&self, id: &Id, key: &str) -> Result<Acquired, LockError> {
        let token = format!("{:032x}", rand::rng().random::<u128>());
        let lease_ms = self.lease.as_millis().to_string();
        let start = Instant::now();
        let deadline = start + self.wait;
        let mut backoff = MIN_BACKOFF;
        loop {
            let answer: Value = self
                .pool
                .eval(
                    ACQUIRE,
                    vec![key.to_owned(), id.to_string()],
                    vec![token.as_str(), lease_ms.as_str()],
                )
                .await?;
            let mut answer = answer.into_array().into_iter();
            if answer.next().and_then(|taken| taken.as_i64()) == Some(1) {
                self.metrics
                    .lock_wait
                    .observe(start.elapsed().as_secs_f64());
                let record = answer.next().as_ref().and_then(decode);
                return Ok(Acquired { token, record });
            }
            let now = Instant::now();
            if now >= deadline {
                self.metrics
                    .lock_wait
                    .observe(start.elapsed().as_secs_f64());
                self.metrics.lock_timeouts.inc();
                return Err(LockError::Timeout);
            }
            // Full jitter spreads the waiters of one hot session across time.
            let pause = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::time::sleep(pause.min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Keeps extending the lease while the request runs, so a slow request keeps its lock.
/// Returns only if the lock was lost.
async fn renew(pool: Pool, key: String, token: String, lease: Duration) {
    let lease_ms = lease.as_millis().to_string();
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await; // the first tick is immediate; the lock is fresh
    loop {
        tick.tick().await;
        let renewed: Result<i64, _> = pool
            .eval(
                RENEW,
                vec![key.as_str()],
                vec![token.as_str(), lease_ms.as_str()],
            )
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(lock = %key, "session lock lost before the request finished");
                return;
            }
            Err(err) => tracing::warn!(%err, lock = %key, "session lock renewal failed; retrying"),
        }
    }
}

async fn release(pool: &Pool, key: &str, token: &str) {
    let released: Result<i64, _> = pool.eval(RELEASE, vec![key], vec![token]).await;
    if let Err(err) = released {
        // The lease expires on its own; others wait at most that long.
        tracing::warn!(%err, lock = %key, "session lock release failed");
    }
}

/// Releases the lock when dropped unless it was released already: covers a client that
/// disconnects (the request future is dropped) and a handler that panics.
struct Guard {
    pool: Pool,
    key: String,
    token: String,
    armed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let pool = self.pool.clone();
            let key = std::mem::take(&mut self.key);
            let token = std::mem::take(&mut self.token);
            handle.spawn(async move { release(&pool, &key, &token).await });
        }
    }
}

/// Middleware: serialises the requests of one session around the session layer inside it.
pub async fn lock_session(
    State(lock): State<Arc<SessionLock>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(id) = session_id(&req, lock.cookie_name, lock.signed) else {
        return next.run(req).await;
    };
    let key = lock_key(&id.to_string());
    let acquired = match lock.acquire(&id, &key).await {
        Ok(acquired) => acquired,
        Err(err) => {
            if matches!(err, LockError::Redis(_)) {
                lock.metrics.redis_errors.inc();
            }
            return AppError::from(err).into_response();
        }
    };
    let mut guard = Guard {
        pool: lock.pool.clone(),
        key: key.clone(),
        token: acquired.token.clone(),
        armed: true,
    };
    let held = Held {
        id,
        key: key.clone(),
        token: acquired.token.clone(),
        prefetched: RefCell::new(Some(acquired.record)),
        released: Cell::new(false),
    };
    let renewal = renew(lock.pool.clone(), key, acquired.token, lock.lease);
    let (res, released) = HELD
        .scope(held, async move {
            let run = next.run(req);
            tokio::pin!(run);
            let res = tokio::select! {
                res = &mut run => res,
                // Lock lost (Redis unreachable for a whole lease): let the request finish;
                // its fenced save will refuse to write.
                () = renewal => run.await,
            };
            (
                res,
                HELD.try_with(|held| held.released.get()).unwrap_or(false),
            )
        })
        .await;
    if !released {
        release(&guard.pool, &guard.key, &guard.token).await;
    }
    guard.armed = false;
    res
}
