//! The protocol, event by event, with no Redis: every path a round can take, every failure
//! a Redis answer can bring, and what each caller is told.

use std::collections::HashMap;

use fred::bytes::Bytes;
use tower_sessions::session::{Id, Record};

use super::*;
use crate::{config::SessionCodec, session};

/// A machine and its context; jobs answer to their number.
struct Machine {
    state: Option<State<u32>>,
    cx: Context<u32>,
    /// Tickets by job number, to withdraw them.
    tickets: HashMap<u32, Ticket>,
}

fn settings(hand_offs: u32, group_commit: bool, optimistic: bool) -> Settings {
    Settings {
        hand_offs,
        group_commit,
        optimistic,
    }
}

fn machine(settings: Settings) -> Machine {
    let mut n = 0;
    Machine {
        state: Some(State::Idle),
        cx: Context::new(settings, false, move || {
            n += 1;
            format!("t{n}")
        }),
        tickets: HashMap::new(),
    }
}

/// A record whose counter is `views`, with `applied` request ids and their counts.
fn record(views: u64, applied: &[(&str, u64)]) -> Bytes {
    let mut state = session::State::default();
    state.visits.views = views;
    for (id, at) in applied {
        let key = RequestKey::new("POST", "/api/session/views", Some(id));
        crate::replay::remember(&mut state.applied, &key, *at);
    }
    let mut record = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc(),
    };
    state.store(&mut record);
    Bytes::from(crate::record::encode(&record, SessionCodec::Json).expect("encodes"))
}

fn views_in(record: &Record) -> u64 {
    session::State::of(record).visits.views
}

impl Machine {
    /// Queues job `n`: add `by` views, with request id `id`.
    fn add(&mut self, n: u32, id: Option<&str>, by: u64) {
        let ticket = Ticket::default();
        assert!(ticket.file());
        self.tickets.insert(n, ticket.clone());
        self.cx.enqueue([Job {
            order: Order::Update {
                request: RequestKey::new("POST", "/api/session/views", id),
                change: Arc::new(move |v: &mut Visits| v.views += by),
            },
            ticket,
            reply: n,
        }]);
    }

    fn delete(&mut self, n: u32) {
        let ticket = Ticket::default();
        assert!(ticket.file());
        self.tickets.insert(n, ticket.clone());
        self.cx.enqueue([Job {
            order: Order::Delete,
            ticket,
            reply: n,
        }]);
    }

    fn feed(&mut self, event: Event) -> Actions<u32> {
        let state = self.state.take().expect("a state");
        let (state, actions) = step(state, event, &mut self.cx);
        self.state = Some(state);
        actions
    }

    fn state(&self) -> &State<u32> {
        self.state.as_ref().expect("a state")
    }
}

/// The answers among `actions`, by job.
fn answers(actions: &Actions<u32>) -> Vec<(u32, Reply)> {
    actions
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Answer { to, reply } => Some((*to, reply.clone())),
            _ => None,
        })
        .collect()
}

fn abandoned(actions: &Actions<u32>) -> Vec<String> {
    actions
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Abandon { token } => Some(token.clone()),
            _ => None,
        })
        .collect()
}

fn marked_contended(actions: &Actions<u32>) -> bool {
    actions
        .effects
        .iter()
        .any(|e| matches!(e, Effect::MarkContended))
}

fn hand_offs(actions: &Actions<u32>) -> u64 {
    actions
        .effects
        .iter()
        .map(|e| match e {
            Effect::HandOffs(n) => *n,
            _ => 0,
        })
        .sum()
}

fn views(reply: &Reply) -> u64 {
    match reply {
        Ok(Done::Updated(v)) => v.views,
        other => panic!("not an update: {other:?}"),
    }
}

/// Takes the record out of a Save or Compare.
fn written(io: Option<Io>) -> (Record, Option<bool>) {
    match io {
        Some(Io::Save { record, keep, .. }) => (record, Some(keep)),
        Some(Io::Compare { record, .. }) => (record, None),
        other => panic!("no write: {other:?}"),
    }
}

