//! The Redis side of the session writer ([`crate::writer`]): the commands and scripts each
//! step of its protocol sends, and what their answers mean. The design, once, with its state
//! diagram: `docs/session-writer.md`.
//!
//! - **Peek**: `MGET` of the record and the lock, one round trip.
//! - **Compare-and-set** (an optimistic write): one script writes the new record only if the
//!   record is still the bytes the writer read and nobody holds the lock; `0` means nothing
//!   was written. **Resolve** (after a compare-and-set Redis did not confirm): the record
//!   holds what it wrote (applied), or still holds what it read: then one trailing space is
//!   appended, a byte change that decodes to the same record ([`crate::record`]) but fails
//!   the late compare-and-set, so it never applies.
//! - **Acquire**: `SET lock <random token> NX PX <lease>` and, in the same script, `GET` the
//!   record. When the lock is taken, the first waiter writes its token as "next in line" (a
//!   short-lived key its retries keep alive) and sleeps until the holder lets go: the holder
//!   then hands the lock straight to that token and publishes a wake-up
//!   ([`crate::lock_wakeups`]). Taking a free lock takes the taker out of line. Waiters also
//!   retry on a slow fallback timer, until `SESSION_LOCK_WAIT`; then 503 (busy).
//! - **Save**: write the record (`PX`, relative expiry), only while the lock still holds the
//!   writer's token (a fenced write) and only while the record still exists (`XX`: a
//!   session deleted meanwhile stays deleted); then let go of the lock, or keep it (renewing
//!   its lease) for the writer's next round. Each save's random id goes on a short list of
//!   recent saves, so that a save whose answer was lost can be resolved.
//! - **Resolve** (after a save Redis did not confirm): the save's id on the list says it ran.
//!   Otherwise, if the lock still holds the token, the save has not run: the lock is deleted,
//!   and it never will (it is fenced). Only when neither tells is the outcome unknown.
//! - Every step that lets go of the lock hands it to the waiter next in line, if any, in the
//!   same script, and never to the releaser's own token.
//! - **Delete** (logout): under the lock, delete the record and let go of the lock in one
//!   script.
//! - **Renew**: extend the lease, only while the lock holds the token.
//! - **Abandon** (an acquire or release whose answer was lost): free the lock if it holds the
//!   token, else leave a short tombstone that makes the acquire, should it still arrive,
//!   refuse. Retried until Redis answers.
//!
//! Each step under the lock is one Lua script ([`crate::lock_scripts`]), atomic at Redis and
//! one round trip. Keys ([`crate::keys`]) carry the session id as a hash tag
//! (`session:{id}:lock`), so the record, its lock and the lock's helper keys live in one Redis
//! Cluster slot. Leases and expiries are relative (`PX`), on Redis's clock.
//!
//! Under Sentinel every write is fenced ([`crate::replication`]): sent only to the master
//! Sentinel names, written only while that server has its replicas in sync (the script checks
//! first, and answers `-1` having written nothing), acknowledged only once they confirmed it
//! (`WAIT` on the same connection). Every write recognises a retry of itself (its save id on
//! the list of recent saves), so the client may resend a command cut off with its connection.
//!
//! What this does **not** guarantee: without Sentinel, Redis replication is asynchronous, so a
//! failover can lose the last writes acknowledged by the old master (a lock included).

use std::{sync::Arc, time::Duration};

use fred::{
    bytes::Bytes,
    clients::Pool,
    interfaces::{ClientLike, KeysInterface, ServerInterface},
    types::{Value, config::Options},
};
use rand::Rng;
use tokio::time::Instant;

use crate::{
    config::SessionCodec,
    keys::Keys,
    lock_scripts::{
        ABANDON, ACQUIRE, CAS_RESOLVE, CAS_SAVE, CAS_SAVE_PLAIN, DELETE_HELD, RELEASE, RENEW,
        RESOLVE, SAVE, WAITING_MS,
    },
    lock_wakeups::{self, Wakeups},
    metrics::Metrics,
    outcome::Failure,
    replication::{Need, Replication},
};

