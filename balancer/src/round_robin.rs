//! Round-robin selection: one shared atomic counter, no lock and no allocation per pick.
//!
//! The counter is global rather than per backend list, so a list swapped in by discovery or
//! health keeps spreading load from where it was instead of restarting at index 0.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Hands out indexes 0..len in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Next ticket; wraps around harmlessly at usize::MAX.
    next: AtomicUsize,
}

impl RoundRobin {
    /// A fresh selector starting at index 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index to use for the next request among `len` candidates, or `None` if there are none.
    ///
    /// `Relaxed` is enough: only the uniqueness of each ticket matters, not ordering with other memory.
    pub fn pick(&self, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spreads_evenly_across_backends() {
        let rr = RoundRobin::new();
        let mut counts = [0usize; 3];
        for _ in 0..3_000 {
            counts[rr.pick(3).expect("non-empty")] += 1;
        }
        assert_eq!(counts, [1_000, 1_000, 1_000]);
    }

    #[test]
    fn stays_within_one_under_concurrency() {
        let rr = Arc::new(RoundRobin::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let rr = Arc::clone(&rr);
                std::thread::spawn(move || {
                    let mut counts = [0usize; 5];
                    for _ in 0..10_000 {
                        counts[rr.pick(5).expect("non-empty")] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0usize; 5];
        for h in handles {
            for (t, c) in total.iter_mut().zip(h.join().expect("thread")) {
                *t += c;
            }
        }
        // 40,000 tickets over 5 backends: every ticket is unique, so the split is exact.
        assert_eq!(total, [8_000; 5]);
    }

    #[test]
    fn empty_set_has_no_pick() {
        assert_eq!(RoundRobin::new().pick(0), None);
    }
}
