//! Typed configuration, read from flags or environment variables (clap derive + env).
//!
//! Every value is validated here, so a bad one stops the process at start with a message that
//! names the variable and exit code 2, instead of surfacing later as a confusing runtime error.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

pub use crate::internal_paths::InternalPaths;
pub use crate::tls::config::TlsConfig;
pub use crate::upgrade::UpgradeProtocols;

/// One entry of `UPSTREAMS`: a host name (or IP literal) and a port.
///
/// A host name stays a name: discovery re-resolves it every `RESOLVE_INTERVAL` and every address
/// it returns becomes a backend, which is how `app:8000` finds all replicas after `--scale`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port of every address the host resolves to.
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{s}` has an empty host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}` has an invalid port `{port}`"))?;
        if port == 0 {
            return Err(format!("`{s}` has port 0"));
        }
        Ok(Upstream {
            host: host.to_owned(),
            port,
        })
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{s}` has no unit: write {s}s (durations take a unit: 500ms, 2s, 1m)"
        ));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 2s or 1m ({e})"))
}

pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not a CIDR like 10.0.0.0/8 or an IP address"))
}

fn parse_via_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` must be letters, digits, '-', '.' or '_'"))
    }
}

/// Balancer configuration. Each flag can also be given by the environment variable in its name.
#[derive(Debug, Clone, Parser)]
#[command(name = "balancer", version, about)]
pub struct Config {
    /// Where clients connect.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// Admin endpoints (/metrics, /status, /healthz); kept off the client port so they are not exposed with it.
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    pub admin_addr: SocketAddr,

    /// Comma-separated host:port list; a host name resolves to all its addresses, each one a backend.
    #[arg(long, env = "UPSTREAMS", value_delimiter = ',', required = true, num_args = 1..)]
    pub upstreams: Vec<Upstream>,

    /// How often host names are re-resolved (the DNS TTL is ignored: Docker answers with 600 s).
    #[arg(long, env = "RESOLVE_INTERVAL", default_value = "2s", value_parser = positive_duration)]
    pub resolve_interval: Duration,

    /// How often every backend gets `GET /readyz`.
    #[arg(long, env = "HEALTH_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub health_interval: Duration,

    /// How long one health check may take before it counts as failed.
    #[arg(long, env = "HEALTH_TIMEOUT", default_value = "1s", value_parser = positive_duration)]
    pub health_timeout: Duration,

    /// Path probed by the active health check.
    #[arg(long, env = "HEALTH_PATH", default_value = "/readyz")]
    pub health_path: String,