/// How many recent save ids a session keeps for resolving lost answers.
const SAVES_KEPT: u32 = 16;
/// How long the list of recent saves outlives the last save.
const SAVES_TTL: Duration = Duration::from_secs(10);
/// How long an abandoned acquire keeps trying to undo itself while Redis is silent.
const ABANDON_FOR: Duration = Duration::from_secs(60);

/// A fresh lock token: 128 random bits in hex.
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// The lock's settings, the Redis pool it lives in, and this replica's lines and waiters.
#[derive(Debug, Clone)]
pub struct SessionLock {
    /// Where lock keys live: the same Redis as the sessions.
    pub pool: Pool,
    /// How long a lock lives unless renewed: the backstop when a holder dies.
    pub lease: Duration,
    /// How long a request waits for the lock before answering 503.
    pub wait: Duration,
    /// How long a save that Redis did not confirm is given to be resolved.
    pub resolve: Duration,
    /// Most writes served under one lock beyond the first before it goes back to Redis.
    pub hand_offs: u32,
    /// Whether writes that arrive while a locked round works join it (group commit).
    pub group_commit: bool,
    /// Whether an uncontended write may first try without the lock (compare-and-set).
    pub optimistic: bool,
    /// Waiters for locks held elsewhere, woken by the holder's release.
    pub wakeups: Arc<Wakeups>,
    /// Wait times, timeouts and unknown outcomes are exported here.
    pub metrics: Arc<Metrics>,
    /// Where the record, the lock and its helper keys live.
    pub keys: Keys,
    /// How records are written.
    pub codec: SessionCodec,
    /// What a write needs before it is acknowledged: the server Sentinel names master, and
    /// its replicas in sync ([`crate::replication`]).
    pub replication: Replication,
    /// Whether the Redis client retries a command cut off with its connection: then the
    /// optimistic write records its save id too, so that its retry recognises it ran.
    pub retry_writes: bool,
}

/// What a write script's answer may be trusted for.
enum Written {
    /// The script's answer, from the master, confirmed by the replicas it needs.
    Answer(i64),
    /// Fenced: the server is not the master, or lacks replicas in sync. Nothing written.
    Refused,
}

/// A `WAIT` that confirmed fewer replicas than the write needs: the write may be on the
/// master only, and lost with it. Treated as a lost answer.
fn unconfirmed(acked: i64, need: i64) -> fred::error::Error {
    fred::error::Error::new(
        fred::error::ErrorKind::Timeout,
        format!("WAIT: {acked} of {need} replicas confirmed the write"),
    )
}

/// Whether Redis refused a write script before it wrote anything: `min-replicas-to-write`
/// (`NOREPLICAS`) or a replica (`READONLY`: a demoted master).
fn refused(err: &fred::error::Error) -> bool {
    let details = err.details();
    details.contains("NOREPLICAS") || details.contains("READONLY")
}

/// What a peek saw.
#[derive(Debug, Clone)]
pub struct Peek {
    /// The record's bytes, if it exists.
    pub record: Option<Bytes>,
    /// Whether somebody holds the session's lock.
    pub locked: bool,
}

/// What a compare-and-set found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// Written.
    Written,
    /// The record changed or somebody held the lock: nothing was written.
    Conflict,
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

impl LockError {
    /// What the answer may claim: nothing was written either way.
    pub fn failure(&self) -> Failure {
        match self {
            LockError::Timeout => Failure::Busy,
            LockError::Redis(_) => Failure::Unavailable,
        }
    }
}

