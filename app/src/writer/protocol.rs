//! The session writer's protocol as a state machine, with no I/O: [`step`] takes the state
//! and one event (a Redis answer, new jobs) and returns the next state and what to do. The
//! writer task ([`super::task`]) performs the actions and feeds their results back; every
//! transition here is unit-tested without Redis. The design, with its state diagram:
//! `docs/session-writer.md`.
//!
//! One writer per session per replica drains the session's mailbox in **rounds**. A round
//! applies its jobs' changes in arrival order to one copy of the record, writes it once, and
//! answers each job with the outcome of that write: no answer without a confirmed write
//! behind it.
//! - **Optimistic round** (one job, a quiet session): read the record and the lock in one
//!   command; compare-and-set the new record. A conflict reruns the change under the lock.
//! - **Locked round**: take the lock (the record comes with it), apply, save.
//! - **Tenure**: while jobs keep arriving the lock is kept from round to round, until
//!   `hand_offs + 1` jobs were served under it; then it goes back to Redis, where waiters on
//!   other replicas are next. With group commit, jobs that arrive while a locked round works
//!   join it, within the same budget.
//! - A **delete** is a round of its own.
//! - After any failed or unconfirmed write, nothing in memory is trusted: the next round
//!   reads from Redis again.

use std::collections::VecDeque;
use std::sync::Arc;

use fred::bytes::Bytes;
use tower_sessions::session::Record;

use crate::{
    outcome::Failure,
    replay::RequestKey,
    session::{State as SessionState, Visits},
    session_lock::{Cas, Peek},
    ticket::Ticket,
};

/// A change to apply to a session: pure, so it can run again after a conflict.
pub type Change = Arc<dyn Fn(&mut Visits) + Send + Sync>;

/// What a caller asks of the writer.
#[derive(Clone)]
pub enum Order {
    /// Apply `change` once for `request` (a replay of an applied request changes nothing).
    Update {
        /// The request's identity, for exactly-once ([`crate::replay`]).
        request: RequestKey,
        /// The change.
        change: Change,
    },
    /// End the session.
    Delete,
}

impl std::fmt::Debug for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Order::Update { request, .. } => f
                .debug_struct("Update")
                .field("request", request)
                .finish_non_exhaustive(),
            Order::Delete => f.write_str("Delete"),
        }
    }
}

/// One caller's order, its ticket, and where its answer goes (`R`: a channel in the app, a
/// number in the tests).
#[derive(Debug)]
pub struct Job<R> {
    /// What to do.
    pub order: Order,
    /// Taken when the job enters a round; a withdrawn job is dropped unapplied.
    pub ticket: Ticket,
    /// Where the answer goes.
    pub reply: R,
}

/// What a job's change came to, once the write that carries it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The visits after the change (for a replay: the count it produced then).
    Updated(Visits),
    /// The session was deleted (or did not exist).
    Deleted,
    /// No record under this id (expired, deleted, never existed): nothing was changed; the
    /// caller starts a new session.
    Absent,
}

/// A job's answer.
pub type Reply = Result<Done, Failure>;

/// What happened: the result of the action the writer performed, or new jobs.
#[derive(Debug)]
pub enum Event {
    /// New jobs are in the queue ([`Context::enqueue`]).
    Arrived,
    /// The answer to [`Io::Peek`].
    Peeked(Result<Peek, Failure>),
    /// The answer to [`Io::Acquire`]: the record's bytes read with the lock.
    /// `Err(Busy)`: still taken after the wait; `Err(Unavailable)`: Redis failed (the
    /// acquire may still land, so the token is abandoned).
    Acquired(Result<Option<Bytes>, Failure>),
    /// [`Io::Work`] is done.
    Worked,
    /// The answer to [`Io::Compare`]; `Err` after resolving: `Gone`, `Unavailable` (not
    /// applied, and never will be) or `Unknown`.
    Compared(Result<Cas, Failure>),
    /// The answer to [`Io::Save`] (`Ok(true)`: written and the lock kept), with the record
    /// the save carried.
    Saved(Result<bool, Failure>, Record),
    /// The answer to [`Io::Delete`].
    Deleted(Result<(), Failure>),
    /// The answer to [`Io::Release`] (`false`: Redis did not confirm it).
    Released(bool),
    /// A renewal found the lock no longer ours.
    LeaseLost,
}