    /// TCP connect timeout to a backend; a timeout counts as a connect failure (retried, ejects).
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "1s", value_parser = positive_duration)]
    pub connect_timeout: Duration,

    /// Time a backend has to send response headers before the client gets 504.
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub upstream_timeout: Duration,

    /// Time a client has to send complete request headers, counted from accept (and, on a
    /// kept-alive connection, from the end of the previous response): closes silent sockets,
    /// idle keep-alive connections and slowloris clients.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,

    /// Longest pause between two chunks of a body, either way: a client upload that stalls
    /// gets 408, a backend response that stalls mid-body is cut off (and counts against it).
    #[arg(long, env = "BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub body_idle_timeout: Duration,

    /// Longest a write to a client may stay blocked (the client stopped reading), as nginx's
    /// `send_timeout`; then the connection is closed and the backend slot freed.
    #[arg(long, env = "SEND_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub send_timeout: Duration,

    /// An upgraded connection (WebSocket) with no byte either way for this long is closed.
    #[arg(long, env = "TUNNEL_IDLE_TIMEOUT", default_value = "300s", value_parser = positive_duration)]
    pub tunnel_idle_timeout: Duration,

    /// Comma-separated CIDRs of proxies in front of this one whose `X-Forwarded-*` and
    /// `Forwarded` headers are believed and appended to. Empty (the default): those headers
    /// from clients are replaced, so a client cannot forge its address.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// This proxy's name in `Via` (`1.1 <name>`); a request that already passed through a
    /// proxy of this name is a loop and gets 508.
    #[arg(long, env = "VIA_NAME", default_value = "session-cluster-balancer", value_parser = parse_via_name)]
    pub via_name: String,

    /// Add `X-Upstream: <backend address>` to responses (debugging; it tells clients the
    /// internal addresses).
    #[arg(long, env = "EXPOSE_UPSTREAM", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub expose_upstream: bool,

    /// Paths the public port answers 404 without asking a replica (comma-separated, or
    /// `none`): the replicas' internals. The balancer checks replicas directly, and metrics
    /// are scraped from each replica and from `ADMIN_ADDR`.
    #[arg(long, env = "INTERNAL_PATHS", default_value = "/metrics,/readyz,/healthz", value_parser = clap::value_parser!(InternalPaths))]
    pub internal_paths: InternalPaths,

    /// Protocols a client may upgrade to through the balancer (comma-separated names, or
    /// `none`): an upgrade is a raw tunnel to a backend, past every per-request check.
    #[arg(long, env = "UPGRADE_PROTOCOLS", default_value = "websocket", value_parser = clap::value_parser!(UpgradeProtocols))]
    pub upgrade_protocols: UpgradeProtocols,

    /// Consecutive passing health checks that put a backend in rotation.
    #[arg(long, env = "HEALTH_RISE", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_rise: u32,

    /// Consecutive failing health checks that take a backend out of rotation.
    #[arg(long, env = "HEALTH_FALL", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_fall: u32,

    /// Maximum open client connections; further clients wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Maximum size of a request head in bytes (at least 8192); larger gets 431. Also the
    /// largest response head relayed (in up to 1,024 header lines); a larger one is a 502.
    #[arg(long, env = "MAX_HEADER_SIZE", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(8192..))]
    pub max_header_size: u32,

    /// Most header lines a backend accepts in a request (hyper's default, which the app
    /// uses, is 100). A request that would have more once this hop's headers are added
    /// (`X-Forwarded-*`, `Forwarded`, `Via`, `X-Request-Id`) gets 431 here.
    #[arg(long, env = "UPSTREAM_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=10_000))]
    pub upstream_max_headers: u32,

    /// Attempts per request across backends (connect failures only once anything may have been sent).
    #[arg(long, env = "RETRY_TRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub retry_tries: u32,

    /// Total time budget for all attempts of one request (connects plus waiting for headers).
    #[arg(long, env = "RETRY_DEADLINE", default_value = "5s", value_parser = positive_duration)]
    pub retry_deadline: Duration,

    /// How long a backend stays out after a connect error, refusal or reset (nginx `fail_timeout`).
    #[arg(long, env = "EJECT_COOLDOWN", default_value = "10s", value_parser = positive_duration)]
    pub eject_cooldown: Duration,

    /// Idle upstream connections are closed after this; must stay below the backends' keep-alive.
    #[arg(long, env = "POOL_IDLE_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub pool_idle_timeout: Duration,

    /// Concurrent requests (= upstream connections) per backend; more wait, within UPSTREAM_TIMEOUT.
    /// Bounds memory and backend load under a connection flood (nginx `max_conns`).
    #[arg(long, env = "MAX_CONNS_PER_BACKEND", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns_per_backend: u32,

    /// Idle upstream connections kept per backend.
    #[arg(long, env = "POOL_MAX_IDLE", default_value_t = 32)]
    pub pool_max_idle: usize,

    /// Proxy worker threads, each a single-threaded event loop (0: one per CPU core).
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: u32,

    /// Return the free memory of a burst of connections to the OS once the burst has settled
    /// (glibc's `malloc_trim`; a no-op without glibc).
    #[arg(long, env = "MEMORY_TRIM", default_value = "true", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub memory_trim: bool,

    /// How long shutdown waits for in-flight requests before exiting anyway.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub drain_timeout: Duration,

    /// `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// The TLS port (`TLS_LISTEN_ADDR`, `TLS_CERT`, ...), off unless `TLS_LISTEN_ADDR` is set.
    #[command(flatten)]
    pub tls: TlsConfig,
}

