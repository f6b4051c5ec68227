//! Typed configuration for one replica, from flags or environment variables.
//!
//! Every value is validated by clap while parsing, so a bad value is reported with the
//! variable's name and the process exits with code 2 before anything binds or connects.

use std::{fmt, net::SocketAddr, time::Duration};

use clap::{
    CommandFactory, FromArgMatches, Parser, ValueEnum, builder::BoolishValueParser,
    error::ErrorKind,
};
use http::HeaderValue;

/// Where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionStoreKind {
    /// One Redis shared by every replica: the point of this project.
    Redis,
    /// Each replica keeps its own sessions in memory. This is the failure a shared store
    /// fixes; it stays for the demo and so the checker can prove it catches it.
    Memory,
}

/// How a session record is written in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionCodec {
    /// Readable JSON: `redis-cli GET` shows the view count, the replicas and the expiry.
    Json,
    /// MessagePack, as tower-sessions-redis-store writes it: smaller, not readable.
    Msgpack,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret of at least 64 bytes, the least a signing key is derived from.
    pub fn new(value: &str) -> Result<Secret, String> {
        parse_secret(value)
    }

    /// The secret's bytes, for key derivation.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One replica's settings. Each flag can also be given as the environment variable in
/// capitals (`--redis-url` or `REDIS_URL`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "app",
    version,
    about = "A session-cluster replica: axum sessions in a shared Redis"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8000")]
    pub listen_addr: SocketAddr,

    /// Redis URL, password included (`redis://:secret@host:6379`). `rediss://`,
    /// `redis-cluster://` and `redis-sentinel://` work as fred accepts them.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url)]
    pub redis_url: String,

    /// Name shown to users and in the `X-Served-By` header. Defaults to the hostname.
    #[arg(long, env = "NODE_NAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,

    /// Inactivity before a session expires (1 s to 365 days).
    #[arg(long, env = "SESSION_TTL", default_value = "1h", value_parser = duration_between(SECOND, 365 * DAY, "s"))]
    pub session_ttl: Duration,

    /// `redis` (shared by all replicas) or `memory` (per replica, to show the failure).
    #[arg(long, env = "SESSION_STORE", value_enum, default_value = "redis")]
    pub session_store: SessionStoreKind,

    /// Start of every Redis key (and pub/sub channel) the app uses; one ACL pattern covers
    /// them all. No braces, whitespace or control characters.
    #[arg(long, env = "SESSION_KEY_PREFIX", default_value = crate::keys::DEFAULT_PREFIX, value_parser = crate::keys::Keys::new)]
    pub session_key_prefix: crate::keys::Keys,

    /// `json` (readable in `redis-cli`) or `msgpack`. Either codec reads records written by
    /// the other, so switching loses no session.
    #[arg(long, env = "SESSION_CODEC", value_enum, default_value = "json")]
    pub session_codec: SessionCodec,

    /// Mark the cookie `Secure`. Browsers do not send Secure cookies over plain
    /// http://localhost, so this is off unless you serve over TLS.
    #[arg(long, env = "COOKIE_SECURE", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub cookie_secure: bool,

    /// When set (64 bytes or more), cookies are signed so a forged or tampered id is
    /// rejected without a Redis lookup. Every replica must share it.
    #[arg(long, env = "SESSION_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub session_secret: Option<Secret>,

    /// Serialise each session's writes with a lock in Redis (`on`) or let the last writer
    /// win (`off`, what express-session and tower-sessions do).
    #[arg(long, env = "SESSION_LOCK", default_value = "on", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub session_lock: bool,

    /// How long a session lock is leased for (50 ms to 10 min); renewed while its
    /// writer holds it.
    #[arg(long, env = "SESSION_LOCK_LEASE", default_value = "2s", value_parser = duration_between(50 * MILLI, 10 * MINUTE, "ms"))]
    pub session_lock_lease: Duration,

    /// Most writes served in a row under one lock beyond the first, while writes of the same
    /// session keep arriving on one replica, before the lock goes back to Redis (0: every
    /// write takes it anew). Bounds how long that session's writes on other replicas wait.
    #[arg(long, env = "SESSION_LOCK_HANDOFFS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub session_lock_handoffs: u32,

    /// Group commit (`on`): writes of one session that arrive on this replica while its writer
    /// works under the lock join that round, and one write carries them all; each is
    /// answered after that write. `off`: one write each.
    #[arg(long, env = "SESSION_LOCK_GROUP_COMMIT", default_value = "on", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub session_lock_group_commit: bool,

    /// Optimistic first try (`on`): a lone write of a session that was not contended lately,
    /// and whose lock is free, is written only if the record is still the one it read
    /// (compare-and-set); if it changed or was locked meanwhile, nothing is written and the
    /// change runs again under the lock. `off`: every write takes the lock first.
    #[arg(long, env = "SESSION_LOCK_OPTIMISTIC", default_value = "on", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub session_lock_optimistic: bool,

    /// How long a request waits for its session's lock before answering 503 (0 to 10
    /// min).
    #[arg(long, env = "SESSION_LOCK_WAIT", default_value = "5s", value_parser = duration_between(Duration::ZERO, 10 * MINUTE, "ms"))]
    pub session_lock_wait: Duration,

    /// How long any Redis command may take before the request gets a 503 (10 ms to
    /// 1 min).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "500ms", value_parser = duration_between(10 * MILLI, MINUTE, "ms"))]
    pub redis_timeout: Duration,

    /// Whether a command whose connection was cut is sent again on the next one, and every
    /// session write records its id so that such a retry never applies twice (three more
    /// Redis commands inside each optimistic write's script). Default: on for
    /// `redis-sentinel://` and `redis-cluster://` URLs, whose failovers cut connections; off
    /// for a single Redis, where a write whose answer was lost is resolved instead.
    #[arg(long, env = "REDIS_RETRY_WRITES", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub redis_retry_writes: Option<bool>,

    /// Connections in the Redis client pool (each one pipelines many requests).
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub redis_pool_size: u64,

    /// How long a request may run before it is answered 503 (1 s to 1 h).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = duration_between(SECOND, HOUR, "s"))]
    pub request_timeout: Duration,

    /// Time between SIGTERM (or Ctrl-C) and closing the listener, during which `/readyz`
    /// answers 503 while requests are still served: balancers take the replica out of
    /// rotation before it closes its connections, so scaling down fails no request (0 to 5
    /// min).
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "2s", value_parser = duration_between(Duration::ZERO, 5 * MINUTE, "s"))]
    pub shutdown_delay: Duration,

    /// Time in-flight requests get to finish after SIGTERM or Ctrl-C (0 to 1 h).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = duration_between(Duration::ZERO, HOUR, "s"))]
    pub shutdown_grace: Duration,

    /// `text` or `json` log lines. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Where a browser reaches the balancer's dashboard (its admin port, e.g.
    /// `http://127.0.0.1:8081/`); when set, the page links to it. Unset: no link, since the
    /// admin port is usually not reachable from where people browse.
    #[arg(long, env = "DASHBOARD_URL", value_parser = parse_dashboard_url)]
    pub dashboard_url: Option<String>,
}

