//! Follows Sentinel failovers, which fred does not do by itself, and keeps the replication
//! requirements of writes ([`crate::replication`]) up to date.
//!
//! fred asks the sentinels for the master only when it (re)connects. After a failover the old
//! master keeps answering, as a master, until Sentinel reconfigures it (about 8 s later), and
//! every write sent there meanwhile is discarded when it resyncs: split brain. So:
//! - every sentinel's `+switch-master` event is subscribed to: the moment a sentinel announces
//!   the new master, the pool is told to reconnect (which asks the sentinels again);
//! - as a fallback (a lost event, a sentinel that was unreachable), a sentinel is asked twice
//!   a second which server is master and how many replicas it has in sync, and the pool is
//!   reconnected when it is connected anywhere else.
//!
//! Each answer also updates [`Replication`]: the master and its replicas in sync, which every
//! session write checks before it is acknowledged.

use std::time::Duration;

use fred::{
    clients::{Client, Pool, SubscriberClient},
    interfaces::{ClientLike, EventInterface, PubsubInterface},
    types::{
        CustomCommand, Value,
        config::{Config as FredConfig, ConnectionConfig, ReconnectPolicy, ServerConfig},
    },
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::replication::{Replication, View};

/// How often the sentinels are asked.
const INTERVAL: Duration = Duration::from_millis(500);
/// The Sentinel event announcing a new master: `<name> <old ip> <old port> <new ip> <new port>`.
const SWITCH_MASTER: &str = "+switch-master";

/// Starts the watcher when `config` is a Sentinel configuration; `None` otherwise. It runs
/// until `stop` turns true, then closes its sentinel connections.
pub fn follow(
    pool: &Pool,
    config: &FredConfig,
    replication: Replication,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let ServerConfig::Sentinel {
        hosts,
        service_name,
        username,
        password,
    } = &config.server
    else {
        return None;
    };
    let sentinel_config = |host: &fred::types::config::Server| FredConfig {
        server: ServerConfig::new_centralized(host.host.to_string(), host.port),
        username: username.clone(),
        password: password.clone(),
        fail_fast: false,
        ..FredConfig::default()
    };
    let connection = ConnectionConfig {
        connection_timeout: INTERVAL,
        internal_command_timeout: INTERVAL,
        ..ConnectionConfig::default()
    };
    let policy = ReconnectPolicy::new_constant(0, 500);
    let sentinels: Vec<Client> = hosts
        .iter()
        .map(|host| {
            Client::new(
                sentinel_config(host),
                None,
                Some(connection.clone()),
                Some(policy.clone()),
            )
        })
        .collect();
    for sentinel in &sentinels {
        let _tasks = sentinel.connect();
    }
    // Events from every sentinel: the new master's address, for our service only.
    let (switched, mut switches) = mpsc::channel::<(String, u16)>(16);
    let subscribers: Vec<SubscriberClient> = hosts
        .iter()
        .filter_map(|host| {
            let subscriber = fred::types::Builder::from_config(sentinel_config(host))
                .set_connection_config(connection.clone())
                .set_policy(policy.clone())
                .build_subscriber_client()
                .map_err(|err| tracing::warn!(%err, "sentinel event subscriber not built"))
                .ok()?;
            let service = service_name.clone();
            let switched = switched.clone();
            let _messages = subscriber.on_message(move |message| {
                if let Some(master) = message
                    .value
                    .as_string()
                    .and_then(|m| new_master(&m, &service))
                {
                    let _ = switched.try_send(master);
                }
                async { Ok(()) }
            });
            let client = subscriber.clone();
            tokio::spawn(async move {
                // `init` waits for the first connection; the policy keeps retrying after it.
                let _ = client.init().await;
                let _resubscribe = client.manage_subscriptions();
                if let Err(err) = client.subscribe(SWITCH_MASTER).await {
                    tracing::warn!(%err, "sentinel event subscription failed; polling only");
                }
            });
            Some(subscriber)
        })
        .collect();
    let pool = pool.clone();
    let service = service_name.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            let announced = tokio::select! {
                _ = tick.tick() => None,
                Some(master) = switches.recv() => Some(master),
                _ = stop.wait_for(|stop| *stop) => break,
            };
            if let Some((host, port)) = &announced {
                tracing::warn!(master = %format!("{host}:{port}"), "sentinel announced a new master");
            }
            let Some(mut census) = ask(&sentinels, &service).await else {
                continue;
            };
            if let Some(master) = announced
                && master != census.master
            {
                // The sentinel asked has not heard of the switch yet: trust the event, and
                // count no replica until a sentinel tells (the promoted master has none yet).
                census = Census {
                    master,
                    replicas: Replicas::default(),
                };
            }
            let replicas = required(replication.view().as_ref(), &census);
            let view = View {
                master: census.master,
                replicas,
            };
            follow_master(&pool, &replication, view).await;
        }
        for sentinel in &sentinels {
            let _ = tokio::time::timeout(INTERVAL, sentinel.quit()).await;
        }
        for subscriber in &subscribers {
            let _ = tokio::time::timeout(INTERVAL, subscriber.quit()).await;
        }
    }))
}

