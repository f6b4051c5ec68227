//! The dashboard's timeline: what happened to which backend, and when (discovered, became
//! ready, checks failing, ejected, readmitted, removed by DNS re-resolution).
//!
//! Events are not reported by the code that causes them: once a second the sampler hands
//! over what it sees of every backend ([`Observed`]), and the timeline compares it with what
//! it saw a second before. So neither discovery, health checks nor the request path call
//! into the dashboard, and this file is a plain state machine, tested without I/O. A change
//! undone within the same second is missed, except an ejection, which is counted
//! ([`Observed::ejections`]) and so never lost.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// Events kept: enough for a few scale-ups and failures, small enough to send every second.
pub const KEPT: usize = 50;

/// What the sampler sees of one backend at one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The backend's address (its identity in the set).
    pub addr: SocketAddr,
    /// The replica's name (`X-Served-By`), once a check learned it.
    pub name: Option<String>,
    /// Whether its active checks put it in rotation.
    pub passing: bool,
    /// Time left in a passive ejection.
    pub ejected_for: Option<Duration>,
    /// Ejections since it was discovered.
    pub ejections: u64,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// DNS re-resolution returned a new address.
    Discovered,
    /// Its first passing check put it in rotation.
    BecameReady,
    /// Its checks failed `HEALTH_FALL` times in a row: out of rotation.
    ChecksFailing,
    /// A failed request ejected it for the cool-down (`times` when several since the last
    /// sample).
    Ejected {
        /// Cool-down left when seen.
        cooldown: Option<Duration>,
        /// Ejections since the previous sample.
        times: u64,
    },
    /// Back in rotation: the ejection's cool-down ended, or checks pass again after a fall.
    Readmitted,
    /// DNS re-resolution no longer returns its address.
    Removed,
}