#[test]
fn a_lone_write_of_a_quiet_session_is_a_compare_and_set() {
    let mut m = machine(settings(8, true, true));
    m.add(1, None, 1);

    assert!(matches!(m.feed(Event::Arrived).io, Some(Io::Peek)));
    let read = m.feed(Event::Peeked(Ok(Peek {
        record: Some(record(4, &[])),
        locked: false,
    })));
    assert!(matches!(read.io, Some(Io::Work { jobs: 1 })));
    assert!(answers(&read).is_empty(), "no answer before the write");
    let (new, _) = written(m.feed(Event::Worked).io);
    assert_eq!(views_in(&new), 5);
    let done = m.feed(Event::Compared(Ok(Cas::Written)));

    assert_eq!(answers(&done).len(), 1);
    assert_eq!(views(&answers(&done)[0].1), 5);
    assert!(matches!(done.io, Some(Io::Idle)));
}

#[test]
fn a_lost_compare_and_set_reruns_the_change_under_the_lock_not_the_request() {
    let mut m = machine(settings(8, true, true));
    m.add(1, Some("slow"), 10);
    m.feed(Event::Arrived);
    m.feed(Event::Peeked(Ok(Peek {
        record: Some(record(1, &[])),
        locked: false,
    })));
    m.feed(Event::Worked);

    // Three writes landed elsewhere meanwhile.
    let lost = m.feed(Event::Compared(Ok(Cas::Conflict)));
    assert!(marked_contended(&lost));
    assert!(
        answers(&lost).is_empty(),
        "nothing was written: no answer yet"
    );
    assert!(matches!(lost.io, Some(Io::Acquire { .. })));
    let locked = m.feed(Event::Acquired(Ok(Some(record(4, &[])))));
    assert!(matches!(locked.io, Some(Io::Work { jobs: 1 })));
    let (new, keep) = written(m.feed(Event::Worked).io);
    assert_eq!((views_in(&new), keep), (14, Some(false)));
    let done = m.feed(Event::Saved(Ok(false), new));

    assert_eq!(
        views(&answers(&done)[0].1),
        14,
        "counted once, after the three"
    );
    assert!(matches!(done.io, Some(Io::Idle)));
}

#[test]
fn a_lock_held_elsewhere_at_the_peek_sends_the_round_to_the_lock() {
    let mut m = machine(settings(8, true, true));
    m.add(1, None, 1);
    m.feed(Event::Arrived);

    let seen = m.feed(Event::Peeked(Ok(Peek {
        record: Some(record(1, &[])),
        locked: true,
    })));

    assert!(marked_contended(&seen));
    assert!(matches!(seen.io, Some(Io::Acquire { .. })));
}

#[test]
fn redis_failing_before_any_write_is_answered_nothing_written() {
    let mut m = machine(settings(8, true, true));
    m.add(1, None, 1);
    m.feed(Event::Arrived);
    let failed = m.feed(Event::Peeked(Err(Failure::Unavailable)));
    assert_eq!(answers(&failed), [(1, Err(Failure::Unavailable))]);
    assert!(matches!(failed.io, Some(Io::Idle)));

    // The lock's acquire failing: its token is abandoned (the acquire may still land).
    let mut m = machine(settings(8, true, false));
    m.add(1, None, 1);
    assert!(matches!(
        m.feed(Event::Arrived).io,
        Some(Io::Acquire { .. })
    ));
    let failed = m.feed(Event::Acquired(Err(Failure::Unavailable)));
    assert_eq!(answers(&failed), [(1, Err(Failure::Unavailable))]);
    assert_eq!(abandoned(&failed), ["t1"]);
}

#[test]
fn a_lock_that_stays_taken_is_busy_and_leaves_the_line() {
    let mut m = machine(settings(8, true, false));
    m.add(1, None, 1);
    m.feed(Event::Arrived);

    let busy = m.feed(Event::Acquired(Err(Failure::Busy)));

    assert_eq!(answers(&busy), [(1, Err(Failure::Busy))]);
    assert_eq!(abandoned(&busy), ["t1"], "its place in line is given up");
}