/// Records `view` and reconnects the pool when it is connected to another server.
async fn follow_master(pool: &Pool, replication: &Replication, view: View) {
    let (host, port) = view.master.clone();
    let connected = pool.active_connections();
    let elsewhere = connected
        .iter()
        .any(|s| &*s.host != host.as_str() || s.port != port);
    if replication.view().as_ref() != Some(&view) {
        tracing::info!(master = %format!("{host}:{port}"), replicas = view.replicas, "sentinel: writes need this master and its replicas in sync");
    }
    // Set before reconnecting: a write still on the old connection is then refused as
    // deposed, and the first write on the new one knows what to wait for.
    replication.set(view);
    if elsewhere {
        tracing::warn!(master = %format!("{host}:{port}"), "sentinel names another master; reconnecting");
        if let Err(err) = pool.force_reconnection().await {
            tracing::warn!(%err, "reconnecting to the new master failed; retrying");
        }
    }
}

/// The new master's address in a `+switch-master` message, when it is about `service`.
fn new_master(message: &str, service: &str) -> Option<(String, u16)> {
    let mut words = message.split_whitespace();
    if words.next()? != service {
        return None;
    }
    let (_, _, host, port) = (words.next()?, words.next()?, words.next()?, words.next()?);
    Some((host.to_owned(), port.parse().ok()?))
}

/// What one sentinel said: the master and the census of its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Census {
    /// The master's address.
    master: (String, u16),
    /// Its replicas as Sentinel lists them.
    replicas: Replicas,
}

/// Sentinel's list of a master's replicas, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Replicas {
    /// Up, and linked to this master (`master-link-status:ok`).
    linked: u32,
    /// Listed at all.
    listed: u32,
    /// Flagged down by Sentinel (`s_down`, `o_down`).
    down: u32,
}

/// The replicas a write to `census.master` must find in sync, given the previous `view`.
///
/// For a new master, those Sentinel sees linked to it. For the same master, the count does not
/// drop merely because a replica stops looking linked: that is what a failover looks like
/// from the moment the promoted replica leaves the old master until Sentinel names the new one
/// (the promoted replica now reports itself a master), and the old master must go on refusing
/// writes without it. Only a replica that Sentinel flags down lowers the count.
fn required(previous: Option<&View>, census: &Census) -> u32 {
    let Replicas {
        linked,
        listed,
        down,
    } = census.replicas;
    match previous {
        Some(view) if view.master == census.master => {
            linked.max(view.replicas.min(listed.saturating_sub(down)))
        }
        _ => linked,
    }
}

/// The master and its replicas, according to the first sentinel that answers.
async fn ask(sentinels: &[Client], service: &str) -> Option<Census> {
    for sentinel in sentinels {
        let command = |args: Vec<String>| {
            tokio::time::timeout(
                INTERVAL,
                sentinel
                    .custom::<Value, _>(CustomCommand::new_static("SENTINEL", None, false), args),
            )
        };
        let Ok(Ok(addr)) = command(vec!["GET-MASTER-ADDR-BY-NAME".into(), service.into()]).await
        else {
            continue;
        };
        let Ok(addr) = addr.convert::<Vec<String>>() else {
            continue;
        };
        let [host, port] = addr.as_slice() else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let Ok(Ok(replicas)) = command(vec!["REPLICAS".into(), service.into()]).await else {
            continue;
        };
        return Some(Census {
            master: (host.clone(), port),
            replicas: count(replicas, host, port),
        });
    }
    None
}

