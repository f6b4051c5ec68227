//! Gives the memory of a finished burst of connections back to the operating system.
//!
//! A burst of client connections (1,000 clients arriving at once, say) allocates hyper's
//! buffers, request heads and upstream state for each. When the burst settles, the
//! connections close or are parked without their buffers ([`crate::keep_alive`]), and the
//! memory is freed, but glibc's malloc only returns free memory at the top of a heap to the
//! kernel: what was freed between blocks that are still in use (the parked connections'
//! small remains) stays resident. `malloc_trim(0)` releases every whole free page.
//!
//! The [`Trimmer`] counts connections that let their buffers go (parked or closed). Checked
//! every [`TICK`], it trims once a burst has settled: at least [`MIN_RELEASES`] releases
//! since the last trim, and none in the last tick. So a steady load, whose connections keep
//! their buffers or keep turning over, is never paused for a trim, and a trickle of single
//! connections is not worth one. `MEMORY_TRIM=off` turns it off. On a target without glibc
//! there is nothing to call, and the trimmer does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

/// How often the trimmer looks at the release count.
pub const TICK: Duration = Duration::from_millis(500);

/// Releases since the last trim that make a burst worth a trim.
pub const MIN_RELEASES: u64 = 64;

/// Counts connections that let their buffers go, and trims once a burst of them settled.
#[derive(Debug, Default)]
pub struct Trimmer {
    released: AtomicU64,
    /// Trims made (`balancer_memory_trims_total`).
    trims: Counter,
}

impl Trimmer {
    /// A trimmer that counts its trims in `trims`.
    pub fn new(trims: Counter) -> Trimmer {
        Trimmer {
            released: AtomicU64::new(0),
            trims,
        }
    }

    /// A connection closed or was parked: its buffers were freed.
    pub fn released(&self) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks every [`TICK`] and trims when a burst settled, until the future is dropped.
    pub async fn run(&self) {
        let mut settle = Settle::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if settle.should_trim(self.released.load(Ordering::Relaxed)) {
                let start = std::time::Instant::now();
                // Blocking, but short (a walk over the free lists); off the async threads.
                let freed = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
                self.trims.inc();
                tracing::debug!(freed, took = ?start.elapsed(), "returned free memory to the OS");
            }
        }
    }
}

/// The decision of [`Trimmer::run`], on successive readings of the release count.
#[derive(Debug, Default)]
struct Settle {
    /// The count at the previous tick.
    seen: u64,
    /// The count at the last trim.
    trimmed: u64,
}

impl Settle {
    /// Whether to trim now, given the release count at this tick.
    fn should_trim(&mut self, count: u64) -> bool {
        let settled = count == self.seen;
        self.seen = count;
        if settled && count - self.trimmed >= MIN_RELEASES {
            self.trimmed = count;
            return true;
        }
        false
    }
}

/// Returns free heap pages to the kernel; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim is a C function")]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's own free lists
    // under its locks; it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Without glibc there is no `malloc_trim`: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_burst_has_settled() {
        let mut s = Settle::default();
        // Connections are parked over two ticks: still going, no trim.
        assert!(!s.should_trim(40));
        assert!(!s.should_trim(100));
        // Quiet for a tick: trim once.
        assert!(s.should_trim(100));
        assert!(!s.should_trim(100));
        assert!(!s.should_trim(100));
    }

    #[test]
    fn a_steady_turnover_is_never_paused_for_a_trim() {
        let mut s = Settle::default();
        for count in (1..50).map(|i| i * 1_000) {
            assert!(!s.should_trim(count));
        }
    }

    #[test]
    fn a_trickle_is_not_worth_a_trim() {
        let mut s = Settle::default();
        for count in [1, 1, 5, 5, 20, 20, MIN_RELEASES - 1, MIN_RELEASES - 1] {
            assert!(!s.should_trim(count));
        }
        // The trickle adds up: once there are enough since the last trim, one trim.
        assert!(!s.should_trim(MIN_RELEASES + 3));
        assert!(s.should_trim(MIN_RELEASES + 3));
    }
}