impl Config {
    /// Parses flags and environment as [`Parser::parse`] does, but first refuses a variable
    /// this version renamed: a deployment that still sets `SESSION_LOCK_LEASE_MS` would
    /// otherwise run on the default without a word. Either mistake exits with code 2 and a
    /// message naming the variable.
    pub fn parse_or_exit() -> Config {
        if let Err(message) = check_renamed(|name| std::env::var(name).ok()) {
            Config::command()
                .error(ErrorKind::ValueValidation, message)
                .exit();
        }
        Config::parse()
    }

    /// Every default, read from the flag definitions alone (no flag, no environment), so a
    /// default is written once: in its `#[arg]`.
    pub fn defaults() -> Config {
        let matches = Config::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["app"])
            .and_then(|matches| Config::from_arg_matches(&matches));
        matches.expect("the defaults in Config's #[arg]s parse")
    }

    /// The node name, falling back to the machine's hostname.
    pub fn node(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }

    /// A configuration for tests: the defaults, with a named node on `redis_url`, a port
    /// picked by the caller's listener, a longer lock lease (a slow test machine must not
    /// lose a lock mid-test), a small pool and a quick shutdown.
    pub fn for_test(redis_url: &str, node: &str) -> Config {
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            redis_url: redis_url.to_owned(),
            node_name: Some(node.to_owned()),
            session_lock_lease: Duration::from_secs(5),
            redis_pool_size: 2,
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
            ..Config::defaults()
        }
    }
}

/// Variables an older version read, the one that replaced each, and the unit the old one
/// counted in (its value, with that unit, is what the new one takes).
const RENAMED: [(&str, &str, &str); 3] = [
    ("SESSION_LOCK_LEASE_MS", "SESSION_LOCK_LEASE", "ms"),
    ("SESSION_LOCK_WAIT_MS", "SESSION_LOCK_WAIT", "ms"),
    ("REDIS_TIMEOUT_MS", "REDIS_TIMEOUT", "ms"),
];

