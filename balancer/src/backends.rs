//! The backend set: every known backend address, the subset in rotation, and passive ejection.
//!
//! Requests read an immutable snapshot (`Arc<Vec<..>>` behind arc-swap): a pick is one atomic
//! load, one counter increment and one `Arc` clone, with no lock. The lists are rebuilt and
//! swapped only on the cold paths (discovery, health checks, ejection), under a mutex that
//! just keeps two rebuilds from interleaving.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;
use http::uri::Authority;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::round_robin::RoundRobin;

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
    ejections: AtomicU64,
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
    /// Result of the last active health check. New backends start out of rotation.
    passing: AtomicBool,
    /// Ejected until this many milliseconds after `epoch`; 0 when never ejected.
    ejected_until_ms: AtomicU64,
    /// Time origin shared with the set, so ejection deadlines fit in an atomic.
    epoch: Instant,
    /// One permit per concurrent request (`MAX_CONNS_PER_BACKEND`).
    slots: Arc<Semaphore>,
    /// Counters for metrics and /status.
    pub stats: BackendStats,
}

impl Backend {
    fn new(addr: SocketAddr, epoch: Instant, max_conns: usize) -> Backend {
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
            ejected_until_ms: AtomicU64::new(0),
            epoch,
            slots: Arc::new(Semaphore::new(max_conns)),
            stats: BackendStats::default(),
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
    /// Records an active check result; returns the previous one.
    pub fn set_passing(&self, ok: bool) -> bool {
        self.passing.swap(ok, Ordering::Relaxed)
    }
    fn now_ms(&self) -> u64 {
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

/// All known backends and the ones in rotation.
#[derive(Debug)]
pub struct BackendSet {
    /// Every discovered backend, healthy or not (shared with the metrics collector).
    all: Arc<ArcSwap<Vec<Arc<Backend>>>>,
    /// The backends in rotation, rebuilt from `all` whenever health changes.
    healthy: ArcSwap<Vec<Arc<Backend>>>,
    /// Which healthy backend is next.
    rr: RoundRobin,
    /// Time origin for ejection deadlines.
    epoch: Instant,
    /// How long a passive ejection lasts.
    cooldown: Duration,
    /// Request slots per backend.
    max_conns: usize,
    /// Serialises rebuilds so a stale one cannot overwrite a newer one half-way.
    rebuild_lock: Mutex<()>,
    /// Ejection counter and healthy gauge.
    metrics: Arc<Metrics>,
}

impl BackendSet {
    /// An empty set; discovery fills it. Each backend gets `max_conns` request slots.
    pub fn new(cooldown: Duration, max_conns: usize) -> BackendSet {
        let all = Arc::new(ArcSwap::from_pointee(Vec::new()));
        let metrics = Arc::new(Metrics::new(Arc::clone(&all)));
        BackendSet {
            all,
            healthy: ArcSwap::from_pointee(Vec::new()),
            rr: RoundRobin::new(),
            epoch: Instant::now(),
            cooldown,
            max_conns,
            rebuild_lock: Mutex::new(()),
            metrics,
        }
    }

    /// The metrics, which read per-backend counters from this set.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Snapshot of every known backend.
    pub fn all(&self) -> Arc<Vec<Arc<Backend>>> {
        self.all.load_full()
    }

    /// Next healthy backend in round-robin order, skipping those already `tried` by this
    /// request and any ejected since the snapshot was taken.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let list = self.healthy.load();
        let n = list.len();
        let start = self.rr.pick(n)?;
        (0..n)
            .map(|i| &list[(start + i) % n])
            .find(|b| !tried.contains(&b.addr) && b.ejected_for().is_none())
            .cloned()
    }

    /// Takes `backend` out of rotation for the cool-down (nginx `max_fails=1 fail_timeout`).
    pub fn eject(&self, backend: &Backend) {
        let until = backend
            .now_ms()
            .saturating_add(u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX));
        let previous = backend.ejected_until_ms.swap(until, Ordering::Relaxed);
        if previous <= backend.now_ms() {
            backend.stats.ejections.fetch_add(1, Ordering::Relaxed);
            self.metrics.ejections.inc();
            tracing::warn!(upstream = %backend.label, cooldown_ms = self.cooldown.as_millis() as u64, "backend ejected");
            self.rebuild();
        }
    }

    /// Replaces the backend list with `addrs`, keeping the state of addresses already known.
    /// Returns the backends that are new (out of rotation until they pass a check).
    pub fn update_addresses(&self, addrs: &[SocketAddr]) -> Vec<Arc<Backend>> {
        let current = self.all.load_full();
        let mut next = Vec::with_capacity(addrs.len());
        let mut added = Vec::new();
        for addr in addrs {
            match current.iter().find(|b| b.addr == *addr) {
                Some(b) => next.push(Arc::clone(b)),
                None => {
                    let b = Arc::new(Backend::new(*addr, self.epoch, self.max_conns));
                    added.push(Arc::clone(&b));
                    next.push(b);
                }
            }
        }
        let removed: Vec<_> = current
            .iter()
            .filter(|b| !addrs.contains(&b.addr))
            .map(|b| b.label.as_str())
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                added = ?added.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
                removed = ?removed,
                "backend addresses changed"
            );
            self.all.store(Arc::new(next));
            self.rebuild();
        }
        added
    }

    /// Recomputes the rotation from `all` (health results, ejections that ran out).
    pub fn rebuild(&self) {
        // A poisoned lock only means another rebuild panicked; the data it guards is `()`.
        let _guard = self.rebuild_lock.lock().unwrap_or_else(|e| e.into_inner());
        let healthy: Vec<_> = self
            .all
            .load()
            .iter()
            .filter(|b| b.is_available())
            .cloned()
            .collect();
        let changed = {
            let old = self.healthy.load();
            old.len() != healthy.len() || old.iter().zip(&healthy).any(|(a, b)| a.addr != b.addr)
        };
        if changed {
            self.metrics.healthy_backends.set(healthy.len() as i64);
            tracing::info!(
                healthy = ?healthy.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
                "rotation changed"
            );
            self.healthy.store(Arc::new(healthy));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn new_backends_wait_for_a_passing_check() {
        let set = BackendSet::new(Duration::from_secs(10), 8);
        let added = set.update_addresses(&[addr(1), addr(2)]);
        assert_eq!(added.len(), 2);
        assert!(set.pick(&[]).is_none());
        added[0].set_passing(true);
        set.rebuild();
        for _ in 0..4 {
            assert_eq!(set.pick(&[]).expect("one healthy").addr(), addr(1));
        }
    }

    #[test]
    fn ejected_backend_leaves_rotation_and_tried_ones_are_skipped() {
        let set = BackendSet::new(Duration::from_secs(10), 8);
        for b in set.update_addresses(&[addr(1), addr(2), addr(3)]) {
            b.set_passing(true);
        }
        set.rebuild();
        let all = set.all();
        set.eject(&all[1]);
        for _ in 0..6 {
            assert_ne!(set.pick(&[]).expect("healthy").addr(), addr(2));
        }
        assert_eq!(set.pick(&[addr(1)]).expect("healthy").addr(), addr(3));
        assert!(set.pick(&[addr(1), addr(3)]).is_none());
        assert_eq!(all[1].stats.ejections(), 1);
    }

    #[tokio::test]
    async fn requests_beyond_the_slot_limit_wait_for_a_free_slot() {
        let set = BackendSet::new(Duration::from_secs(10), 1);
        let b = set.update_addresses(&[addr(1)]).remove(0);
        let first = b.start_request().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.start_request()).await;
        assert!(
            waiting.is_err(),
            "second request got a slot while the first held it"
        );
        assert_eq!(b.stats.in_flight(), 1);
        drop(first);
        let second = tokio::time::timeout(Duration::from_millis(50), b.start_request()).await;
        assert!(second.is_ok());
    }

    #[test]
    fn removed_addresses_disappear_and_known_ones_keep_state() {
        let set = BackendSet::new(Duration::from_secs(10), 8);
        for b in set.update_addresses(&[addr(1), addr(2)]) {
            b.set_passing(true);
        }
        set.rebuild();
        let added = set.update_addresses(&[addr(2), addr(3)]);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].addr(), addr(3));
        for _ in 0..4 {
            assert_eq!(set.pick(&[]).expect("healthy").addr(), addr(2));
        }
    }
}
