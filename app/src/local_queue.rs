//! The requests of one session on this replica, in line: first come, first served, and only
//! the head of the line competes for the session's lock in Redis.
//!
//! When the head saves while others of the same session wait here, it keeps the Redis lock
//! (the save renews its lease) and hands the token and the record it just wrote to the next
//! in line, whose load then costs no round trip. At most `SESSION_LOCK_HANDOFFS` hand-offs
//! happen in a row, so waiters on other replicas are not starved: then the lock goes back to
//! Redis and everybody competes again.
//!
//! Group commit: the head may also pass the record on *unwritten*, when the next request is
//! already waiting: that request runs its handler on the record in memory, and one write
//! carries both changes. Each request is answered only once that write is acknowledged (or
//! with the write's failure).
//!
//! A write that tries without the lock first (optimistic, see [`crate::lock_scope`]) does
//! so only from an empty line, and holds the line's turn meanwhile: a second request of the
//! same session here queues behind it and then takes the lock, instead of racing it. A
//! session is marked *contended* for [`CONTENDED_FOR`] whenever one of its requests had to
//! wait in line, found its lock held, or lost an optimistic write: its writes then take the
//! lock at once (with the hand-offs above).
//!
//! Nothing is kept between requests once the line is empty (but the contended mark, which
//! is bounded in number and time). A hand-off that nobody takes
//! (the next in line gave up) is settled by whoever notices last: its record written if it
//! carries deferred changes, its lock released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;
use tower_sessions::session::{Id, Record};

/// Tells a request whose write was deferred what became of it.
pub type Ack = tokio::sync::oneshot::Sender<Result<(), crate::outcome::Failure>>;

/// The Redis lock and the record, passed from one request of a session to the next.
#[derive(Debug)]
pub struct HandOff {
    /// The lock's token, still held in Redis.
    pub token: String,
    /// The record as the previous request left it.
    pub record: Record,
    /// Hand-offs in a row so far, this one included.
    pub count: u32,
    /// Requests whose changes are in `record` but not yet in Redis (group commit): whoever
    /// writes the record next answers them.
    pub pending: Vec<Ack>,
}

/// One session's line.
#[derive(Debug, Default)]
struct Line {
    /// Requests waiting for their turn.
    waiting: AtomicUsize,
    /// The turn, with a hand-off from the previous holder if there is one.
    turn: Arc<tokio::sync::Mutex<Option<HandOff>>>,
}

/// Called with a hand-off nobody took: the lock must be freed in Redis.
pub type Orphaned = Arc<dyn Fn(Id, HandOff) + Send + Sync>;

/// How long a session counts as contended after the last sign of it.
pub const CONTENDED_FOR: Duration = Duration::from_secs(2);
/// Most contended marks kept; past it, expired ones are dropped, and if none has expired
/// the marks are cleared (a mark only saves an optimistic try that would fail).
const CONTENDED_KEPT: usize = 4096;

/// Every session's line on this replica.
pub struct LocalQueues {
    lines: Mutex<HashMap<Id, Arc<Line>>>,
    /// Sessions recently contended, and when that was last seen.
    contended: Mutex<HashMap<Id, Instant>>,
    orphaned: Orphaned,
}

impl std::fmt::Debug for LocalQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueues").finish_non_exhaustive()
    }
}

/// A request's turn at its session: the holder of the line's head.
#[derive(Debug)]
pub struct Turn {
    id: Id,
    line: Arc<Line>,
    guard: Option<OwnedMutexGuard<Option<HandOff>>>,
    queues: Arc<LocalQueues>,
}

/// Counts a waiter while it waits, also when its request is dropped meanwhile.
struct Waiting<'a> {
    id: Id,
    line: &'a Arc<Line>,
    queues: &'a LocalQueues,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.line.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last waiter left: a hand-off meant for it would wait for nobody.
            self.queues.reclaim(self.id, self.line);
        }
    }
}

impl LocalQueues {
    /// No lines yet; `orphaned` frees a hand-off nobody took.
    pub fn new(orphaned: Orphaned) -> LocalQueues {
        LocalQueues {
            lines: Mutex::new(HashMap::new()),
            contended: Mutex::new(HashMap::new()),
            orphaned,
        }
    }

    /// Session `id`'s line, made (and put in the map) if it has none; `true` when it had one,
    /// with someone in it.
    fn line(lines: &mut HashMap<Id, Arc<Line>>, id: Id) -> (Arc<Line>, bool) {
        match lines.get(&id) {
            Some(line) => (Arc::clone(line), true),
            None => {
                let line = Arc::new(Line::default());
                lines.insert(id, Arc::clone(&line));
                (line, false)
            }
        }
    }

    /// The turn at session `id` for an optimistic write, when the session is quiet here:
    /// nobody of it in line, not marked contended. `None` (and the session marked, if it has
    /// a line) otherwise.
    pub fn uncontended_turn(self: &Arc<Self>, id: Id) -> Option<Turn> {
        if self.is_contended(id) {
            return None;
        }
        let line = {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            if lines.contains_key(&id) {
                drop(lines);
                self.mark_contended(id);
                return None;
            }
            Self::line(&mut lines, id).0
        };
        // Nobody else can hold a line made just now.
        let guard = Arc::clone(&line.turn).try_lock_owned().ok();
        Some(Turn {
            id,
            line,
            guard,
            queues: Arc::clone(self),
        })
    }

