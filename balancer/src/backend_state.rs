//! One backend: its address (pre-rendered for URIs and headers), health state, request slots
//! and counters.
//!
//! Everything a request touches is an atomic or an immutable value, so the hot path never locks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;
use http::uri::Authority;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend_notes::BackendNotes;

/// Labels of the response status classes counted per backend, index = first digit - 1.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters of one backend, all atomics so the request path never locks.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests sent and not yet finished (response body still streaming counts).
    in_flight: AtomicI64,
    /// Responses by status class (including 502/504 the balancer made for this backend).
    responses: [AtomicU64; 5],
    /// Connect errors, refusals, resets and timeouts.
    failures: AtomicU64,
    /// Times this backend was ejected.
    pub(crate) ejections: AtomicU64,
}

impl BackendStats {
    /// Counts one response with `status`.
    pub fn record_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
    /// Counts one failed attempt.
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    /// Responses per class, in [`STATUS_CLASSES`] order.
    pub fn responses(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed))
    }
    /// Requests currently in flight.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// Failed attempts so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    /// Ejections so far.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }
}

/// One backend address and its health state.
#[derive(Debug)]
pub struct Backend {
    /// Where to connect.
    addr: SocketAddr,
    /// `addr` as a URI authority, built once so each request only clones it.
    authority: Authority,
    /// `addr` as the `X-Upstream` response header value, built once.
    header: HeaderValue,
    /// `addr` as text, for logs, metrics and /status.
    label: String,
    /// Whether active checks put it in rotation. New backends start out of rotation.
    passing: AtomicBool,
    /// Consecutive passing (positive) or failing (negative) checks, for rise and fall.
    streak: AtomicI64,
    /// Whether it was ever in rotation: a new backend needs one passing check, one that fell
    /// needs `HEALTH_RISE`.
    ever_passed: AtomicBool,
    /// Ejected until this many milliseconds after `epoch`; 0 when never ejected.
    pub(crate) ejected_until_ms: AtomicU64,
    /// Time origin shared with the set, so ejection deadlines fit in an atomic.
    epoch: Instant,
    /// One permit per concurrent request (`MAX_CONNS_PER_BACKEND`).
    slots: Arc<Semaphore>,
    /// Counters for metrics and /status.
    pub stats: BackendStats,
    /// Its replica name and last error, for the dashboard (never written by a request that
    /// succeeds).
    pub notes: BackendNotes,
}

impl Backend {
    pub(crate) fn new(addr: SocketAddr, epoch: Instant, max_conns: usize) -> Backend {
        let label = addr.to_string();
        Backend {
            addr,
            // A socket address always forms a valid authority and header value.
            authority: Authority::try_from(label.as_str())
                .unwrap_or_else(|_| Authority::from_static("invalid")),
            header: HeaderValue::from_str(&label)
                .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
            label,
            passing: AtomicBool::new(false),
            streak: AtomicI64::new(0),
            ever_passed: AtomicBool::new(false),
            ejected_until_ms: AtomicU64::new(0),
            epoch,
            slots: Arc::new(Semaphore::new(max_conns)),
            stats: BackendStats::default(),
            notes: BackendNotes::default(),
        }
    }

    /// The backend's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The address as a URI authority.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
    /// The address as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }
    /// The address as text.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// Whether the last active check passed.
    pub fn is_passing(&self) -> bool {
        self.passing.load(Ordering::Relaxed)
    }
    /// Puts the backend in or out of rotation at once; returns the previous state (unit tests
    /// of the set; health checks go through their rise and fall counts).
    #[cfg(test)]
    pub fn set_passing(&self, ok: bool) -> bool {
        if ok {
            self.ever_passed.store(true, Ordering::Relaxed);
        }
        self.streak.store(0, Ordering::Relaxed);
        self.passing.swap(ok, Ordering::Relaxed)
    }
    /// Records one active check: in rotation after `rise` passes in a row (one for a backend
    /// never in rotation yet), out after `fall` failures in a row. Returns the state before
    /// and after.
    pub fn record_check(&self, ok: bool, rise: u32, fall: u32) -> (bool, bool) {
        let streak = self.streak.load(Ordering::Relaxed);
        let streak = match (ok, streak) {
            (true, s) if s > 0 => s + 1,
            (true, _) => 1,
            (false, s) if s < 0 => s - 1,
            (false, _) => -1,
        };
        self.streak.store(streak, Ordering::Relaxed);
        let was = self.is_passing();
        let now = if was {
            streak > -i64::from(fall)
        } else {
            let needed = if self.ever_passed.load(Ordering::Relaxed) {
                i64::from(rise)
            } else {
                1
            };
            streak >= needed
        };
        if now != was {
            self.passing.store(now, Ordering::Relaxed);
            if now {
                self.ever_passed.store(true, Ordering::Relaxed);
            }
        }
        (was, now)
    }
    /// True when a request could start now without waiting for a slot.
    pub fn has_free_slot(&self) -> bool {
        self.slots.available_permits() > 0
    }
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    /// Time left in the current ejection, if any.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }
    /// In rotation: passed its last check and not ejected.
    pub fn is_available(&self) -> bool {
        self.is_passing() && self.ejected_for().is_none()
    }
    /// Waits for a free request slot, then marks one request as started; the guard frees the
    /// slot and marks it finished when dropped.
    pub async fn start_request(self: &Arc<Self>) -> InFlight {
        // The semaphore is never closed, so acquiring only fails if that changes; then run
        // without a slot rather than fail the request.
        let permit = Arc::clone(&self.slots).acquire_owned().await.ok();
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: Arc::clone(self),
            permit,
        }
    }
}

/// Holds a backend request slot and its in-flight count while it lives (kept by the
/// streaming response body, so a slot is busy until the response is fully relayed).
#[derive(Debug)]
pub struct InFlight {
    /// The backend this request went to.
    backend: Arc<Backend>,
    /// The request slot; released early for upgraded tunnels.
    permit: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    /// The backend this request went to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Frees the request slot but keeps counting as in flight: an upgraded tunnel (WebSocket)
    /// may stay open for hours and must not hold one of the backend's request slots.
    pub fn release_slot(&mut self) {
        self.permit = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_need_streaks_but_a_new_backend_enters_on_its_first_pass() {
        let b = Backend::new(SocketAddr::from(([127, 0, 0, 1], 1)), Instant::now(), 1);
        assert_eq!(b.record_check(true, 2, 2), (false, true), "new: one pass");
        assert_eq!(
            b.record_check(false, 2, 2),
            (true, true),
            "one failure is not a fall"
        );
        assert_eq!(b.record_check(true, 2, 2), (true, true));
        assert_eq!(b.record_check(false, 2, 2), (true, true));
        assert_eq!(
            b.record_check(false, 2, 2),
            (true, false),
            "two in a row: out"
        );
        assert_eq!(
            b.record_check(true, 2, 2),
            (false, false),
            "one pass is not a rise"
        );
        assert_eq!(b.record_check(false, 2, 2), (false, false));
        assert_eq!(b.record_check(true, 2, 2), (false, false));
        assert_eq!(
            b.record_check(true, 2, 2),
            (false, true),
            "two in a row: back"
        );
    }
}
