//! The writers of this replica: one task per session that has jobs, which drains the
//! session's mailbox and performs what the protocol ([`super::protocol`]) decides.
//!
//! A job goes into its session's mailbox; the first job of an idle session starts the
//! session's writer. The writer feeds the protocol each Redis answer, performs the one I/O it
//! asks for next, sends the answers, and renews the lock's lease while it holds it. It ends
//! when the protocol is idle and the mailbox is empty, checked and removed in one step under
//! the mailboxes' mutex, so a job is never left in a mailbox nobody drains.
//!
//! The writer is a task of its own, not a part of any request: a caller that goes away (its
//! client disconnected, its request timed out) does not cancel the round its job is in.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_sessions::session::{Id, Record};

use super::protocol::{self, Context, Effect, Event, Io, Job, Reply, Settings, State};
use crate::{outcome::Failure, session_lock::SessionLock};

/// Where a job's answer goes.
pub type Answer = oneshot::Sender<Reply>;

/// How long a session counts as contended after the last sign of it.
pub const CONTENDED_FOR: Duration = Duration::from_secs(2);
/// Most contended marks kept; past it, expired ones are dropped, and if none has expired
/// the marks are cleared (a mark only saves an optimistic try that would fail).
const CONTENDED_KEPT: usize = 4096;

/// This replica's session writers.
pub struct Writers {
    /// Each busy session's jobs not yet taken by its writer; a session has an entry exactly
    /// while its writer runs.
    mailboxes: Mutex<HashMap<Id, Vec<Job<Answer>>>>,
    /// Sessions recently contended, and when that was last seen.
    contended: Mutex<HashMap<Id, std::time::Instant>>,
    /// The Redis side of the protocol.
    lock: Arc<SessionLock>,
    /// The protocol's settings.
    settings: Settings,
    /// Each write sets the session to expire this long after it (`SESSION_TTL`).
    ttl: Duration,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers")
            .field("settings", &self.settings)
            .field("busy", &self.busy())
            .finish_non_exhaustive()
    }
}

impl Writers {
    /// The writers of sessions locked with `lock`, writing records that live `ttl`.
    pub fn new(lock: Arc<SessionLock>, ttl: Duration) -> Writers {
        let settings = Settings {
            hand_offs: lock.hand_offs,
            group_commit: lock.group_commit,
            optimistic: lock.optimistic,
        };
        Writers {
            mailboxes: Mutex::new(HashMap::new()),
            contended: Mutex::new(HashMap::new()),
            lock,
            settings,
            ttl,
        }
    }