/// The one I/O the writer performs next.
#[derive(Debug)]
pub enum Io {
    /// Nothing left: end the writer, unless jobs arrived meanwhile (then [`Event::Arrived`]).
    Idle,
    /// Read the record and whether the lock is held (`MGET`).
    Peek,
    /// Take the lock with `token`, waiting for it, and read the record.
    Acquire {
        /// A fresh token.
        token: String,
    },
    /// The changes of `jobs` jobs were applied; the jobs that arrived meanwhile are queued
    /// before [`Event::Worked`] (with group commit they join the round).
    Work {
        /// How many jobs were applied.
        jobs: usize,
    },
    /// Write `record` only if the record is still `seen` and nobody holds the lock.
    Compare {
        /// The bytes read.
        seen: Bytes,
        /// The new record.
        record: Record,
    },
    /// Write `record` under the lock `token`; keep the lock (renewed) or let it go.
    Save {
        /// The lock's token.
        token: String,
        /// The new record.
        record: Record,
        /// Keep the lock for the next round.
        keep: bool,
    },
    /// Delete the record under the lock `token`, letting it go.
    Delete {
        /// The lock's token.
        token: String,
    },
    /// Let go of the lock `token`.
    Release {
        /// The lock's token.
        token: String,
    },
}

/// What to do at once, besides the next I/O.
#[derive(Debug)]
pub enum Effect<R> {
    /// Answer a job.
    Answer {
        /// Where.
        to: R,
        /// What.
        reply: Reply,
    },
    /// Undo `token` in the background: free the lock if it holds it, else make a late
    /// acquire with it refuse.
    Abandon {
        /// The token.
        token: String,
    },
    /// The session is contended: its next writers start with the lock.
    MarkContended,
    /// Jobs served under a lock kept from an earlier job, without a Redis round trip of
    /// their own to take it.
    HandOffs(u64),
}

/// The result of [`step`].
#[derive(Debug)]
pub struct Actions<R> {
    /// To do at once.
    pub effects: Vec<Effect<R>>,
    /// The next I/O; `None` while the I/O in flight has not answered.
    pub io: Option<Io>,
}

/// The protocol's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Jobs served in a row under one lock beyond the first (`SESSION_LOCK_HANDOFFS`).
    pub hand_offs: u32,
    /// Whether jobs join a locked round that is working (`SESSION_LOCK_GROUP_COMMIT`).
    pub group_commit: bool,
    /// Whether a lone job of a quiet session tries without the lock first
    /// (`SESSION_LOCK_OPTIMISTIC`).
    pub optimistic: bool,
}

/// What the machine keeps besides its state: the queue of jobs not yet in a round, and
/// where tokens come from.
pub struct Context<R> {
    settings: Settings,
    /// Contended sessions take the lock at once.
    contended: bool,
    queue: VecDeque<Job<R>>,
    tokens: Box<dyn FnMut() -> String + Send>,
}

impl<R> std::fmt::Debug for Context<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .field("contended", &self.contended)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl<R> Context<R> {
    /// A context; `contended` when the session was contended lately; `tokens` makes fresh
    /// lock tokens.
    pub fn new(
        settings: Settings,
        contended: bool,
        tokens: impl FnMut() -> String + Send + 'static,
    ) -> Context<R> {
        Context {
            settings,
            contended,
            queue: VecDeque::new(),
            tokens: Box::new(tokens),
        }
    }

    /// Queues jobs that arrived, in arrival order.
    pub fn enqueue(&mut self, jobs: impl IntoIterator<Item = Job<R>>) {
        self.queue.extend(jobs);
    }

    /// Jobs waiting for a round.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Jobs a tenure serves at most.
    fn budget(&self) -> usize {
        usize::try_from(self.settings.hand_offs)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    }