/// Refuses the first renamed variable that `lookup` finds set, naming its replacement and
/// the value to give it.
fn check_renamed(lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    for (old, new, unit) in RENAMED {
        if let Some(value) = lookup(old) {
            let value = value.trim();
            return Err(format!(
                "{old} was renamed to {new}, which takes a duration with its unit: \
                 unset {old} and set {new}={value}{unit}"
            ));
        }
    }
    Ok(())
}

const MILLI: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A parser of durations with their unit (humantime: `500ms`, `2s`, `1h`, `1h 30m`) from
/// `min` to `max`. A bare number is refused with the fix spelled out, `bare_unit` being the
/// unit the variable counted in before it took units, so `SESSION_TTL=3600` is told to
/// write `3600s`.
fn duration_between(
    min: Duration,
    max: Duration,
    bare_unit: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value: &str| {
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{value}` has no unit: write {value}{bare_unit} (durations take a unit: 500ms, 2s, 1h)"
            ));
        }
        let duration = humantime::parse_duration(value)
            .map_err(|err| format!("`{value}` is not a duration like 500ms, 2s or 1h ({err})"))?;
        if duration < min || duration > max {
            return Err(format!(
                "`{value}` is out of range: from {} to {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(duration)
    }
}

/// URL schemes fred understands. fred itself accepts any scheme as plain Redis, which
/// would hide a typo such as `http://` until the first request.
const REDIS_SCHEMES: [&str; 4] = [
    "redis://",
    "rediss://",
    "redis-cluster://",
    "redis-sentinel://",
];

fn parse_redis_url(value: &str) -> Result<String, String> {
    if !REDIS_SCHEMES.iter().any(|scheme| value.starts_with(scheme)) {
        return Err(format!(
            "must start with one of {}",
            REDIS_SCHEMES.join(", ")
        ));
    }
    fred::types::config::Config::from_url(value)
        .map(|_| value.to_owned())
        .map_err(|err| {
            format!(
                "not a Redis URL fred accepts ({err}); expected e.g. redis://:password@host:6379"
            )
        })
}

fn parse_node_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    HeaderValue::from_str(value)
        .map(|_| value.to_owned())
        .map_err(|_| "must be printable ASCII, as it is sent in the X-Served-By header".into())
}

fn parse_dashboard_url(value: &str) -> Result<String, String> {
    let url = value.trim();
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url[..scheme.len()].eq_ignore_ascii_case(scheme));
    if !scheme_ok {
        return Err("must be an http:// or https:// URL, e.g. http://127.0.0.1:8081/".into());
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '`'))
    {
        return Err("must be one URL, without spaces, quotes or angle brackets".into());
    }
    Ok(url.to_owned())
}