    /// Marks session `id` contended from now on, for [`CONTENDED_FOR`].
    pub fn mark_contended(&self, id: Id) {
        let now = Instant::now();
        let mut marks = self.contended.lock().unwrap_or_else(|e| e.into_inner());
        if marks.len() >= CONTENDED_KEPT && !marks.contains_key(&id) {
            marks.retain(|_, seen| now.duration_since(*seen) < CONTENDED_FOR);
            if marks.len() >= CONTENDED_KEPT {
                marks.clear();
            }
        }
        marks.insert(id, now);
    }

    /// True when session `id` was contended within [`CONTENDED_FOR`].
    pub fn is_contended(&self, id: Id) -> bool {
        let marks = self.contended.lock().unwrap_or_else(|e| e.into_inner());
        marks
            .get(&id)
            .is_some_and(|seen| seen.elapsed() < CONTENDED_FOR)
    }

    /// Waits for this request's turn at session `id` (first come, first served).
    pub async fn turn(self: &Arc<Self>, id: Id) -> Turn {
        let (line, queued) = {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            Self::line(&mut lines, id)
        };
        if queued {
            self.mark_contended(id);
        }
        line.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting {
            id,
            line: &line,
            queues: self,
        };
        let guard = Arc::clone(&line.turn).lock_owned().await;
        drop(waiting);
        Turn {
            id,
            line,
            guard: Some(guard),
            queues: Arc::clone(self),
        }
    }

    /// Frees a hand-off left in `line` when nobody waits for it any more.
    fn reclaim(&self, id: Id, line: &Line) {
        if line.waiting.load(Ordering::Acquire) > 0 {
            return;
        }
        if let Ok(mut turn) = line.turn.try_lock()
            && let Some(left) = turn.take()
        {
            (self.orphaned)(id, left);
        }
    }

    /// Sessions with a line right now (for tests: empty lines must not linger).
    pub fn len(&self) -> usize {
        self.lines.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// True when no session has a line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Turn {
    /// The hand-off from the previous request, if it left one.
    pub fn take_hand_off(&mut self) -> Option<HandOff> {
        self.guard.as_mut().and_then(|g| g.take())
    }

    /// True when other requests of this session wait here.
    pub fn others_waiting(&self) -> bool {
        self.line.waiting.load(Ordering::Acquire) > 0
    }

    /// Leaves `hand_off` for the next request in line.
    pub fn hand_off(&mut self, hand_off: HandOff) {
        if let Some(guard) = self.guard.as_mut() {
            **guard = Some(hand_off);
        }
    }

    /// Takes back a hand-off if nobody waits for it any more (to free it in Redis now).
    pub fn unclaimed_hand_off(&mut self) -> Option<HandOff> {
        if self.others_waiting() {
            return None;
        }
        self.take_hand_off()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Let the next in line go first, then see whether the line is done.
        drop(self.guard.take());
        self.queues.reclaim(self.id, &self.line);
        let mut lines = self.queues.lines.lock().unwrap_or_else(|e| e.into_inner());
        // The map and this turn are the only holders: nobody waits or holds it.
        if Arc::strong_count(&self.line) == 2 && self.line.waiting.load(Ordering::Acquire) == 0 {
            lines.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    use super::*;

    fn queues() -> (Arc<LocalQueues>, Arc<AtomicU32>) {
        let orphans = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&orphans);
        let queues = Arc::new(LocalQueues::new(Arc::new(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        })));
        (queues, orphans)
    }

    fn hand_off(count: u32) -> HandOff {
        HandOff {
            token: "t".into(),
            record: Record {
                id: Id::default(),
                data: HashMap::new(),
                expiry_date: time::OffsetDateTime::now_utc(),
            },
            count,
            pending: Vec::new(),
        }
    }

    #[tokio::test]
    async fn turns_are_served_in_arrival_order_and_lines_do_not_linger() {
        let (queues, _) = queues();
        let id = Id::default();
        let first = queues.turn(id).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (queues, order) = (Arc::clone(&queues), Arc::clone(&order));
            waiters.push(tokio::spawn(async move {
                let turn = queues.turn(id).await;
                order.lock().expect("lock").push(i);
                tokio::time::sleep(Duration::from_millis(2)).await;
                drop(turn);
            }));
            // Each waiter is queued before the next one arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        for w in waiters {
            w.await.expect("waiter");
        }
        assert_eq!(*order.lock().expect("lock"), [0, 1, 2, 3, 4]);
        assert!(queues.is_empty());
    }

    #[tokio::test]
    async fn a_hand_off_reaches_the_next_in_line_or_is_reclaimed() {
        let (queues, orphans) = queues();
        let id = Id::default();
        let mut first = queues.turn(id).await;
        let next = tokio::spawn({
            let queues = Arc::clone(&queues);
            async move { queues.turn(id).await.take_hand_off().map(|h| h.count) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(first.others_waiting());
        first.hand_off(hand_off(1));
        drop(first);
        assert_eq!(next.await.expect("next"), Some(1));

        // A waiter that gives up: the hand-off meant for it is reclaimed, not leaked.
        let mut holder = queues.turn(id).await;
        let quitter = tokio::spawn({
            let queues = Arc::clone(&queues);
            async move { queues.turn(id).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        holder.hand_off(hand_off(1));
        quitter.abort();
        let _ = quitter.await;
        drop(holder);
        assert_eq!(orphans.load(Ordering::SeqCst), 1);
        assert!(queues.is_empty());
    }
}