    /// Takes up to `limit` jobs for a round, in order: updates, or one delete alone when it
    /// is first. Jobs whose callers withdrew are dropped.
    fn take(&mut self, limit: usize, deletes: bool) -> Vec<Job<R>> {
        let mut jobs: Vec<Job<R>> = Vec::new();
        while jobs.len() < limit {
            let Some(front) = self.queue.front() else {
                break;
            };
            let delete = matches!(front.order, Order::Delete);
            if delete && (!deletes || !jobs.is_empty()) {
                break;
            }
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            if job.ticket.take() {
                jobs.push(job);
                if delete {
                    break;
                }
            }
        }
        jobs
    }

    fn token(&mut self) -> String {
        (self.tokens)()
    }
}

/// The lock, held between rounds of one tenure.
#[derive(Debug)]
struct Held {
    token: String,
    /// The record as this writer last wrote (or read) it under the lock.
    record: Option<Record>,
    /// Jobs served in this tenure so far.
    served: usize,
}

/// How the working round will write.
#[derive(Debug)]
pub enum Hold {
    /// Compare-and-set against the bytes read.
    Optimistic {
        /// The record's bytes as read.
        seen: Bytes,
    },
    /// Under the lock.
    Locked {
        /// The lock's token.
        token: String,
        /// Jobs served in this tenure before this round.
        served: usize,
        /// A renewal found the lock taken over: the save would be refused.
        lost: bool,
    },
}

/// The record with a round's changes applied, and each job's answer so far.
#[derive(Debug)]
pub struct Staged {
    record: Record,
    state: SessionState,
    answers: Vec<Done>,
    changed: bool,
}

impl Staged {
    fn new(record: Record) -> Staged {
        let state = SessionState::of(&record);
        Staged {
            record,
            state,
            answers: Vec::new(),
            changed: false,
        }
    }

    /// Applies `jobs` (updates) in order.
    fn apply<R>(&mut self, jobs: &[Job<R>]) {
        for job in jobs {
            let done = match &job.order {
                Order::Update { request, change } => {
                    let (visits, changed) = self.state.apply(request, |v| change(v));
                    self.changed |= changed;
                    Done::Updated(visits)
                }
                // Never in an update round (see `Context::take`).
                Order::Delete => Done::Deleted,
            };
            self.answers.push(done);
        }
    }

    /// The record to write.
    fn into_record(mut self) -> (Record, Vec<Done>) {
        self.state.store(&mut self.record);
        (self.record, self.answers)
    }
}

/// The writer's state.
#[derive(Debug)]
pub enum State<R> {
    /// Nothing in flight and no lock.
    Idle,
    /// An optimistic round's read is in flight.
    Peeking {
        /// The round's one job.
        round: Vec<Job<R>>,
    },
    /// Taking the lock for `round`.
    Acquiring {
        /// The token sent.
        token: String,
        /// The round.
        round: Vec<Job<R>>,
    },
    /// The round's changes are applied; [`Io::Work`] is in flight.
    Working {
        /// How it will write.
        hold: Hold,
        /// The round.
        round: Vec<Job<R>>,
        /// The changed record.
        staged: Staged,
    },
    /// The compare-and-set is in flight.
    Comparing {
        /// The round.
        round: Vec<Job<R>>,
        /// Each job's answer if it lands.
        answers: Vec<Done>,
    },
    /// The save is in flight.
    Saving {
        /// The lock's token.
        token: String,
        /// Jobs served in this tenure, this round included.
        served: usize,
        /// The round.
        round: Vec<Job<R>>,
        /// Each job's answer if it lands.
        answers: Vec<Done>,
    },
    /// The delete is in flight.
    Deleting {
        /// The lock's token.
        token: String,
        /// The delete job.
        round: Vec<Job<R>>,
    },
    /// The release is in flight.
    Releasing {
        /// The lock's token.
        token: String,
    },
}

impl<R> State<R> {
    /// The lock token this state holds or may hold (an acquire in flight may land).
    pub fn token(&self) -> Option<&str> {
        match self {
            State::Acquiring { token, .. }
            | State::Saving { token, .. }
            | State::Deleting { token, .. }
            | State::Releasing { token }
            | State::Working {
                hold: Hold::Locked { token, .. },
                ..
            } => Some(token),
            _ => None,
        }
    }