#[test]
fn a_session_without_a_record_is_absent_for_the_caller_to_start_anew() {
    let mut m = machine(settings(8, true, true));
    m.add(1, None, 1);
    m.feed(Event::Arrived);
    let absent = m.feed(Event::Peeked(Ok(Peek {
        record: None,
        locked: false,
    })));
    assert_eq!(answers(&absent), [(1, Ok(Done::Absent))]);

    // Undecodable bytes are no record either.
    m.add(2, None, 1);
    m.feed(Event::Arrived);
    let garbage = m.feed(Event::Peeked(Ok(Peek {
        record: Some(Bytes::from_static(b"{garbage")),
        locked: false,
    })));
    assert_eq!(answers(&garbage), [(2, Ok(Done::Absent))]);
}

#[test]
fn jobs_that_arrive_while_a_locked_round_works_share_its_one_write() {
    let mut m = machine(settings(8, true, false));
    m.add(1, Some("a"), 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(1, &[])))));

    m.add(2, Some("b"), 1);
    m.add(3, Some("c"), 1);
    let joined = m.feed(Event::Worked);
    assert!(matches!(joined.io, Some(Io::Work { jobs: 2 })));
    assert_eq!(hand_offs(&joined), 2);
    let (new, keep) = written(m.feed(Event::Worked).io);
    assert_eq!((views_in(&new), keep), (4, Some(false)));
    let done = m.feed(Event::Saved(Ok(false), new));

    let got: Vec<(u32, u64)> = answers(&done).iter().map(|(n, r)| (*n, views(r))).collect();
    assert_eq!(
        got,
        [(1, 2), (2, 3), (3, 4)],
        "in arrival order, after the write"
    );
}

#[test]
fn without_group_commit_each_job_is_its_own_round_under_a_kept_lock() {
    let mut m = machine(settings(8, false, false));
    m.add(1, None, 1);
    m.add(2, None, 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(1, &[])))));
    let (first, keep) = written(m.feed(Event::Worked).io);
    assert_eq!(
        (views_in(&first), keep),
        (2, Some(true)),
        "kept: job 2 waits"
    );

    let handed = m.feed(Event::Saved(Ok(true), first));
    assert_eq!(views(&answers(&handed)[0].1), 2);
    assert_eq!(hand_offs(&handed), 1);
    assert!(
        matches!(handed.io, Some(Io::Work { jobs: 1 })),
        "no acquire: the lock was kept"
    );
    let (second, keep) = written(m.feed(Event::Worked).io);
    assert_eq!((views_in(&second), keep), (3, Some(false)));
}

#[test]
fn a_tenure_serves_at_most_the_hand_off_budget_then_the_lock_goes_back() {
    // hand_offs 1: at most 2 jobs under one lock.
    let mut m = machine(settings(1, true, false));
    for n in 1..=3 {
        m.add(n, None, 1);
    }
    m.feed(Event::Arrived);
    let acquired = m.feed(Event::Acquired(Ok(Some(record(0, &[])))));
    assert!(matches!(acquired.io, Some(Io::Work { jobs: 2 })));
    let (record, keep) = written(m.feed(Event::Worked).io);
    assert_eq!(
        keep,
        Some(false),
        "the budget is spent: let go for other replicas"
    );
    let next = m.feed(Event::Saved(Ok(false), record));

    assert_eq!(answers(&next).len(), 2);
    assert!(
        matches!(next.io, Some(Io::Acquire { .. })),
        "job 3 takes the lock afresh"
    );
}

#[test]
fn a_failed_write_fails_every_job_it_carried_and_nothing_stale_is_written_next() {
    let mut m = machine(settings(8, true, false));
    m.add(1, Some("a"), 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(5, &[])))));
    m.add(2, Some("b"), 1);
    m.feed(Event::Worked);
    let (record_sent, _) = written(m.feed(Event::Worked).io);
    m.add(3, Some("c"), 1);

    let failed = m.feed(Event::Saved(Err(Failure::Unknown), record_sent));

    assert_eq!(
        answers(&failed),
        [(1, Err(Failure::Unknown)), (2, Err(Failure::Unknown))]
    );
    // The resolution let go of the lock; the record in memory may not be Redis's.
    assert!(matches!(failed.io, Some(Io::Acquire { .. })));
}