/// The settings of [`SessionLock::new`].
#[derive(Debug, Clone)]
pub struct LockSettings {
    /// See [`SessionLock::lease`].
    pub lease: Duration,
    /// See [`SessionLock::wait`].
    pub wait: Duration,
    /// See [`SessionLock::resolve`].
    pub resolve: Duration,
    /// See [`SessionLock::hand_offs`].
    pub hand_offs: u32,
    /// See [`SessionLock::group_commit`].
    pub group_commit: bool,
    /// See [`SessionLock::optimistic`].
    pub optimistic: bool,
    /// See [`SessionLock::codec`].
    pub codec: SessionCodec,
    /// See [`SessionLock::replication`].
    pub replication: Replication,
    /// See [`SessionLock::retry_writes`].
    pub retry_writes: bool,
}

impl SessionLock {
    /// The lock on `pool`, waking its waiters through `wakeups`.
    pub fn new(
        pool: Pool,
        settings: LockSettings,
        keys: Keys,
        wakeups: Arc<Wakeups>,
        metrics: Arc<Metrics>,
    ) -> Arc<SessionLock> {
        Arc::new(SessionLock {
            pool,
            lease: settings.lease,
            wait: settings.wait,
            resolve: settings.resolve,
            hand_offs: settings.hand_offs,
            group_commit: settings.group_commit,
            optimistic: settings.optimistic,
            wakeups,
            metrics,
            keys,
            codec: settings.codec,
            replication: settings.replication,
            retry_writes: settings.retry_writes,
        })
    }

    /// Retries `attempt` until it returns `Some` or `deadline` passes: after each failed
    /// attempt it sleeps until the holder's release wakes it (or the fallback timer).
    /// `attempt` is told whether an earlier attempt failed (and so may have put its token in
    /// line).
    async fn wait_for<T, F, Fut>(
        &self,
        id: &str,
        start: Instant,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, LockError>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<Option<T>, fred::error::Error>>,
    {
        // Uncontended, the first attempt succeeds and nothing is registered.
        let mut watch: Option<crate::lock_wakeups::Watch<'_>> = None;
        loop {
            // Once waiting, the wake-up is armed before each attempt, so a hand-off right
            // after an attempt is not missed.
            let notify = watch.as_ref().map(|w| Arc::clone(&w.notify));
            let mut woken = notify.as_ref().map(|n| Box::pin(n.notified()));
            if let Some(w) = woken.as_mut() {
                w.as_mut().enable();
            }
            if let Some(done) = attempt(watch.is_some()).await? {
                self.metrics
                    .lock_wait
                    .observe(start.elapsed().as_secs_f64());
                return Ok(done);
            }
            let now = Instant::now();
            if now >= deadline {
                self.metrics
                    .lock_wait
                    .observe(start.elapsed().as_secs_f64());
                self.metrics.lock_timeouts.inc();
                return Err(LockError::Timeout);
            }
            let Some(woken) = woken else {
                // First failure: register, then try again at once (a hand-off may have come
                // before the registration).
                watch = Some(self.wakeups.watch(id));
                continue;
            };
            // Jitter spreads fallback retries of several replicas across time.
            let fallback = lock_wakeups::FALLBACK.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(fallback.min(deadline - now)) => {}
            }
        }
    }

    /// Takes the lock of session `id` with `token`, waiting until `deadline` (the wait began
    /// at `start`), and returns the record's bytes read in the same script. On an error the
    /// caller must [`abandon`](Self::abandon) the token: the acquire may still run, or the
    /// token may still be handed the lock.
    pub async fn acquire(
        &self,
        id: &str,
        token: &str,
        start: Instant,
        deadline: Instant,
    ) -> Result<Option<Bytes>, LockError> {
        let keys = vec![
            self.keys.lock(id),
            self.keys.record(id),
            self.keys.tombstone(id, token),
            self.keys.waiting(id),
        ];
        let lease_ms = self.lease.as_millis().to_string();
        self.wait_for(id, start, deadline, |in_line| {
            let keys = &keys;
            let lease_ms = lease_ms.as_str();
            async move {
                let in_line = if in_line { "1" } else { "0" };
                let answer: Value = ACQUIRE
                    .run(&self.pool, || {
                        (keys.clone(), vec![token, lease_ms, WAITING_MS, in_line])
                    })
                    .await?;
                let mut answer = answer.into_array().into_iter();
                Ok(match answer.next().and_then(|taken| taken.as_i64()) {
                    Some(1) => Some(answer.next().and_then(Value::into_bytes)),
                    _ => None,
                })
            }
        })
        .await
    }