    /// True when the lock is ours (not merely asked for): its lease must be renewed.
    pub fn holds_lock(&self) -> bool {
        !matches!(self, State::Acquiring { .. }) && self.token().is_some()
    }

    /// The writer stops for good (its task is dropped): every job it holds is answered
    /// with what may be claimed, and a token it may hold is abandoned.
    pub fn abandon(self, cx: &mut Context<R>) -> Vec<Effect<R>> {
        let mut fx = Vec::new();
        let (round, failure) = match self {
            State::Saving { round, .. }
            | State::Comparing { round, .. }
            | State::Deleting { round, .. } => (round, Failure::Unknown),
            State::Peeking { round }
            | State::Acquiring { round, .. }
            | State::Working { round, .. } => (round, Failure::Unavailable),
            State::Idle | State::Releasing { .. } => (Vec::new(), Failure::Unavailable),
        };
        answer_all(round, failure, &mut fx);
        let queued: Vec<Job<R>> = cx.queue.drain(..).collect();
        answer_all(queued, Failure::Unavailable, &mut fx);
        fx
    }
}

fn answer_all<R>(jobs: Vec<Job<R>>, failure: Failure, fx: &mut Vec<Effect<R>>) {
    for job in jobs {
        fx.push(Effect::Answer {
            to: job.reply,
            reply: Err(failure),
        });
    }
}

fn answer_each<R>(jobs: Vec<Job<R>>, answers: Vec<Done>, fx: &mut Vec<Effect<R>>) {
    for (job, done) in jobs.into_iter().zip(answers) {
        fx.push(Effect::Answer {
            to: job.reply,
            reply: Ok(done),
        });
    }
}

fn answer_same<R>(jobs: Vec<Job<R>>, done: Done, fx: &mut Vec<Effect<R>>) {
    for job in jobs {
        fx.push(Effect::Answer {
            to: job.reply,
            reply: Ok(done.clone()),
        });
    }
}

/// One transition: the next state, and what to do.
pub fn step<R>(state: State<R>, event: Event, cx: &mut Context<R>) -> (State<R>, Actions<R>) {
    let mut fx = Vec::new();
    let (next, io) = transition(state, event, cx, &mut fx);
    (next, Actions { effects: fx, io })
}