    /// Puts `job` in session `id`'s mailbox, starting the session's writer if it has none.
    pub fn submit(self: &Arc<Self>, id: Id, job: Job<Answer>) {
        let mut mailboxes = self.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mailbox) = mailboxes.get_mut(&id) {
            mailbox.push(job);
            return;
        }
        mailboxes.insert(id, vec![job]);
        drop(mailboxes);
        tokio::spawn(Arc::clone(self).run(id));
    }

    /// Sessions with a running writer (for tests: none may linger).
    pub fn busy(&self) -> usize {
        self.mailboxes.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn drain(&self, id: &Id) -> Vec<Job<Answer>> {
        let mut mailboxes = self.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
        mailboxes
            .get_mut(id)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Ends session `id`'s writer if its mailbox is empty: true when it did.
    fn finish(&self, id: &Id) -> bool {
        let mut mailboxes = self.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
        if mailboxes.get(id).is_some_and(|mailbox| !mailbox.is_empty()) {
            return false;
        }
        mailboxes.remove(id);
        true
    }

    fn mark_contended(&self, id: Id) {
        let now = std::time::Instant::now();
        let mut marks = self.contended.lock().unwrap_or_else(|e| e.into_inner());
        if marks.len() >= CONTENDED_KEPT && !marks.contains_key(&id) {
            marks.retain(|_, seen| now.duration_since(*seen) < CONTENDED_FOR);
            if marks.len() >= CONTENDED_KEPT {
                marks.clear();
            }
        }
        marks.insert(id, now);
    }

    fn is_contended(&self, id: Id) -> bool {
        let marks = self.contended.lock().unwrap_or_else(|e| e.into_inner());
        marks
            .get(&id)
            .is_some_and(|seen| seen.elapsed() < CONTENDED_FOR)
    }

    /// Session `id`'s writer: runs the protocol until it is idle with an empty mailbox.
    async fn run(self: Arc<Self>, id: Id) {
        let mut cx = Context::new(
            self.settings,
            self.is_contended(id),
            crate::session_lock::new_token,
        );
        let mut owned = Owned {
            state: Some(State::Idle),
            writers: &self,
            id,
            finished: false,
        };
        // The id as the Redis keys carry it, formatted once for the writer's life.
        let text = id.to_string();
        let mut events = VecDeque::from([Event::Arrived]);
        // When the lease is next renewed, while the lock is ours.
        let mut renew_at: Option<Instant> = None;
        while let Some(event) = events.pop_front() {
            cx.enqueue(self.drain(&id));
            let state = owned.state.take().unwrap_or(State::Idle);
            let (state, actions) = protocol::step(state, event, &mut cx);
            for effect in actions.effects {
                self.apply(id, &text, effect);
            }
            let holds = state.holds_lock();
            owned.state = Some(state);
            let Some(io) = actions.io else {
                continue;
            };
            if !holds {
                renew_at = None;
            } else if renew_at.is_none() {
                renew_at = Some(Instant::now() + self.lock.lease / 3);
            }
            let (event, lost) = self.perform(id, &text, io, &owned, &mut renew_at).await;
            let Some(event) = event else {
                // Idle and nothing new: this writer is done (its mailbox is gone).
                owned.finished = true;
                return;
            };
            if lost {
                events.push_back(Event::LeaseLost);
            }
            events.push_back(event);
        }
        // Unreachable: every step that is not waiting for an I/O asks for one. Should it ever
        // happen, `owned` lets go of what this writer holds as it is dropped.
        tracing::error!("session writer stopped without finishing");
    }

    fn apply(&self, id: Id, text: &str, effect: Effect<Answer>) {
        match effect {
            // A caller that went away no longer listens; its round went on regardless.
            Effect::Answer { to, reply } => {
                let _ = to.send(reply);
            }
            Effect::Abandon { token } => {
                SessionLock::clone(&self.lock).abandon(text.to_owned(), token)
            }
            Effect::MarkContended => self.mark_contended(id),
            Effect::HandOffs(n) => {
                self.lock.metrics.lock_hand_offs.inc_by(n);
            }
        }
    }

    /// Performs `io` and returns its event (`None`: the writer ends), renewing the lease
    /// meanwhile when it is due; `true` when a renewal found the lock taken over.
    async fn perform(
        &self,
        id: Id,
        text: &str,
        io: Io,
        owned: &Owned<'_>,
        renew_at: &mut Option<Instant>,
    ) -> (Option<Event>, bool) {
        let io = self.io(id, text, io);
        tokio::pin!(io);
        let mut lost = false;
        loop {
            let Some(at) = *renew_at else {
                return (io.await, lost);
            };
            tokio::select! {
                biased;
                event = &mut io => return (event, lost),
                () = tokio::time::sleep_until(at) => {
                    *renew_at = Some(Instant::now() + self.lock.lease / 3);
                    let Some(token) = owned.state.as_ref().and_then(State::token) else {
                        continue;
                    };
                    match self.lock.renew(text, token).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!("session lock lost before the write");
                            lost = true;
                        }
                        Err(err) => tracing::warn!(%err, "session lock renewal failed; retrying"),
                    }
                }
            }
        }
    }

    /// One I/O of the protocol, with its answer as the next event.
    async fn io(&self, id: Id, text: &str, io: Io) -> Option<Event> {
        let lock = &self.lock;
        Some(match io {
            Io::Idle => {
                if self.finish(&id) {
                    return None;
                }
                Event::Arrived
            }
            Io::Peek => Event::Peeked(lock.peek(text).await.map_err(|err| {
                lock.metrics.redis_errors.inc();
                tracing::warn!(%err, "session read failed");
                Failure::Unavailable
            })),
            Io::Acquire { token } => {
                let start = Instant::now();
                let acquired = lock.acquire(text, &token, start, start + lock.wait).await;
                Event::Acquired(acquired.map_err(|err| {
                    if let crate::session_lock::LockError::Redis(err) = &err {
                        lock.metrics.redis_errors.inc();
                        tracing::warn!(%err, "session lock failed");
                    }
                    err.failure()
                }))
            }
            // The changes are pure and were applied by the protocol; this step is where jobs
            // that arrived meanwhile are queued, to join the round.
            Io::Work { jobs } => {
                tracing::trace!(jobs, "changes applied");
                Event::Worked
            }
            Io::Compare { seen, mut record } => match self.encode(&mut record) {
                Some(bytes) => {
                    Event::Compared(lock.save_optimistic(text, &seen, &bytes, self.ttl).await)
                }
                None => Event::Compared(Err(Failure::Unavailable)),
            },
            Io::Save {
                token,
                mut record,
                keep,
            } => match self.encode(&mut record) {
                Some(bytes) => {
                    let saved = lock.save(text, &token, &bytes, self.ttl, keep).await;
                    Event::Saved(saved, record)
                }
                None => Event::Saved(Err(Failure::Unavailable), record),
            },
            Io::Delete { token } => Event::Deleted(lock.delete(text, &token).await),
            Io::Release { token } => Event::Released(match lock.release(text, &token).await {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(%err, "session lock release failed; abandoning it");
                    false
                }
            }),
        })
    }

    /// `record`'s bytes, expiring one `SESSION_TTL` from now.
    fn encode(&self, record: &mut Record) -> Option<Vec<u8>> {
        crate::record::renewed(record, self.ttl, self.lock.codec)
    }
}

/// The writer's state, owned so that a writer that stops mid-round (the runtime shutting
/// down, or a bug) still lets go of a lock it may hold, and leaves no mailbox that nobody
/// drains: the jobs in it are answered "nothing written" (none was taken), and the next job
/// of the session starts a new writer. The jobs the protocol held are dropped with it, so
/// their callers answer by their tickets (taken: unknown; not: nothing written).
struct Owned<'a> {
    state: Option<State<Answer>>,
    writers: &'a Writers,
    id: Id,
    /// Ended normally: the mailbox was removed when it was empty.
    finished: bool,
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.state.as_ref().and_then(State::token) {
            SessionLock::clone(&self.writers.lock).abandon(self.id.to_string(), token.to_owned());
        }
        if self.finished {
            return;
        }
        let mut mailboxes = self
            .writers
            .mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for job in mailboxes.remove(&self.id).unwrap_or_default() {
            let _ = job.reply.send(Err(Failure::Unavailable));
        }
    }
}