    /// Runs the write script `lua` on one connection, with the replicas it needs as the
    /// argument `call` is given, then waits (`WAIT`, on the same connection: it covers that
    /// connection's writes) until they confirmed it. A connection to a deposed master, and a
    /// script that fenced itself (`-1`) or that Redis refused, write nothing: [`Written::Refused`].
    /// An error means the outcome is not known (the answer was lost, or not confirmed).
    async fn write<K, V>(
        &self,
        lua: &crate::lock_scripts::Lua,
        call: impl Fn(i64) -> (K, V),
    ) -> Result<Written, fred::error::Error>
    where
        K: Into<fred::types::MultipleKeys> + Send,
        V: TryInto<fred::types::MultipleValues> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        let client = self.pool.next();
        if !self.replication.is_on() {
            // One Redis or a Cluster: its answer is the whole story.
            return match lua.run(client, || call(0)).await {
                Ok(-1) => Ok(Written::Refused),
                Ok(answer) => Ok(Written::Answer(answer)),
                Err(err) if refused(&err) => Ok(Written::Refused),
                Err(err) => Err(err),
            };
        }
        let connected = client.active_connections();
        let need = match self.replication.need(&connected) {
            Need::Deposed => return Ok(Written::Refused),
            Need::Nothing => 0,
            Need::Replicas(n) => i64::from(n),
        };
        let answer: i64 = match lua.run(client, || call(need)).await {
            Ok(answer) => answer,
            Err(err) if refused(&err) => return Ok(Written::Refused),
            Err(err) => return Err(err),
        };
        if answer == -1 {
            return Ok(Written::Refused);
        }
        if need > 0 {
            // WAIT covers the writes of its own connection only: after a reconnection it
            // would confirm nothing about this one.
            if client.active_connections() != connected {
                return Err(unconfirmed(0, need));
            }
            // Never retried, for the same reason.
            let once = Options {
                max_attempts: Some(1),
                ..Options::default()
            };
            let acked: i64 = client
                .with_options(&once)
                .wait(need, millis(self.confirm()))
                .await?;
            if acked < need {
                return Err(unconfirmed(acked, need));
            }
        }
        Ok(Written::Answer(answer))
    }

    /// How long a write waits for its replicas: half a command timeout, so the `WAIT` is
    /// answered before the command times out.
    fn confirm(&self) -> Duration {
        self.resolve / 4
    }

    /// Reads session `id`'s record and whether anybody holds its lock, in one command
    /// (`MGET`; the record and the lock share a hash tag, so one Cluster slot).
    pub async fn peek(&self, id: &str) -> Result<Peek, fred::error::Error> {
        let (record, lock) = self.keys.record_and_lock(id);
        let values: Vec<Value> = self.pool.mget(vec![record, lock]).await?;
        let mut values = values.into_iter();
        let record = values.next().and_then(Value::into_bytes);
        let locked = values.next().is_some_and(|v| !v.is_null());
        Ok(Peek { record, locked })
    }

    /// Writes `bytes` as session `id`'s record, expiring `ttl` from now, only if the record
    /// is still `seen` (the bytes the writer read) and nobody holds the lock. A write whose
    /// answer was lost is resolved: applied, or made sure never to apply.
    pub async fn save_optimistic(
        &self,
        id: &str,
        seen: &Bytes,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<Cas, Failure> {
        let (record, lock) = self.keys.record_and_lock(id);
        if !self.retry_writes && !self.replication.is_on() {
            let sent = CAS_SAVE_PLAIN
                .run(self.pool.next(), || {
                    (
                        vec![record.clone(), lock.clone()],
                        vec![
                            Value::Bytes(seen.clone()),
                            Value::from(bytes),
                            Value::from(millis(ttl)),
                        ],
                    )
                })
                .await
                .map(Written::Answer);
            return self.cas_outcome(id, &record, seen, bytes, sent).await;
        }
        let saves = self.keys.saves(id);
        let save_id = new_token();
        let sent = self
            .write(&CAS_SAVE, |need| {
                (
                    vec![record.clone(), lock.clone(), saves.clone()],
                    vec![
                        Value::Bytes(seen.clone()),
                        Value::from(bytes),
                        Value::from(millis(ttl)),
                        Value::from(save_id.as_str()),
                        Value::from(i64::from(SAVES_KEPT) - 1),
                        Value::from(millis(SAVES_TTL)),
                        Value::from(need),
                        Value::from(if self.retry_writes { "1" } else { "0" }),
                    ],
                )
            })
            .await;
        self.cas_outcome(id, &record, seen, bytes, sent).await
    }

    /// What a compare-and-set's answer `sent` means, resolving a lost one; counted.
    async fn cas_outcome(
        &self,
        id: &str,
        record: &str,
        seen: &Bytes,
        bytes: &[u8],
        sent: Result<Written, fred::error::Error>,
    ) -> Result<Cas, Failure> {
        let outcome = match sent {
            Ok(Written::Answer(1)) => Ok(Cas::Written),
            Ok(Written::Answer(2)) => Err(Failure::Gone),
            Ok(Written::Answer(_)) => Ok(Cas::Conflict),
            Ok(Written::Refused) => {
                tracing::warn!(session = %abbrev(id), "optimistic save fenced: not the master, or its replicas are not in sync; nothing written");
                Err(Failure::Unavailable)
            }
            Err(err) => {
                tracing::warn!(%err, session = %abbrev(id), "optimistic save not confirmed; resolving");
                // Resolving is the rare path and its future is large: behind a pointer, it does
                // not make every optimistic write's future that large.
                match Box::pin(self.resolve_optimistic(id, record, seen, bytes)).await {
                    // Not applied, and fenced so it never will be: as after a lost race,
                    // nothing was written and the change may run again, under the lock.
                    Err(Failure::Unavailable) => Ok(Cas::Conflict),
                    resolved => resolved,
                }
            }
        };
        match outcome {
            Ok(Cas::Written) => self.metrics.optimistic_writes.inc(),
            Ok(Cas::Conflict) => self.metrics.optimistic_conflicts.inc(),
            Err(_) => 0,
        };
        outcome
    }

    /// Finds out whether an optimistic write ran; if it has not, makes sure it never will.
    async fn resolve_optimistic(
        &self,
        id: &str,
        record: &str,
        seen: &Bytes,
        bytes: &[u8],
    ) -> Result<Cas, Failure> {
        let written = Bytes::copy_from_slice(bytes);
        self.resolve_with("optimistic save", id, || {
            self.write(&CAS_RESOLVE, |need| {
                (
                    vec![record.to_owned()],
                    vec![
                        Value::Bytes(seen.clone()),
                        Value::Bytes(written.clone()),
                        Value::from(need),
                    ],
                )
            })
        })
        .await
        .map(|()| Cas::Written)
    }

    /// Runs `attempt`, a resolving script (1: applied; 0: not applied, and now never will
    /// be; 2: cannot tell), until Redis answers or the resolve time is up. `Ok` when applied,
    /// [`Failure::Unavailable`] when not, [`Failure::Unknown`] (counted) when nobody can tell.
    async fn resolve_with<F, Fut>(
        &self,
        what: &str,
        id: &str,
        mut attempt: F,
    ) -> Result<(), Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Written, fred::error::Error>>,
    {
        let deadline = Instant::now() + self.resolve;
        while Instant::now() < deadline {
            match attempt().await {
                Ok(Written::Answer(1)) => return Ok(()),
                Ok(Written::Answer(0)) => return Err(Failure::Unavailable),
                Ok(Written::Answer(_)) => break,
                // Asked a deposed master, or one without its replicas: ask again (the pool
                // follows Sentinel to the new master).
                Ok(Written::Refused) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => {
                    tracing::debug!(%err, what, "resolving: Redis still silent");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        self.metrics.unknown_outcomes.inc();
        tracing::warn!(session = %abbrev(id), what, "outcome unknown");
        Err(Failure::Unknown)
    }

    /// Writes `bytes` as session `id`'s record, expiring `ttl` from now, if `token` still
    /// holds the lock; then frees the lock, or with `keep` renews it for the writer's next round.
    /// Resolves a save that Redis did not confirm (and then never keeps the lock). Returns
    /// whether the lock is still held (kept).
    pub async fn save(
        &self,
        id: &str,
        token: &str,
        bytes: &[u8],
        ttl: Duration,
        keep: bool,
    ) -> Result<bool, Failure> {
        let id = id.to_string();
        let save_id = new_token();
        let sent = self
            .write(&SAVE, |need| {
                (
                    vec![
                        self.keys.record(&id),
                        self.keys.lock(&id),
                        self.keys.saves(&id),
                        self.keys.waiting(&id),
                    ],
                    vec![
                        Value::from(bytes),
                        Value::from(millis(ttl)),
                        Value::from(token),
                        Value::from(i64::from(SAVES_KEPT) - 1),
                        Value::from(millis(SAVES_TTL)),
                        Value::from(if keep { "1" } else { "0" }),
                        Value::from(millis(self.lease)),
                        Value::from(self.keys.channel()),
                        Value::from(id.as_str()),
                        Value::from(save_id.as_str()),
                        Value::from(need),
                    ],
                )
            })
            .await;
        match sent {
            Ok(Written::Answer(1)) => Ok(keep),
            Ok(Written::Answer(2)) => Err(Failure::Gone),
            // The lease ran out and another request may have written since: refuse rather
            // than overwrite its update.
            Ok(Written::Answer(_)) => {
                tracing::warn!(session = %abbrev(&id), "session lock lost before the save; nothing written");
                Err(Failure::Unavailable)
            }
            Ok(Written::Refused) => {
                tracing::warn!(session = %abbrev(&id), "save fenced: not the master, or its replicas are not in sync; nothing written");
                // The lock may still hold the token (on the new master too): let it go.
                self.clone().abandon(id, token.to_owned());
                Err(Failure::Unavailable)
            }
            Err(err) => {
                tracing::warn!(%err, session = %abbrev(&id), "save not confirmed; resolving");
                // Applied or not, resolving freed the lock: nothing to hand on.
                self.resolve(&id, token, &save_id).await.map(|()| false)
            }
        }
    }

    /// Finds out whether the save `save_id` made with `token` ran, making sure it never runs
    /// later if it has not yet. Frees the lock either way.
    async fn resolve(&self, id: &str, token: &str, save_id: &str) -> Result<(), Failure> {
        let keys = vec![
            self.keys.lock(id),
            self.keys.saves(id),
            self.keys.waiting(id),
        ];
        let kept = SAVES_KEPT.to_string();
        let lease_ms = millis(self.lease).to_string();
        let resolved = self
            .resolve_with("save", id, || {
                self.write(&RESOLVE, |need| {
                    (
                        keys.clone(),
                        vec![
                            Value::from(token),
                            Value::from(save_id),
                            Value::from(kept.as_str()),
                            Value::from(lease_ms.as_str()),
                            Value::from(self.keys.channel()),
                            Value::from(id),
                            Value::from(need),
                        ],
                    )
                })
            })
            .await;
        if resolved == Err(Failure::Unknown) {
            // Should the save still be queued somewhere, freeing the lock fences it out.
            self.clone().abandon(id.to_owned(), token.to_owned());
        }
        resolved
    }

    /// Deletes session `id`'s record under the lock `token` holds, letting go of the lock.
    pub async fn delete(&self, id: &str, token: &str) -> Result<(), Failure> {
        let id = id.to_string();
        let keys = vec![
            self.keys.record(&id),
            self.keys.lock(&id),
            self.keys.waiting(&id),
        ];
        let lease_ms = millis(self.lease).to_string();
        let deleted = self
            .write(&DELETE_HELD, |need| {
                (
                    keys.clone(),
                    vec![
                        Value::from(token),
                        Value::from(lease_ms.as_str()),
                        Value::from(self.keys.channel()),
                        Value::from(id.as_str()),
                        Value::from(need),
                    ],
                )
            })
            .await;
        match deleted {
            Ok(Written::Answer(1)) => Ok(()),
            Ok(Written::Answer(_)) => Err(Failure::Unavailable),
            Ok(Written::Refused) => {
                tracing::warn!(session = %abbrev(&id), "delete fenced: not the master, or its replicas are not in sync; nothing written");
                self.clone().abandon(id, token.to_owned());
                Err(Failure::Unavailable)
            }
            Err(err) => {
                tracing::warn!(%err, session = %abbrev(&id), "delete not confirmed");
                self.metrics.unknown_outcomes.inc();
                self.clone().abandon(id, token.to_owned());
                Err(Failure::Unknown)
            }
        }
    }

    /// Extends the lease. `Ok(false)` when the lock is no longer ours.
    pub async fn renew(&self, id: &str, token: &str) -> Result<bool, fred::error::Error> {
        let lease_ms = self.lease.as_millis().to_string();
        let renewed: i64 = RENEW
            .run(&self.pool, || {
                (vec![self.keys.lock(id)], vec![token, lease_ms.as_str()])
            })
            .await?;
        Ok(renewed == 1)
    }

    /// Frees the lock if `token` still holds it, waking waiters elsewhere.
    pub async fn release(&self, id: &str, token: &str) -> Result<(), fred::error::Error> {
        let id = id.to_string();
        let lease_ms = millis(self.lease).to_string();
        let _: i64 = RELEASE
            .run(&self.pool, || {
                (
                    vec![self.keys.lock(&id), self.keys.waiting(&id)],
                    vec![token, lease_ms.as_str(), self.keys.channel(), id.as_str()],
                )
            })
            .await?;
        Ok(())
    }

    /// In the background, undoes an acquire or a save whose answer never came: frees the lock
    /// if `token` holds it, or leaves a tombstone so the acquire refuses should it still
    /// arrive. Retried until Redis answers (at most a minute).
    pub fn abandon(self, id: String, token: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let keys = vec![
                self.keys.lock(&id),
                self.keys.tombstone(&id, &token),
                self.keys.waiting(&id),
            ];
            let tombstone_ms = millis(self.lease.max(Duration::from_secs(1))).to_string();
            let lease_ms = millis(self.lease).to_string();
            let give_up = Instant::now() + ABANDON_FOR;
            let mut pause = Duration::from_millis(10);
            while Instant::now() < give_up {
                let undone: Result<i64, _> = ABANDON.run(&self.pool, || (keys.clone(), vec![
                            token.as_str(),
                            tombstone_ms.as_str(),
                            lease_ms.as_str(),
                            self.keys.channel(),
                            id.as_str(),
                        ]))
                    .await;
                match undone {
                    Ok(_) => return,
                    Err(err) => tracing::debug!(%err, "abandoning a session lock: retrying"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            tracing::warn!(session = %abbrev(&id), "gave up abandoning a session lock; its lease ends it");
        });
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn abbrev(id: &str) -> String {
    crate::session::abbreviate(id)
}