/// Counts `SENTINEL REPLICAS`'s entries: listed, down, and up and linked to `host:port`.
fn count(replicas: Value, host: &str, port: u16) -> Replicas {
    let mut counted = Replicas::default();
    for replica in replicas.into_array() {
        counted.listed = counted.listed.saturating_add(1);
        let (down, linked) = {
            let fields: Vec<String> = replica
                .into_array()
                .into_iter()
                .filter_map(|v| v.as_string())
                .collect();
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(|pair| pair[0] == name)
                    .and_then(|pair| pair.get(1))
                    .map(String::as_str)
            };
            let flags = field("flags").unwrap_or("");
            // Only Sentinel's verdict counts as down: `disconnected` is its own link, which
            // it loses during a failover too (the promoted replica kills its clients).
            let down = ["s_down", "o_down"].iter().any(|bad| flags.contains(bad));
            let linked = !down
                && !flags.contains("disconnected")
                && field("master-link-status") == Some("ok")
                && field("master-host") == Some(host)
                && field("master-port") == Some(&port.to_string());
            (down, linked)
        };
        counted.down = counted.down.saturating_add(u32::from(down));
        counted.linked = counted.linked.saturating_add(u32::from(linked));
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_of_our_service_names_the_new_master() {
        assert_eq!(
            new_master("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            Some(("127.0.0.1".to_owned(), 6380))
        );
        assert_eq!(new_master("other 1.1.1.1 1 2.2.2.2 2", "mymaster"), None);
        assert_eq!(new_master("mymaster 1.1.1.1 1 2.2.2.2", "mymaster"), None);
        assert_eq!(new_master("mymaster 1.1.1.1 1 2.2.2.2 x", "mymaster"), None);
    }

    fn replica(pairs: &[(&str, &str)]) -> Value {
        Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [Value::from(*k), Value::from(*v)])
                .collect(),
        )
    }

    #[test]
    fn only_replicas_up_and_linked_to_the_master_count() {
        let linked = [
            ("flags", "slave"),
            ("master-link-status", "ok"),
            ("master-host", "10.0.0.1"),
            ("master-port", "6379"),
        ];
        let replicas = Value::Array(vec![
            replica(&linked),
            replica(&[
                ("flags", "s_down,slave"),
                ("master-link-status", "ok"),
                ("master-host", "10.0.0.1"),
                ("master-port", "6379"),
            ]),
            replica(&[
                ("flags", "slave"),
                ("master-link-status", "err"),
                ("master-host", "10.0.0.1"),
                ("master-port", "6379"),
            ]),
            replica(&[
                ("flags", "slave"),
                ("master-link-status", "ok"),
                ("master-host", "10.0.0.2"),
                ("master-port", "6379"),
            ]),
        ]);
        let counted = count(replicas, "10.0.0.1", 6379);
        assert_eq!(
            counted,
            Replicas {
                linked: 1,
                listed: 4,
                down: 1
            }
        );
        assert_eq!(
            count(Value::Array(vec![]), "10.0.0.1", 6379),
            Replicas::default()
        );
    }

    fn census(port: u16, linked: u32, listed: u32, down: u32) -> Census {
        Census {
            master: ("10.0.0.1".to_owned(), port),
            replicas: Replicas {
                linked,
                listed,
                down,
            },
        }
    }

    #[test]
    fn a_replica_that_leaves_the_same_master_keeps_counting_until_flagged_down() {
        let before = View {
            master: ("10.0.0.1".to_owned(), 1),
            replicas: 2,
        };
        // The promoted replica no longer looks linked: the old master still needs 2.
        assert_eq!(required(Some(&before), &census(1, 1, 2, 0)), 2);
        // A replica flagged down no longer counts.
        assert_eq!(required(Some(&before), &census(1, 1, 2, 1)), 1);
        // A new replica counts once linked.
        assert_eq!(required(Some(&before), &census(1, 3, 3, 0)), 3);
        // A new master needs the replicas linked to it, none at first.
        assert_eq!(required(Some(&before), &census(2, 0, 2, 0)), 0);
        assert_eq!(required(None, &census(1, 2, 2, 0)), 2);
    }
}