#[test]
fn a_retry_that_joins_its_original_in_a_round_whose_write_fails_is_not_answered_200() {
    // The second hostile pass's hole: the retry found its id applied in memory and was
    // answered from a record that was never written.
    let mut m = machine(settings(8, true, false));
    m.add(1, Some("r1"), 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(7, &[])))));
    m.add(2, Some("r1"), 1);
    m.feed(Event::Worked);
    let (sent, _) = written(m.feed(Event::Worked).io);
    assert_eq!(views_in(&sent), 8, "counted once");

    let failed = m.feed(Event::Saved(Err(Failure::Unavailable), sent));

    assert_eq!(
        answers(&failed),
        [
            (1, Err(Failure::Unavailable)),
            (2, Err(Failure::Unavailable))
        ]
    );
}

#[test]
fn a_retry_and_its_original_in_one_round_share_one_count_once_written() {
    let mut m = machine(settings(8, true, false));
    m.add(1, Some("r1"), 1);
    m.add(2, Some("r1"), 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(7, &[])))));
    let (sent, _) = written(m.feed(Event::Worked).io);

    let done = m.feed(Event::Saved(Ok(false), sent));

    let got: Vec<(u32, u64)> = answers(&done).iter().map(|(n, r)| (*n, views(r))).collect();
    assert_eq!(got, [(1, 8), (2, 8)]);
}

#[test]
fn a_replay_of_a_written_request_is_answered_without_a_write() {
    let mut m = machine(settings(8, true, true));
    m.add(1, Some("old"), 1);
    m.feed(Event::Arrived);
    m.feed(Event::Peeked(Ok(Peek {
        record: Some(record(9, &[("old", 3)])),
        locked: false,
    })));

    let done = m.feed(Event::Worked);

    assert_eq!(views(&answers(&done)[0].1), 3, "the count it produced then");
    assert!(matches!(done.io, Some(Io::Idle)), "nothing to write");
}

#[test]
fn a_lease_lost_while_working_fails_the_round_without_a_blind_save() {
    let mut m = machine(settings(8, true, false));
    m.add(1, None, 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(1, &[])))));
    assert!(m.state().holds_lock());

    assert!(m.feed(Event::LeaseLost).io.is_none(), "waits for the work");
    let lost = m.feed(Event::Worked);

    assert_eq!(answers(&lost), [(1, Err(Failure::Unavailable))]);
    assert_eq!(abandoned(&lost), ["t1"]);
    assert!(matches!(lost.io, Some(Io::Idle)));
}

#[test]
fn a_save_refused_by_its_fence_is_answered_nothing_written_and_the_lock_taken_afresh() {
    let mut m = machine(settings(8, false, false));
    m.add(1, None, 1);
    m.add(2, None, 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(1, &[])))));
    let (sent, _) = written(m.feed(Event::Worked).io);

    // Another holder's token replaced ours (an expired lease): the save wrote nothing.
    let refused = m.feed(Event::Saved(Err(Failure::Unavailable), sent));

    assert_eq!(answers(&refused), [(1, Err(Failure::Unavailable))]);
    assert!(matches!(refused.io, Some(Io::Acquire { ref token }) if token == "t2"));
}