fn transition<R>(
    state: State<R>,
    event: Event,
    cx: &mut Context<R>,
    fx: &mut Vec<Effect<R>>,
) -> (State<R>, Option<Io>) {
    match (state, event) {
        (State::Idle, Event::Arrived) => start(None, cx, fx),
        // Busy: the new jobs wait in the queue for the next round (or join this one).
        (state, Event::Arrived) => (state, None),

        (State::Peeking { round }, Event::Peeked(Err(failure))) => {
            answer_all(round, failure, fx);
            start(None, cx, fx)
        }
        (State::Peeking { round }, Event::Peeked(Ok(peek))) => {
            let decoded = peek.record.as_deref().and_then(crate::record::decode);
            let (Some(seen), Some(record)) = (peek.record, decoded) else {
                answer_same(round, Done::Absent, fx);
                return start(None, cx, fx);
            };
            if peek.locked {
                // Held elsewhere: this session is contended; take the lock.
                cx.contended = true;
                fx.push(Effect::MarkContended);
                return acquire(round, cx);
            }
            work(Hold::Optimistic { seen }, record, round)
        }

        (State::Acquiring { token, round }, Event::Acquired(Err(failure))) => {
            answer_all(round, failure, fx);
            // The acquire may still land, or a hand-off reach us: undo it.
            fx.push(Effect::Abandon { token });
            start(None, cx, fx)
        }
        (State::Acquiring { token, round }, Event::Acquired(Ok(bytes))) => {
            let record = bytes.as_deref().and_then(crate::record::decode);
            let delete = matches!(round.first().map(|j| &j.order), Some(Order::Delete));
            match record {
                Some(_) if delete => (
                    State::Deleting {
                        token: token.clone(),
                        round,
                    },
                    Some(Io::Delete { token }),
                ),
                None => {
                    let served = round.len();
                    answer_same(round, if delete { Done::Deleted } else { Done::Absent }, fx);
                    let held = Held {
                        token,
                        record: None,
                        served,
                    };
                    start(Some(held), cx, fx)
                }
                Some(record) => {
                    if round.len() > 1 {
                        // Served under a lock taken once for all of them.
                        fx.push(Effect::HandOffs(round.len() as u64 - 1));
                    }
                    work(
                        Hold::Locked {
                            token,
                            served: 0,
                            lost: false,
                        },
                        record,
                        round,
                    )
                }
            }
        }

        (
            State::Working {
                hold: Hold::Locked {
                    lost: true, token, ..
                },
                round,
                ..
            },
            Event::Worked,
        ) => {
            // The save would be refused: say so now, and take the lock afresh next time.
            answer_all(round, Failure::Unavailable, fx);
            fx.push(Effect::Abandon { token });
            start(None, cx, fx)
        }
        (
            State::Working {
                hold:
                    Hold::Locked {
                        token,
                        served,
                        lost,
                    },
                mut round,
                mut staged,
            },
            Event::Worked,
        ) => {
            // Group commit: jobs that arrived meanwhile join the round, within the budget.
            let room = cx.budget().saturating_sub(served + round.len());
            if cx.settings.group_commit && room > 0 && cx.queued() > 0 {
                let more = cx.take(room, false);
                if !more.is_empty() {
                    fx.push(Effect::HandOffs(more.len() as u64));
                    staged.apply(&more);
                    let jobs = more.len();
                    round.extend(more);
                    return (
                        State::Working {
                            hold: Hold::Locked {
                                token,
                                served,
                                lost,
                            },
                            round,
                            staged,
                        },
                        Some(Io::Work { jobs }),
                    );
                }
            }
            let served = served + round.len();
            if !staged.changed {
                // Only replays of requests already written: nothing to write.
                let (record, answers) = staged.into_record();
                answer_each(round, answers, fx);
                let held = Held {
                    token,
                    record: Some(record),
                    served,
                };
                return start(Some(held), cx, fx);
            }
            let keep = cx.queued() > 0 && served < cx.budget();
            let (record, answers) = staged.into_record();
            (
                State::Saving {
                    token: token.clone(),
                    served,
                    round,
                    answers,
                },
                Some(Io::Save {
                    token,
                    record,
                    keep,
                }),
            )
        }
        (
            State::Working {
                hold: Hold::Optimistic { seen },
                round,
                staged,
            },
            Event::Worked,
        ) => {
            if cx.queued() > 0 && !cx.contended {
                // Others of this session came meanwhile: it is busy; its next rounds lock.
                cx.contended = true;
                fx.push(Effect::MarkContended);
            }
            if !staged.changed {
                let (_, answers) = staged.into_record();
                answer_each(round, answers, fx);
                return start(None, cx, fx);
            }
            let (record, answers) = staged.into_record();
            (
                State::Comparing { round, answers },
                Some(Io::Compare { seen, record }),
            )
        }
        (
            State::Working {
                hold,
                round,
                staged,
            },
            Event::LeaseLost,
        ) => {
            let hold = match hold {
                Hold::Locked { token, served, .. } => Hold::Locked {
                    token,
                    served,
                    lost: true,
                },
                optimistic => optimistic,
            };
            (
                State::Working {
                    hold,
                    round,
                    staged,
                },
                None,
            )
        }
        // Any other state decides by its write's answer (the writes are fenced).
        (state, Event::LeaseLost) => (state, None),

        (State::Comparing { round, answers }, Event::Compared(Ok(Cas::Written))) => {
            answer_each(round, answers, fx);
            start(None, cx, fx)
        }
        (State::Comparing { round, .. }, Event::Compared(Ok(Cas::Conflict))) => {
            // Nothing was written: run the changes again, under the lock.
            cx.contended = true;
            fx.push(Effect::MarkContended);
            acquire(round, cx)
        }
        (State::Comparing { round, .. }, Event::Compared(Err(failure))) => {
            answer_all(round, failure, fx);
            start(None, cx, fx)
        }

        (
            State::Saving {
                token,
                served,
                round,
                answers,
            },
            Event::Saved(Ok(kept), record),
        ) => {
            answer_each(round, answers, fx);
            let held = kept.then_some(Held {
                token,
                record: Some(record),
                served,
            });
            start(held, cx, fx)
        }
        (State::Saving { round, .. }, Event::Saved(Err(failure), _)) => {
            // Resolving the save let go of the lock, applied or not: start afresh.
            answer_all(round, failure, fx);
            start(None, cx, fx)
        }

        (State::Deleting { round, .. }, Event::Deleted(result)) => {
            match result {
                Ok(()) => answer_same(round, Done::Deleted, fx),
                Err(failure) => answer_all(round, failure, fx),
            }
            start(None, cx, fx)
        }

        (State::Releasing { token }, Event::Released(confirmed)) => {
            if !confirmed {
                fx.push(Effect::Abandon { token });
            }
            start(None, cx, fx)
        }

        (state, event) => {
            // The writer feeds each I/O's own answer; anything else is a bug. Fail safe:
            // claim nothing, let go of what may be held.
            tracing::error!(?event, "session writer: unexpected event");
            let token = state.token().map(str::to_owned);
            fx.extend(state.abandon(cx));
            if let Some(token) = token {
                fx.push(Effect::Abandon { token });
            }
            start(None, cx, fx)
        }
    }
}

