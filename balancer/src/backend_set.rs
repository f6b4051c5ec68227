//! The backend set: every known backend address, the subset in rotation, and passive ejection.
//!
//! Requests read an immutable snapshot (`Arc<Vec<..>>` behind arc-swap): a pick is one atomic
//! load, one counter increment and one `Arc` clone, with no lock. The lists are rebuilt and
//! swapped only on the cold paths (discovery, health checks, ejection), under a mutex that
//! just keeps two rebuilds from interleaving.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use crate::backend_state::{Backend, InFlight, STATUS_CLASSES};
use crate::round_robin::RoundRobin;

/// All known backends and the ones in rotation.
#[derive(Debug)]
pub struct BackendSet {
    /// Every discovered backend, healthy or not.
    all: ArcSwap<Vec<Arc<Backend>>>,
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
    /// Passive ejections so far (read by the metrics at scrape time).
    ejections: AtomicU64,
}

impl BackendSet {
    /// An empty set; discovery fills it. Each backend gets `max_conns` request slots.
    pub fn new(cooldown: Duration, max_conns: usize) -> BackendSet {
        BackendSet {
            all: ArcSwap::from_pointee(Vec::new()),
            healthy: ArcSwap::from_pointee(Vec::new()),
            rr: RoundRobin::new(),
            epoch: Instant::now(),
            cooldown,
            max_conns,
            rebuild_lock: Mutex::new(()),
            ejections: AtomicU64::new(0),
        }
    }

    /// Passive ejections since start.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// How many backends are in rotation (ejected ones included until their cooldown ends).
    pub fn healthy_count(&self) -> usize {
        self.healthy.load().len()
    }

    /// Snapshot of every known backend.
    pub fn all(&self) -> Arc<Vec<Arc<Backend>>> {
        self.all.load_full()
    }

    /// Next healthy backend in round-robin order, skipping those already `tried` by this
    /// request and any ejected since the snapshot was taken.
    ///
    /// A backend with no free request slot is passed over while another has one. When every
    /// backend in rotation is ejected, they are tried anyway (nginx resets its failure state
    /// the same way): ejection is a hint that one backend is worse than the others, and a
    /// 503 for a whole cooldown helps nobody.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let list = self.healthy.load();
        let n = list.len();
        let start = self.rr.pick(n)?;
        let order = || (0..n).map(|i| &list[(start + i) % n]);
        let untried = |b: &&Arc<Backend>| !tried.contains(&b.addr());
        let panic = order().all(|b| b.ejected_for().is_some());
        if panic {
            return order().find(untried).cloned();
        }
        let usable = |b: &&Arc<Backend>| untried(b) && b.ejected_for().is_none();
        order()
            .filter(usable)
            .find(|b| b.has_free_slot())
            .or_else(|| order().find(usable))
            .cloned()
    }

    /// Takes `backend` out of rotation for the cool-down (nginx `max_fails=1 fail_timeout`).
    ///
    /// Budget: at most half of the backends in rotation (at least one) are ejected at a time,
    /// so one bad request or a burst of errors cannot empty the rotation.
    pub fn eject(&self, backend: &Backend) {
        if backend.ejected_for().is_none() {
            let list = self.healthy.load();
            let ejected = list.iter().filter(|b| b.ejected_for().is_some()).count();
            if ejected + 1 > (list.len() / 2).max(1) {
                tracing::warn!(upstream = %backend.label(), ejected, in_rotation = list.len(), "ejection budget spent; backend stays in rotation");
                return;
            }
        }
        let until = backend
            .now_ms()
            .saturating_add(u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX));
        let previous = backend.ejected_until_ms.swap(until, Ordering::Relaxed);
        if previous <= backend.now_ms() {
            backend.stats.ejections.fetch_add(1, Ordering::Relaxed);
            self.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(upstream = %backend.label(), cooldown_ms = self.cooldown.as_millis() as u64, "backend ejected");
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
            match current.iter().find(|b| b.addr() == *addr) {
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
            .filter(|b| !addrs.contains(&b.addr()))
            .map(|b| b.label())
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                added = ?added.iter().map(|b| b.label()).collect::<Vec<_>>(),
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
            // Ejected backends stay listed: `pick` skips them until their cooldown ends,
            // and they are routable again the moment it does.
            .filter(|b| b.is_passing())
            .cloned()
            .collect();
        let changed = {
            let old = self.healthy.load();
            old.len() != healthy.len()
                || old.iter().zip(&healthy).any(|(a, b)| a.addr() != b.addr())
        };
        if changed {
            tracing::info!(
                healthy = ?healthy.iter().map(|b| b.label()).collect::<Vec<_>>(),
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
    fn every_backend_ejected_means_try_them_anyway_and_the_budget_keeps_half() {
        let set = BackendSet::new(Duration::from_secs(10), 8);
        for b in set.update_addresses(&[addr(1), addr(2)]) {
            b.set_passing(true);
        }
        set.rebuild();
        let all = set.all();
        set.eject(&all[0]);
        set.eject(&all[1]);
        assert!(all[0].ejected_for().is_some());
        assert!(
            all[1].ejected_for().is_none(),
            "the budget keeps one of two"
        );
        // Force both out, as after a burst: requests still find a backend.
        all[1].ejected_until_ms.store(u64::MAX, Ordering::Relaxed);
        assert!(set.pick(&[]).is_some());
        assert!(set.pick(&[addr(1), addr(2)]).is_none());
    }

    #[test]
    fn a_backend_whose_cooldown_ended_is_routable_at_once() {
        let set = BackendSet::new(Duration::from_millis(1), 8);
        for b in set.update_addresses(&[addr(1), addr(2)]) {
            b.set_passing(true);
        }
        set.rebuild();
        let all = set.all();
        set.eject(&all[0]);
        std::thread::sleep(Duration::from_millis(5));
        let picked: Vec<_> = (0..4).map(|_| set.pick(&[]).expect("one").addr()).collect();
        assert!(
            picked.contains(&addr(1)),
            "no health round needed: {picked:?}"
        );
    }

    #[tokio::test]
    async fn a_backend_with_no_free_slot_is_passed_over() {
        let set = BackendSet::new(Duration::from_secs(10), 1);
        for b in set.update_addresses(&[addr(1), addr(2)]) {
            b.set_passing(true);
        }
        set.rebuild();
        let all = set.all();
        let _busy = all[0].start_request().await;
        for _ in 0..4 {
            assert_eq!(set.pick(&[]).expect("one").addr(), addr(2));
        }
        let _also_busy = all[1].start_request().await;
        assert!(set.pick(&[]).is_some(), "all full: wait on one");
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
