//! Follows Sentinel failovers, which fred does not do by itself.
//!
//! fred asks the sentinels for the master only when it (re)connects. After a failover the old
//! master keeps answering, as a master, until Sentinel reconfigures it (about 8 s later), and
//! every write sent there meanwhile is discarded when it resyncs: split brain. So, twice a
//! second, ask a sentinel which server is master, and when the pool is connected anywhere else,
//! force it to reconnect (which asks the sentinels again).

use std::time::Duration;

use fred::{
    clients::{Client, Pool},
    interfaces::ClientLike,
    types::{
        CustomCommand,
        config::{Config as FredConfig, ConnectionConfig, ReconnectPolicy, ServerConfig},
    },
};
use tokio::{sync::watch, task::JoinHandle};

/// How often the sentinels are asked.
const INTERVAL: Duration = Duration::from_millis(500);

/// Starts the watcher when `config` is a Sentinel configuration; `None` otherwise. It runs
/// until `stop` turns true, then closes its sentinel connections.
pub fn follow(
    pool: &Pool,
    config: &FredConfig,
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
    let sentinels: Vec<Client> = hosts
        .iter()
        .map(|host| {
            let sentinel = FredConfig {
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
            Client::new(
                sentinel,
                None,
                Some(connection),
                Some(ReconnectPolicy::new_constant(0, 500)),
            )
        })
        .collect();
    for sentinel in &sentinels {
        let _tasks = sentinel.connect();
    }
    let pool = pool.clone();
    let service = service_name.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let Some((host, port)) = master(&sentinels, &service).await else {
                continue;
            };
            let connected = pool.active_connections();
            let elsewhere = connected
                .iter()
                .any(|s| &*s.host != host.as_str() || s.port != port);
            if elsewhere {
                tracing::warn!(master = %format!("{host}:{port}"), "sentinel names another master; reconnecting");
                if let Err(err) = pool.force_reconnection().await {
                    tracing::warn!(%err, "reconnecting to the new master failed; retrying");
                }
            }
        }
        for sentinel in &sentinels {
            let _ = tokio::time::timeout(INTERVAL, sentinel.quit()).await;
        }
    }))
}

/// The master's address according to the first sentinel that answers.
async fn master(sentinels: &[Client], service: &str) -> Option<(String, u16)> {
    for sentinel in sentinels {
        let answer = tokio::time::timeout(
            INTERVAL,
            sentinel.custom::<Vec<String>, _>(
                CustomCommand::new_static("SENTINEL", None, false),
                vec!["GET-MASTER-ADDR-BY-NAME", service],
            ),
        )
        .await;
        if let Ok(Ok(addr)) = answer
            && let [host, port] = addr.as_slice()
            && let Ok(port) = port.parse()
        {
            return Some((host.clone(), port));
        }
    }
    None
}