impl Config {
    /// A configuration with every default and the given upstreams, independent of the
    /// environment; tests start from it and change fields. The listen addresses are set to
    /// `127.0.0.1:0` and unused by [`crate::run`], which takes already-bound listeners.
    pub fn with_upstreams(upstreams: Vec<Upstream>) -> Config {
        // Every default comes from the flag definitions (environment ignored), so each is
        // written once, in its `#[arg]`; `UPSTREAMS` is required, hence the placeholder.
        let defaults = Config::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["balancer", "--upstreams", "127.0.0.1:1"])
            .and_then(|matches| Config::from_arg_matches(&matches))
            .expect("the defaults in Config's #[arg]s parse");
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstreams,
            ..defaults
        }
    }

    /// Checks that span several values, which clap cannot express per flag.
    /// The error names the variable so the operator knows what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.upstreams.is_empty() {
            return Err("UPSTREAMS: at least one host:port is required".to_owned());
        }
        if !self.health_path.starts_with('/') {
            return Err(format!(
                "HEALTH_PATH: `{}` must start with /",
                self.health_path
            ));
        }
        if self.health_path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(format!(
                "HEALTH_PATH: `{}` is not a valid path",
                self.health_path
            ));
        }
        self.tls.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_lists_with_names_ipv4_and_ipv6() {
        let cfg = Config::try_parse_from([
            "balancer",
            "--upstreams",
            "app:8000, 10.0.0.2:9000,[::1]:7000",
        ])
        .expect("valid");
        assert_eq!(
            cfg.upstreams,
            vec![
                Upstream {
                    host: "app".into(),
                    port: 8000
                },
                Upstream {
                    host: "10.0.0.2".into(),
                    port: 9000
                },
                Upstream {
                    host: "::1".into(),
                    port: 7000
                },
            ]
        );
        assert_eq!(cfg.upstreams[2].to_string(), "[::1]:7000");
    }

    #[test]
    fn rejects_bad_values_naming_the_variable() {
        let err = Config::try_parse_from(["balancer", "--upstreams", "app"]).expect_err("no port");
        assert!(err.to_string().contains("UPSTREAMS"), "{err}");
        let err = Config::try_parse_from([
            "balancer",
            "--upstreams",
            "app:1",
            "--resolve-interval",
            "soon",
        ])
        .expect_err("bad duration");
        assert!(err.to_string().contains("RESOLVE_INTERVAL"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_upgrade_allow_list_and_header_count_are_checked_naming_the_variable() {
        let err = Config::try_parse_from([
            "balancer",
            "--upstreams",
            "app:1",
            "--upgrade-protocols",
            "websocket/13",
        ])
        .expect_err("a version is not a name");
        assert!(err.to_string().contains("UPGRADE_PROTOCOLS"), "{err}");
        assert_eq!(err.exit_code(), 2);
        let err = Config::try_parse_from([
            "balancer",
            "--upstreams",
            "app:1",
            "--upstream-max-headers",
            "3",
        ])
        .expect_err("too few");
        assert!(err.to_string().contains("UPSTREAM_MAX_HEADERS"), "{err}");
        assert_eq!(err.exit_code(), 2);
        let cfg = Config::try_parse_from([
            "balancer",
            "--upstreams",
            "app:1",
            "--upgrade-protocols",
            "websocket,mqtt",
        ])
        .expect("valid");
        assert_eq!(
            cfg.upgrade_protocols,
            "websocket, MQTT".parse().expect("same list")
        );
    }

    #[test]
    fn durations_accept_human_units() {
        let cfg = Config::try_parse_from([
            "balancer",
            "--upstreams",
            "a:1",
            "--resolve-interval",
            "250ms",
            "--eject-cooldown",
            "1m",
        ])
        .expect("valid");
        assert_eq!(cfg.resolve_interval, Duration::from_millis(250));
        assert_eq!(cfg.eject_cooldown, Duration::from_secs(60));
    }

    #[test]
    fn a_duration_without_its_unit_is_shown_the_fix() {
        let err =
            Config::try_parse_from(["balancer", "--upstreams", "a:1", "--drain-timeout", "10"])
                .expect_err("a bare number is refused");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("DRAIN_TIMEOUT"), "{err}");
        assert!(err.to_string().contains("write 10s"), "{err}");
    }

    #[test]
    fn the_test_configuration_carries_the_flag_defaults() {
        let cfg = Config::with_upstreams(vec!["a:1".parse().expect("upstream")]);
        assert_eq!(cfg.resolve_interval, Duration::from_secs(2));
        assert_eq!(cfg.tunnel_idle_timeout, Duration::from_secs(300));
        assert_eq!(cfg.max_header_size, 65_536);
        assert_eq!(cfg.listen_addr.to_string(), "127.0.0.1:0");
        assert_eq!(cfg.upstreams.len(), 1);
    }
}
