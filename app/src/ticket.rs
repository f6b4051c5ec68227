//! A request's claim on its write: whether the session writer took its change, so that a
//! request cut off by `REQUEST_TIMEOUT`, or dropped because its client went away, is
//! answered truthfully and never applied after the answer said it was not.
//!
//! The request timeout ([`crate::outcome::guard`]) makes the ticket and puts it in the
//! request's extensions; [`crate::writer::SessionWriter`] files it with the change; the
//! session's writer takes it when the change enters a round. Taking and withdrawing are one atomic step, so
//! exactly one of them wins:
//!
//! | Ticket when the request is cut off | Answer | What happens to the change |
//! |---|---|---|
//! | no change filed, or still queued | 503 "nothing was written" | withdrawn: never applied |
//! | taken by the writer | 504 "may or may not have been applied" | its round goes on |

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

const EMPTY: u8 = 0;
const QUEUED: u8 = 1;
const TAKEN: u8 = 2;
const WITHDRAWN: u8 = 3;

/// One request's claim; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Ticket(Arc<AtomicU8>);

impl Ticket {
    /// Files a change: from now on the writer may take it. False when the request was
    /// withdrawn already (cut off before it got here): the change must not be sent.
    pub fn file(&self) -> bool {
        self.0
            .compare_exchange(EMPTY, QUEUED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The writer takes the change into a round. False when the request was withdrawn: the
    /// change is dropped unapplied.
    pub fn take(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The request gives up (timeout, client gone). True when nothing of it was or will be
    /// applied; false when the writer took its change already.
    pub fn withdraw(&self) -> bool {
        let mut seen = self.0.load(Ordering::Acquire);
        loop {
            if seen == TAKEN {
                return false;
            }
            if seen == WITHDRAWN {
                return true;
            }
            match self
                .0
                .compare_exchange(seen, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
    }

    /// True once the writer took the change.
    pub fn is_taken(&self) -> bool {
        self.0.load(Ordering::Acquire) == TAKEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawn_change_is_never_taken_and_a_taken_one_never_withdrawn() {
        let queued = Ticket::default();
        assert!(queued.file());
        assert!(queued.withdraw(), "nothing taken yet");
        assert!(!queued.take(), "the writer drops it");

        let taken = Ticket::default();
        assert!(taken.file());
        assert!(taken.take());
        assert!(
            !taken.withdraw(),
            "its round goes on: the answer must say unknown"
        );
        assert!(taken.is_taken());

        let late = Ticket::default();
        assert!(late.withdraw(), "cut off before filing");
        assert!(!late.file(), "so the change is never sent");
    }
}
