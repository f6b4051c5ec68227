//! The last minute of one series, one value per second: what each chart of the dashboard
//! draws. Written only by the sampler, once a second; a request never touches it.

use std::collections::VecDeque;

/// Seconds a series keeps: the dashboard shows the last minute.
pub const SECONDS: usize = 60;

/// Up to [`SECONDS`] values, oldest first; a new one pushes the oldest out.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring<T> {
    /// The values, oldest first.
    values: VecDeque<T>,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Ring {
            values: VecDeque::with_capacity(SECONDS),
        }
    }
}

impl<T: Clone> Ring<T> {
    /// Appends this second's value, forgetting the one from a minute ago.
    pub fn push(&mut self, value: T) {
        if self.values.len() == SECONDS {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    /// The values, oldest first.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &T> {
        self.values.iter()
    }
}

/// Turns a counter that only grows (requests answered so far) into a per-second series: the
/// difference since the previous sample. A counter that went down (a backend's state was
/// replaced) starts over from its new value instead of showing a negative rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rate {
    /// The counter at the previous sample; `None` before the first.
    previous: Option<u64>,
    /// Per-second differences.
    pub series: Ring<u64>,
}

impl Rate {
    /// Records the counter's value at this second's sample. The first sample only sets the
    /// baseline: requests before the dashboard's first look are not one second's worth.
    pub fn sample(&mut self, counter: u64) {
        if let Some(previous) = self.previous {
            self.series.push(counter.saturating_sub(previous));
        }
        self.previous = Some(counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_the_last_minute_oldest_first() {
        let mut ring = Ring::default();
        for second in 0..(SECONDS as u64 + 5) {
            ring.push(second);
        }
        let kept: Vec<u64> = ring.values().copied().collect();
        assert_eq!(kept.len(), SECONDS);
        assert_eq!(kept.first(), Some(&5), "the 5 oldest seconds are gone");
        assert_eq!(kept.last(), Some(&(SECONDS as u64 + 4)));
    }

    #[test]
    fn a_rate_is_the_difference_per_sample_from_the_first_on() {
        let mut rate = Rate::default();
        rate.sample(1_000);
        assert_eq!(
            rate.series.values().len(),
            0,
            "the first sample is a baseline"
        );
        rate.sample(1_250);
        rate.sample(1_250);
        rate.sample(1_400);
        let per_second: Vec<u64> = rate.series.values().copied().collect();
        assert_eq!(per_second, [250, 0, 150]);
        rate.sample(10);
        rate.sample(30);
        let per_second: Vec<u64> = rate.series.values().copied().collect();
        assert_eq!(
            per_second,
            [250, 0, 150, 0, 20],
            "a counter that went down is no negative rate"
        );
    }
}