fn parse_secret(value: &str) -> Result<Secret, String> {
    if value.len() < 64 {
        return Err(format!(
            "must be at least 64 bytes to sign cookies (got {}); e.g. `openssl rand -base64 48`",
            value.len()
        ));
    }
    Ok(Secret(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("app").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.listen_addr.to_string(), "0.0.0.0:8000");
        assert_eq!(config.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(config.session_ttl, Duration::from_secs(3600));
        assert_eq!(config.session_store, SessionStoreKind::Redis);
        assert!(!config.cookie_secure);
        assert!(config.session_lock);
        assert!(config.session_secret.is_none());
    }

    #[test]
    fn bad_values_name_the_variable_and_exit_2() {
        for (args, name) in [
            (&["--session-ttl", "soon"][..], "SESSION_TTL"),
            (&["--session-ttl", "0"][..], "SESSION_TTL"),
            (&["--listen-addr", "localhost"][..], "LISTEN_ADDR"),
            (&["--redis-url", "http://x"][..], "REDIS_URL"),
            (
                &["--redis-url", "redis-sentinel://h:26379"][..],
                "REDIS_URL",
            ),
            (&["--session-store", "disk"][..], "SESSION_STORE"),
            (&["--session-key-prefix", ""][..], "SESSION_KEY_PREFIX"),
            (&["--session-key-prefix", "a{b}"][..], "SESSION_KEY_PREFIX"),
            (
                &["--session-key-prefix", "two words"][..],
                "SESSION_KEY_PREFIX",
            ),
            (&["--session-codec", "yaml"][..], "SESSION_CODEC"),
            (&["--session-secret", "short"][..], "SESSION_SECRET"),
            (&["--node-name", "bad\nname"][..], "NODE_NAME"),
            (&["--session-lock", "maybe"][..], "SESSION_LOCK"),
            (
                &["--session-lock-optimistic", "maybe"][..],
                "SESSION_LOCK_OPTIMISTIC",
            ),
            (&["--redis-retry-writes", "maybe"][..], "REDIS_RETRY_WRITES"),
            (&["--dashboard-url", "127.0.0.1:8081"][..], "DASHBOARD_URL"),
            (
                &["--dashboard-url", "http://x/\"><script>"][..],
                "DASHBOARD_URL",
            ),
        ] {
            let err = parse(args).expect_err("must be rejected");
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(name), "{args:?}: {err}");
        }
    }

    #[test]
    fn durations_take_units_and_a_bare_number_is_shown_its_fix() {
        let config = parse(&[
            "--session-ttl",
            "90m",
            "--session-lock-lease",
            "750ms",
            "--request-timeout",
            "1m",
        ])
        .expect("parses");
        assert_eq!(config.session_ttl, Duration::from_secs(5400));
        assert_eq!(config.session_lock_lease, Duration::from_millis(750));
        assert_eq!(config.request_timeout, Duration::from_secs(60));

        for (args, name, fix) in [
            (&["--session-ttl", "3600"][..], "SESSION_TTL", "3600s"),
            (&["--redis-timeout", "500"][..], "REDIS_TIMEOUT", "500ms"),
            (&["--shutdown-grace", "10"][..], "SHUTDOWN_GRACE", "10s"),
        ] {
            let err = parse(args).expect_err("a bare number is refused");
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let message = err.to_string();
            assert!(message.contains(name), "{message}");
            assert!(message.contains(&format!("write {fix}")), "{message}");
        }
    }

    #[test]
    fn todays_ranges_still_hold() {
        for args in [
            &["--session-ttl", "999ms"][..],
            &["--session-ttl", "366days"][..],
            &["--session-lock-lease", "49ms"][..],
            &["--session-lock-wait", "11m"][..],
            &["--redis-timeout", "9ms"][..],
            &["--request-timeout", "2h"][..],
            &["--shutdown-delay", "6m"][..],
        ] {
            let err = parse(args).expect_err("out of range");
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains("out of range"), "{args:?}: {err}");
        }
    }

    #[test]
    fn a_renamed_variable_names_its_successor_and_the_value_to_give_it() {
        let err = check_renamed(|name| (name == "REDIS_TIMEOUT_MS").then(|| "300".to_owned()))
            .expect_err("refused");
        assert!(err.contains("REDIS_TIMEOUT=300ms"), "{err}");
        assert!(check_renamed(|_| None).is_ok());
    }

    #[test]
    fn the_test_configuration_starts_from_the_defaults() {
        let config = Config::for_test("redis://127.0.0.1:1", "t");
        assert_eq!(config.session_ttl, Duration::from_secs(3600));
        assert_eq!(config.redis_timeout, Duration::from_millis(500));
        assert_eq!(config.session_lock_wait, Duration::from_secs(5));
    }

    #[test]
    fn every_redis_flavour_fred_speaks_is_accepted() {
        for url in [
            "redis://:secret@redis:6379/0",
            "rediss://user:secret@redis.example:6380",
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002",
            "redis-sentinel://127.0.0.1:26379?sentinelServiceName=mymaster",
        ] {
            parse(&["--redis-url", url]).unwrap_or_else(|err| panic!("{url}: {err}"));
        }
    }

    #[test]
    fn the_dashboard_link_is_off_unless_its_url_is_given() {
        assert_eq!(parse(&[]).expect("defaults").dashboard_url, None);
        let config = parse(&["--dashboard-url", "http://127.0.0.1:8081/"]).expect("parses");
        assert_eq!(
            config.dashboard_url.as_deref(),
            Some("http://127.0.0.1:8081/")
        );
    }

    #[test]
    fn boolish_switches_accept_on_and_off() {
        let config = parse(&["--session-lock", "off", "--cookie-secure", "on"]).expect("parses");
        assert!(!config.session_lock);
        assert!(config.cookie_secure);
    }

    #[test]
    fn secret_is_not_printed() {
        let config = parse(&["--session-secret", &"k".repeat(64)]).expect("parses");
        assert!(!format!("{config:?}").contains("kkkk"));
    }
}