impl EventKind {
    /// A short word for the page (also its CSS class).
    pub fn word(&self) -> &'static str {
        match self {
            EventKind::Discovered => "discovered",
            EventKind::BecameReady => "ready",
            EventKind::ChecksFailing => "checks failing",
            EventKind::Ejected { .. } => "ejected",
            EventKind::Readmitted => "readmitted",
            EventKind::Removed => "removed",
        }
    }

    /// Details worth a line of text, if any.
    pub fn detail(&self) -> String {
        match self {
            EventKind::Discovered => "new address from DNS; checked before it gets traffic".into(),
            EventKind::BecameReady => "first check passed: in rotation".into(),
            EventKind::ChecksFailing => "active checks failing: out of rotation".into(),
            EventKind::Ejected { cooldown, times } => {
                let again = if *times > 1 {
                    format!(" ({times} times)")
                } else {
                    String::new()
                };
                match cooldown {
                    Some(left) => format!(
                        "a request failed on it: out for {:.0} s{again}",
                        left.as_secs_f64()
                    ),
                    None => format!("a request failed on it{again}"),
                }
            }
            EventKind::Readmitted => "back in rotation".into(),
            EventKind::Removed => "no longer in DNS: dropped".into(),
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When the sampler saw it (within a second of when it happened).
    pub at: SystemTime,
    /// Which backend.
    pub addr: SocketAddr,
    /// Its replica name, if known.
    pub name: Option<String>,
    /// What happened.
    pub kind: EventKind,
}

/// What the timeline remembers of a backend between samples.
#[derive(Debug, Clone)]
struct Seen {
    /// The last observation.
    last: Observed,
    /// Whether it was ever in rotation: its next pass is a readmission, not its first.
    ever_passed: bool,
}

/// The last [`KEPT`] events, and what each backend looked like at the previous sample.
#[derive(Debug, Default)]
pub struct Timeline {
    /// By address.
    seen: HashMap<SocketAddr, Seen>,
    /// Oldest first.
    events: VecDeque<Event>,
}

impl Timeline {
    /// Compares `now` (every backend at this sample) with the previous sample and records
    /// what changed, at `at`.
    pub fn observe(&mut self, at: SystemTime, now: &[Observed]) {
        for b in now {
            let kinds = match self.seen.get(&b.addr) {
                None => first_sight(b),
                Some(seen) => changes(seen, b),
            };
            for kind in kinds {
                self.push(Event {
                    at,
                    addr: b.addr,
                    name: b.name.clone(),
                    kind,
                });
            }
            let ever_passed =
                b.passing || self.seen.get(&b.addr).is_some_and(|seen| seen.ever_passed);
            self.seen.insert(
                b.addr,
                Seen {
                    last: b.clone(),
                    ever_passed,
                },
            );
        }
        let gone: Vec<Seen> = self
            .seen
            .values()
            .filter(|seen| !now.iter().any(|b| b.addr == seen.last.addr))
            .cloned()
            .collect();
        for seen in gone {
            self.seen.remove(&seen.last.addr);
            self.push(Event {
                at,
                addr: seen.last.addr,
                name: seen.last.name,
                kind: EventKind::Removed,
            });
        }
    }

    /// Whether `addr` was in rotation at any sample so far (out of rotation, it is then down
    /// rather than new).
    pub fn ever_passed(&self, addr: SocketAddr) -> bool {
        self.seen.get(&addr).is_some_and(|seen| seen.ever_passed)
    }

    /// The events kept, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().rev()
    }

    fn push(&mut self, event: Event) {
        if self.events.len() == KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// A backend seen for the first time: discovered, and maybe already checked in.
fn first_sight(b: &Observed) -> Vec<EventKind> {
    let mut kinds = vec![EventKind::Discovered];
    if b.passing {
        kinds.push(EventKind::BecameReady);
    }
    if b.ejections > 0 {
        kinds.push(EventKind::Ejected {
            cooldown: b.ejected_for,
            times: b.ejections,
        });
    }
    kinds
}

/// What changed for a known backend since the previous sample.
fn changes(seen: &Seen, b: &Observed) -> Vec<EventKind> {
    let was = &seen.last;
    let mut kinds = Vec::new();
    match (was.passing, b.passing) {
        (false, true) if seen.ever_passed => kinds.push(EventKind::Readmitted),
        (false, true) => kinds.push(EventKind::BecameReady),
        (true, false) => kinds.push(EventKind::ChecksFailing),
        _ => {}
    }
    let times = b.ejections.saturating_sub(was.ejections);
    if times > 0 {
        kinds.push(EventKind::Ejected {
            cooldown: b.ejected_for,
            times,
        });
    } else if was.ejected_for.is_some() && b.ejected_for.is_none() && was.passing && b.passing {
        // The cool-down ran out while its checks kept passing: routable again.
        kinds.push(EventKind::Readmitted);
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(port: u16) -> Observed {
        Observed {
            addr: SocketAddr::from(([10, 0, 0, 1], port)),
            name: Some(format!("replica-{port}")),
            passing: false,
            ejected_for: None,
            ejections: 0,
        }
    }

    fn at(second: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + second)
    }

    /// Each event as (second, port, word), oldest first.
    fn lines(timeline: &Timeline) -> Vec<(u64, u16, &'static str)> {
        let mut lines: Vec<_> = timeline
            .newest_first()
            .map(|e| {
                let second =
                    e.at.duration_since(at(0))
                        .expect("after the start")
                        .as_secs();
                (second, e.addr.port(), e.kind.word())
            })
            .collect();
        lines.reverse();
        lines
    }

    #[test]
    fn a_backends_life_from_discovery_to_removal_is_told_in_order() {
        let mut timeline = Timeline::default();
        let mut a = backend(1);
        let mut b = backend(2);
        b.passing = true;

        // Arrange and act: second by second, as the sampler would see it.
        timeline.observe(at(0), &[a.clone(), b.clone()]);
        a.passing = true;
        timeline.observe(at(1), &[a.clone(), b.clone()]);
        timeline.observe(at(2), &[a.clone(), b.clone()]);
        a.ejections = 1;
        a.ejected_for = Some(Duration::from_secs(10));
        timeline.observe(at(3), &[a.clone(), b.clone()]);
        a.ejected_for = None;
        timeline.observe(at(13), &[a.clone(), b.clone()]);
        a.passing = false;
        timeline.observe(at(14), &[a.clone(), b.clone()]);
        a.passing = true;
        timeline.observe(at(20), &[a.clone(), b.clone()]);
        timeline.observe(at(21), &[b.clone()]);

        // Assert
        assert_eq!(
            lines(&timeline),
            [
                (0, 1, "discovered"),
                (0, 2, "discovered"),
                (0, 2, "ready"),
                (1, 1, "ready"),
                (3, 1, "ejected"),
                (13, 1, "readmitted"),
                (14, 1, "checks failing"),
                (20, 1, "readmitted"),
                (21, 1, "removed"),
            ]
        );
        let removed = timeline.newest_first().next().expect("an event");
        assert_eq!(removed.name.as_deref(), Some("replica-1"));
    }

    #[test]
    fn an_ejection_over_within_a_second_is_still_told_and_counted() {
        let mut timeline = Timeline::default();
        let mut a = backend(1);
        a.passing = true;
        timeline.observe(at(0), std::slice::from_ref(&a));
        a.ejections = 2;
        timeline.observe(at(1), std::slice::from_ref(&a));
        let newest = timeline.newest_first().next().expect("an event");
        assert_eq!(
            newest.kind,
            EventKind::Ejected {
                cooldown: None,
                times: 2
            }
        );
        assert_eq!(newest.kind.detail(), "a request failed on it (2 times)");
    }

    #[test]
    fn only_the_first_pass_is_ready_and_the_timeline_stays_bounded() {
        let mut timeline = Timeline::default();
        let mut a = backend(1);
        let mut flap = |timeline: &mut Timeline, seconds: std::ops::Range<u64>| {
            for second in seconds {
                a.passing = second % 2 == 1;
                timeline.observe(at(second), std::slice::from_ref(&a));
            }
        };
        flap(&mut timeline, 0..5);
        let words: Vec<_> = lines(&timeline).into_iter().map(|l| l.2).collect();
        assert_eq!(
            words,
            [
                "discovered",
                "ready",
                "checks failing",
                "readmitted",
                "checks failing"
            ]
        );
        flap(&mut timeline, 5..(KEPT as u64 * 2));
        assert_eq!(timeline.newest_first().count(), KEPT);
    }
}