#[test]
fn a_delete_is_a_round_of_its_own_between_the_writes_around_it() {
    let mut m = machine(settings(8, true, false));
    m.add(1, None, 1);
    m.delete(2);
    m.add(3, None, 1);
    m.feed(Event::Arrived);
    let first = m.feed(Event::Acquired(Ok(Some(record(1, &[])))));
    assert!(
        matches!(first.io, Some(Io::Work { jobs: 1 })),
        "the delete waits"
    );
    let (sent, keep) = written(m.feed(Event::Worked).io);
    assert_eq!(keep, Some(true));

    let deleting = m.feed(Event::Saved(Ok(true), sent));
    assert!(matches!(deleting.io, Some(Io::Delete { .. })));
    let after = m.feed(Event::Deleted(Ok(())));
    assert_eq!(answers(&after), [(2, Ok(Done::Deleted))]);
    assert!(matches!(after.io, Some(Io::Acquire { .. })));
    let absent = m.feed(Event::Acquired(Ok(None)));

    assert_eq!(answers(&absent), [(3, Ok(Done::Absent))]);
    assert!(matches!(absent.io, Some(Io::Release { .. })));
}

#[test]
fn a_withdrawn_job_is_never_applied_and_a_taken_one_always_is() {
    let mut m = machine(settings(8, true, false));
    m.add(1, None, 1);
    m.add(2, None, 100);
    assert!(
        m.tickets[&2].withdraw(),
        "job 2's request timed out while queued"
    );
    m.feed(Event::Arrived);
    // Job 1's client goes away now: its round goes on.
    assert!(!m.tickets[&1].withdraw());
    m.feed(Event::Acquired(Ok(Some(record(0, &[])))));
    let (sent, _) = written(m.feed(Event::Worked).io);

    assert_eq!(views_in(&sent), 1);
    let done = m.feed(Event::Saved(Ok(false), sent));
    assert_eq!(answers(&done).len(), 1);
}

#[test]
fn a_release_redis_did_not_confirm_is_abandoned() {
    let mut m = machine(settings(8, false, false));
    m.add(1, None, 1);
    m.add(2, None, 1);
    assert!(m.tickets[&2].withdraw());
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(0, &[])))));
    let (sent, keep) = written(m.feed(Event::Worked).io);
    assert_eq!(keep, Some(true), "job 2 was still queued");
    let release = m.feed(Event::Saved(Ok(true), sent));
    assert!(
        matches!(release.io, Some(Io::Release { .. })),
        "it withdrew"
    );

    let unconfirmed = m.feed(Event::Released(false));

    assert_eq!(abandoned(&unconfirmed), ["t1"]);
    assert!(matches!(unconfirmed.io, Some(Io::Idle)));
}

#[test]
fn a_writer_dropped_mid_write_answers_unknown_and_gives_its_token_up() {
    let mut m = machine(settings(8, true, false));
    m.add(1, None, 1);
    m.feed(Event::Arrived);
    m.feed(Event::Acquired(Ok(Some(record(0, &[])))));
    let _save = m.feed(Event::Worked);
    m.add(2, None, 1);
    let state = m.state.take().expect("state");
    assert_eq!(state.token(), Some("t1"));

    let effects = state.abandon(&mut m.cx);

    let got: Vec<(u32, Reply)> = effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Answer { to, reply } => Some((to, reply)),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [(1, Err(Failure::Unknown)), (2, Err(Failure::Unavailable))]
    );
}

#[test]
fn a_busy_session_stops_trying_without_the_lock() {
    let mut m = machine(settings(8, true, true));
    m.add(1, None, 1);
    m.feed(Event::Arrived);
    m.feed(Event::Peeked(Ok(Peek {
        record: Some(record(0, &[])),
        locked: false,
    })));
    m.add(2, None, 1);
    let worked = m.feed(Event::Worked);
    assert!(marked_contended(&worked), "a second job came meanwhile");
    assert!(
        matches!(worked.io, Some(Io::Compare { .. })),
        "the lone try goes on alone"
    );

    let next = m.feed(Event::Compared(Ok(Cas::Written)));

    assert!(
        matches!(next.io, Some(Io::Acquire { .. })),
        "the next round takes the lock"
    );
}

#[test]
fn an_unexpected_event_fails_safe() {
    let mut m = machine(settings(8, true, false));
    m.add(1, None, 1);
    m.feed(Event::Arrived);

    let odd = m.feed(Event::Worked);

    assert_eq!(answers(&odd), [(1, Err(Failure::Unavailable))]);
    assert_eq!(abandoned(&odd), ["t1"]);
}
