//! What the dashboard shows at one moment: every backend's row, the cluster's series and the
//! timeline, as the sampler took them. Immutable once taken, shared by every open page.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::backend_notes::LastError;

use super::timeline::Event;

/// A backend's health as the dashboard words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// In rotation.
    Ready,
    /// Passing its checks, but passively ejected for this much longer.
    Ejected(Duration),
    /// Out of rotation: its checks fail (and it may be ejected as well).
    Down(Option<Duration>),
    /// Discovered, not yet passed a check.
    New,
}

/// One backend's row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its address.
    pub addr: SocketAddr,
    /// The replica's name (`X-Served-By`), once a check learned it.
    pub name: Option<String>,
    /// Active check and passive ejection, combined.
    pub health: Health,
    /// Requests being answered now.
    pub in_flight: i64,
    /// Requests per second over the last minute, oldest first.
    pub rate: Vec<u64>,
    /// Responses so far by status class (1xx..5xx).
    pub responses: [u64; 5],
    /// Failed attempts so far.
    pub failures: u64,
    /// Ejections so far.
    pub ejections: u64,
    /// The last failed check or attempt.
    pub last_error: Option<LastError>,
}

impl Row {
    /// Requests answered so far (every class).
    pub fn requests(&self) -> u64 {
        self.responses.iter().sum()
    }
}

/// The whole dashboard at one sample.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken.
    pub taken: SystemTime,
    /// One row per known backend, in discovery order.
    pub rows: Vec<Row>,
    /// Requests per second through the balancer over the last minute, oldest first.
    pub rate: Vec<u64>,
    /// p99 latency of each of those seconds (`None`: no request that second).
    pub p99: Vec<Option<Duration>>,
    /// Requests answered 503 for want of a backend, so far.
    pub unrouted: u64,
    /// The timeline, newest first.
    pub events: Vec<Event>,
}

impl Snapshot {
    /// Backends in rotation.
    pub fn ready(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.health == Health::Ready)
            .count()
    }
}