fn acquire<R>(round: Vec<Job<R>>, cx: &mut Context<R>) -> (State<R>, Option<Io>) {
    let token = cx.token();
    (
        State::Acquiring {
            token: token.clone(),
            round,
        },
        Some(Io::Acquire { token }),
    )
}

fn work<R>(hold: Hold, record: Record, round: Vec<Job<R>>) -> (State<R>, Option<Io>) {
    let mut staged = Staged::new(record);
    staged.apply(&round);
    let jobs = round.len();
    (
        State::Working {
            hold,
            round,
            staged,
        },
        Some(Io::Work { jobs }),
    )
}

/// Starts the next round: with the lock still `held` from the last one, or from scratch.
fn start<R>(
    mut held: Option<Held>,
    cx: &mut Context<R>,
    fx: &mut Vec<Effect<R>>,
) -> (State<R>, Option<Io>) {
    loop {
        let Some(h) = held else {
            if cx.queue.is_empty() {
                return (State::Idle, Some(Io::Idle));
            }
            let lone_update =
                cx.queue.len() == 1 && matches!(cx.queue[0].order, Order::Update { .. });
            if cx.settings.optimistic && !cx.contended && lone_update {
                let round = cx.take(1, false);
                if round.is_empty() {
                    continue;
                }
                return (State::Peeking { round }, Some(Io::Peek));
            }
            let limit = if cx.settings.group_commit {
                cx.budget()
            } else {
                1
            };
            let round = cx.take(limit, true);
            if round.is_empty() {
                continue;
            }
            return acquire(round, cx);
        };
        let room = cx.budget().saturating_sub(h.served);
        let limit = if cx.settings.group_commit {
            room
        } else {
            room.min(1)
        };
        let round = cx.take(limit, true);
        if round.is_empty() {
            // Nobody left to hand the lock to, or the tenure's budget is spent.
            let token = h.token;
            return (
                State::Releasing {
                    token: token.clone(),
                },
                Some(Io::Release { token }),
            );
        }
        fx.push(Effect::HandOffs(round.len() as u64));
        let delete = matches!(round[0].order, Order::Delete);
        match h.record {
            Some(_) if delete => {
                return (
                    State::Deleting {
                        token: h.token.clone(),
                        round,
                    },
                    Some(Io::Delete { token: h.token }),
                );
            }
            Some(record) => {
                return work(
                    Hold::Locked {
                        token: h.token,
                        served: h.served,
                        lost: false,
                    },
                    record,
                    round,
                );
            }
            None => {
                let served = h.served + round.len();
                answer_same(round, if delete { Done::Deleted } else { Done::Absent }, fx);
                held = Some(Held {
                    token: h.token,
                    record: None,
                    served,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
