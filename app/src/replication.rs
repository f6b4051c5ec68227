//! Which server may acknowledge a session write, and how many replicas must hold it first.
//!
//! Redis replicates asynchronously. After a Sentinel failover the old master keeps answering
//! as a master until Sentinel converts it (8 s or more later), and whatever it accepts
//! meanwhile is thrown away when it resyncs from the new master. So, under Sentinel, a write
//! is acknowledged only when:
//! - the connection it went over is to the server Sentinel names master (the writer checks
//!   before sending: a write to a deposed master is refused, not sent);
//! - the server still has, in sync (`state=online`), as many replicas as Sentinel counts for
//!   it: the write scripts check `INFO replication` first and write nothing otherwise. A
//!   master whose replica was just promoted has lost that replica, so it refuses at once,
//!   before any client has heard of the failover;
//! - and those replicas confirmed it (`WAIT n`), so a failover that promotes one of them
//!   keeps it.
//!
//! A freshly promoted master has no replica in sync until the others resync from it;
//! Sentinel then counts none, and writes go on unreplicated (the trade-off: until a replica
//! has resynced, a second failure loses them). The count comes from the Sentinel watcher
//! ([`crate::sentinel`]); without Sentinel nothing is required ([`Replication::off`]).

use std::sync::{Arc, Mutex};

use fred::types::config::Server;

/// What Sentinel says about the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The master's address as Sentinel announces it (and fred connects to it).
    pub master: (String, u16),
    /// Its replicas that Sentinel sees up and linked to it (`master-link-status:ok`).
    pub replicas: u32,
}

/// What a write needs before it may be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing beyond Redis's answer (no Sentinel, or no replica in sync).
    Nothing,
    /// This many replicas must be in sync before the write, and confirm it after.
    Replicas(u32),
    /// The connection is to a server Sentinel no longer names master: do not write.
    Deposed,
}

/// The latest [`View`], shared by the Sentinel watcher (writer) and the session writers.
#[derive(Debug, Clone, Default)]
pub struct Replication {
    /// `None` when not under Sentinel; `Some(None)` before Sentinel first answered.
    view: Option<Arc<Mutex<Option<View>>>>,
}

impl Replication {
    /// No Sentinel: every write needs only Redis's answer.
    pub fn off() -> Replication {
        Replication { view: None }
    }

    /// Under Sentinel: requirements follow [`Replication::set`].
    pub fn sentinel() -> Replication {
        Replication {
            view: Some(Arc::new(Mutex::new(None))),
        }
    }

    /// True under Sentinel.
    pub fn is_on(&self) -> bool {
        self.view.is_some()
    }

    /// Records what Sentinel said last.
    pub fn set(&self, view: View) {
        if let Some(shared) = &self.view {
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(view);
        }
    }

    /// The latest view, if any.
    pub fn view(&self) -> Option<View> {
        self.view
            .as_ref()
            .and_then(|shared| shared.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// What a write over a connection to `connected` needs. Before Sentinel first answered,
    /// and while the connection is being made (no server yet), nothing is known: nothing is
    /// required, as fred connects only to the server Sentinel names.
    pub fn need(&self, connected: &[Server]) -> Need {
        let Some(view) = self.view() else {
            return Need::Nothing;
        };
        let (host, port) = &view.master;
        if connected
            .iter()
            .any(|server| &*server.host != host.as_str() || server.port != *port)
        {
            return Need::Deposed;
        }
        match view.replicas {
            0 => Need::Nothing,
            n => Need::Replicas(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(port: u16) -> Server {
        Server::new("10.0.0.1", port)
    }

    #[test]
    fn without_sentinel_nothing_is_required() {
        assert_eq!(Replication::off().need(&[server(1)]), Need::Nothing);
        assert_eq!(Replication::sentinel().need(&[server(1)]), Need::Nothing);
    }

    #[test]
    fn the_named_master_needs_its_replicas_and_any_other_server_is_deposed() {
        let replication = Replication::sentinel();
        replication.set(View {
            master: ("10.0.0.1".into(), 1),
            replicas: 2,
        });
        assert_eq!(replication.need(&[server(1)]), Need::Replicas(2));
        assert_eq!(replication.need(&[server(2)]), Need::Deposed);
        replication.set(View {
            master: ("10.0.0.1".into(), 2),
            replicas: 0,
        });
        assert_eq!(replication.need(&[server(2)]), Need::Nothing);
        assert_eq!(replication.need(&[server(1)]), Need::Deposed);
    }
}
