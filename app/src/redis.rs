//! The Redis client pool: bounded command times, endless reconnects, and readiness.
//!
//! fred with no `ReconnectPolicy` never reconnects, and with no command timeout a command
//! sent while Redis is down waits for ever. Both would turn an outage into hung requests, so
//! the pool retries the connection for ever with backoff and every command carries a
//! deadline (`REDIS_TIMEOUT`), which the handlers turn into a 503.

use std::time::Duration;

use fred::{
    clients::Pool,
    interfaces::ClientLike,
    types::config::{
        Config as FredConfig, ConnectionConfig, PerformanceConfig, ReconnectPolicy, ServerConfig,
        UnresponsiveConfig,
    },
};

use tokio::{sync::watch, task::JoinHandle};

use crate::{config::Config, replication::Replication};

/// How many times a command is sent before its error reaches the caller. A Cluster failover
/// closes connections several times within a few milliseconds (3 attempts ran out there); the
/// command timeout (`REDIS_TIMEOUT`) still bounds the whole.
const COMMAND_ATTEMPTS: u32 = 10;

/// How many `MOVED`/`ASK` redirections a command follows (Redis Cluster).
const MAX_REDIRECTIONS: u32 = 50;

/// Errors while building the pool. Connection failures are not among them: the pool
/// connects in the background and keeps trying.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// `REDIS_URL` could not be used.
    #[error("REDIS_URL: {0}")]
    Url(fred::error::Error),
    /// fred refused the pool settings.
    #[error("Redis pool: {0}")]
    Pool(fred::error::Error),
}

/// The pool and the tasks that serve it, closed together on shutdown.
#[derive(Debug)]
pub struct Redis {
    /// The connection pool every request uses.
    pub pool: Pool,
    /// The lock wake-up subscriber, when session locking is on.
    subscriber: Option<fred::clients::SubscriberClient>,
    /// Tells the Sentinel watcher to stop.
    stop: watch::Sender<bool>,
    /// The Sentinel watcher, when `REDIS_URL` is a `redis-sentinel://` URL.
    watcher: Option<JoinHandle<()>>,
    /// What a write needs before it is acknowledged (kept up to date by the watcher).
    pub replication: Replication,
    /// Whether commands cut off with their connection are retried (`REDIS_RETRY_WRITES`):
    /// then every write records its id so that a retry recognises it ran.
    pub retry_writes: bool,
}

impl Redis {
    /// Stops the background tasks and closes the connections.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        if let Some(watcher) = self.watcher {
            let _ = tokio::time::timeout(Duration::from_secs(1), watcher).await;
        }
        if let Some(subscriber) = self.subscriber {
            let _ = tokio::time::timeout(Duration::from_secs(1), subscriber.quit()).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.pool.quit()).await;
    }

    /// Starts the subscriber that wakes this replica's lock waiters when a lock is freed.
    pub fn wake_lock_waiters(
        &mut self,
        config: &Config,
        wakeups: &std::sync::Arc<crate::lock_wakeups::Wakeups>,
    ) -> Result<(), RedisSetupError> {
        let fred_config = FredConfig::from_url(&config.redis_url).map_err(RedisSetupError::Url)?;
        let subscriber = wakeups
            .subscribe(&fred_config, config.session_key_prefix.channel())
            .map_err(RedisSetupError::Pool)?;
        self.subscriber = Some(subscriber);
        Ok(())
    }
}

/// Builds the pool and starts connecting in the background. Returns at once, even when
/// Redis is down: the app must start and answer `/readyz` 503 until Redis is back.
pub fn connect(config: &Config) -> Result<Redis, RedisSetupError> {
    let mut fred_config = FredConfig::from_url(&config.redis_url).map_err(RedisSetupError::Url)?;
    // Apply the reconnect policy to the first connection too: a replica that starts
    // before Redis (or before Redis's DNS name exists) must keep trying, not give up.
    fred_config.fail_fast = false;
    let retry_writes = config.redis_retry_writes.unwrap_or(!matches!(
        fred_config.server,
        ServerConfig::Centralized { .. }
    ));
    let timeout = config.redis_timeout;
    let perf = PerformanceConfig {
        default_command_timeout: timeout,
        ..PerformanceConfig::default()
    };
    let connection = ConnectionConfig {
        connection_timeout: timeout.max(Duration::from_millis(500)),
        internal_command_timeout: timeout.max(Duration::from_millis(500)),
        // A command cut off with its connection is sent again on the next one (a failover,
        // a restart): every write the app sends recognises a retry of itself (the save id
        // on the session's list of recent saves, the lock token), so it never applies twice.
        max_command_attempts: if retry_writes { COMMAND_ATTEMPTS } else { 1 },
        // During a Cluster failover a slot's MOVED answers bounce between the old and the
        // new master for tens of milliseconds; fred's default of 5 redirections ran out there
        // (a 503). The command timeout still bounds the whole.
        max_redirections: MAX_REDIRECTIONS,
        // Detect a Redis that stopped answering without closing the socket.
        unresponsive: UnresponsiveConfig {
            max_timeout: Some(Duration::from_secs(2)),
            interval: Duration::from_millis(500),
        },
        ..ConnectionConfig::default()
    };
    // Retry for ever (0 attempts = unlimited), 50 ms doubling to 1 s between tries.
    let policy = ReconnectPolicy::new_exponential(0, 50, 1_000, 2);
    let size = usize::try_from(config.redis_pool_size).unwrap_or(4);
    let sentinel_config = fred_config.clone();
    let pool = Pool::new(
        fred_config,
        Some(perf),
        Some(connection),
        Some(policy),
        size,
    )
    .map_err(RedisSetupError::Pool)?;
    // Connection tasks run until `quit`; failures are retried by the policy above.
    let _tasks = pool.connect();
    // fred asks the sentinels for the master only when it reconnects; follow failovers.
    let (stop, stopped) = watch::channel(false);
    let replication = if matches!(sentinel_config.server, ServerConfig::Sentinel { .. }) {
        Replication::sentinel()
    } else {
        Replication::off()
    };
    let watcher = crate::sentinel::follow(&pool, &sentinel_config, replication.clone(), stopped);
    Ok(Redis {
        pool,
        subscriber: None,
        stop,
        watcher,
        replication,
        retry_writes,
    })
}

/// True when every connection of the pool answers PING within `deadline`. One connection is
/// not enough: the pool spreads requests over all of them, and one that has not connected yet
/// (in a cluster: one without the slot map) would fail its share of them.
pub async fn is_ready(pool: &Pool, deadline: Duration) -> bool {
    let all = async {
        for client in pool.clients() {
            if client.ping::<String>(None).await.is_err() {
                return false;
            }
        }
        true
    };
    matches!(tokio::time::timeout(deadline, all).await, Ok(true))
}
