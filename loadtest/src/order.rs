//! Real-time order, as Knossos and Jepsen's counter checks use it: once an answer has come
//! back, every operation sent after it must see at least its value. An increment sent after
//! an answer `v` arrived must answer above `v` (it took effect after the one that made `v`); a
//! read sent after it must answer `v` or more.
//!
//! Sound with the checker's clocks: an operation is timed from before its request is written
//! until after its answer is read, so "answered before the other was sent" in recorded times
//! implies it in real time (truncating both to microseconds keeps a strict `<` true).
//! No I/O here: every rule is unit tested.

// No operator on a value from the server may wrap (release) or panic (debug).
#![deny(clippy::arithmetic_side_effects)]

use std::fmt;

/// Which operation of a parallel run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The increment that opened the session.
    Opening,
    /// The read before the workers started (an increment with `--endpoint text`).
    BaseRead,
    /// The read after the workers stopped (an increment with `--endpoint text`).
    FinalRead,
    /// A worker's increment; both numbers count from 0.
    Increment {
        /// Which worker.
        worker: u64,
        /// Its position in that worker's sequence.
        nth: u64,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Opening => f.write_str("the opening"),
            Op::BaseRead => f.write_str("the base read"),
            Op::FinalRead => f.write_str("the final read"),
            Op::Increment { worker, nth } => write!(f, "worker {worker} increment {nth}"),
        }
    }
}

/// One completed operation with a known value; times in microseconds from a common origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Which operation.
    pub op: Op,
    /// True for an increment (its answer must be above what it follows), false for a read.
    pub writes: bool,
    /// When it was sent.
    pub sent_us: u64,
    /// When its answer came back.
    pub received_us: u64,
    /// The counter value it answered.
    pub value: u64,
}

/// A microsecond instant as milliseconds, for examples.
pub fn ms(us: u64) -> String {
    format!("{}.{:03} ms", us / 1000, us % 1000)
}

/// Every operation that answered at or below (a read: below) the highest value answered
/// before it was sent, each with an example naming both operations, their times and values.
pub fn behind(points: &[Point]) -> Vec<(Point, String)> {
    let mut by_received: Vec<&Point> = points.iter().collect();
    by_received.sort_unstable_by_key(|p| p.received_us);
    // highest[i]: the operation with the highest value among the first i + 1 answers.
    let mut highest: Vec<&Point> = Vec::with_capacity(by_received.len());
    for point in &by_received {
        let top = match highest.last() {
            Some(top) if top.value >= point.value => top,
            _ => point,
        };
        highest.push(top);
    }
    let mut found = Vec::new();
    for point in points {
        let answered_before = by_received.partition_point(|q| q.received_us < point.sent_us);
        let Some(top) = answered_before
            .checked_sub(1)
            .and_then(|last| highest.get(last))
        else {
            continue;
        };
        let went_back = if point.writes {
            point.value <= top.value
        } else {
            point.value < top.value
        };
        if went_back {
            let example = format!(
                "{} sent at {} answered {}, but {} had answered {} at {}",
                point.op,
                ms(point.sent_us),
                point.value,
                top.op,
                top.value,
                ms(top.received_us)
            );
            found.push((*point, example));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(nth: u64, sent_us: u64, received_us: u64, value: u64) -> Point {
        Point {
            op: Op::Increment { worker: 0, nth },
            writes: true,
            sent_us,
            received_us,
            value,
        }
    }

    fn read(op: Op, sent_us: u64, received_us: u64, value: u64) -> Point {
        Point {
            op,
            writes: false,
            sent_us,
            received_us,
            value,
        }
    }

    #[test]
    fn overlapping_operations_may_answer_in_any_order() {
        // Both in flight together: either may have been applied first.
        let points = [inc(0, 0, 10, 6), inc(1, 1, 9, 5), inc(2, 20, 30, 7)];
        assert!(behind(&points).is_empty());
    }

    #[test]
    fn an_increment_sent_after_a_higher_answer_went_backwards() {
        // The case: 42 came back at 1.000 ms, then a request sent at 1.500 ms got 41.
        let points = [inc(0, 0, 1000, 42), inc(1, 1500, 2000, 41)];
        let found = behind(&points);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].1,
            "worker 0 increment 1 sent at 1.500 ms answered 41, but worker 0 increment 0 had \
             answered 42 at 1.000 ms"
        );
    }

    #[test]
    fn an_increment_may_not_repeat_an_earlier_answer_but_a_read_may() {
        let points = [inc(0, 0, 1, 5), inc(1, 2, 3, 5)];
        assert_eq!(behind(&points).len(), 1);
        let points = [inc(0, 0, 1, 5), read(Op::FinalRead, 2, 3, 5)];
        assert!(behind(&points).is_empty());
        let points = [inc(0, 0, 1, 5), read(Op::FinalRead, 2, 3, 4)];
        assert_eq!(behind(&points)[0].0.op, Op::FinalRead);
    }

    #[test]
    fn the_highest_earlier_answer_is_named_not_the_latest() {
        let points = [
            inc(0, 0, 1, 9),
            inc(1, 0, 2, 3),
            read(Op::FinalRead, 5, 6, 8),
        ];
        let found = behind(&points);
        assert_eq!(found.len(), 1);
        assert!(found[0].1.contains("worker 0 increment 0 had answered 9"));
    }

    #[test]
    fn an_answer_at_the_same_microsecond_as_a_send_does_not_order_them() {
        let points = [inc(0, 0, 5, 7), inc(1, 5, 6, 6)];
        assert!(behind(&points).is_empty());
    }

    #[test]
    fn reads_are_held_to_the_opening() {
        let points = [
            Point {
                op: Op::Opening,
                writes: true,
                sent_us: 0,
                received_us: 1,
                value: 1,
            },
            read(Op::BaseRead, 2, 3, 0),
        ];
        let found = behind(&points);
        assert!(
            found[0]
                .1
                .starts_with("the base read sent at 0.002 ms answered 0")
        );
        assert!(
            found[0]
                .1
                .ends_with("the opening had answered 1 at 0.001 ms")
        );
    }
}
