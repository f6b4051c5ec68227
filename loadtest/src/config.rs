//! Command-line and environment configuration (clap derive, every flag also read from a
//! `LOADTEST_*` variable), and its resolution into one of the three modes.

use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use http::Method;

use crate::endpoint::Endpoint;
use crate::targets::Targets;

/// Checks that every session's counter counts 1, 2, 3 … while requests hop between replicas,
/// races parallel increments on one session, or measures throughput.
///
/// Modes: sequential (the default), `--parallel K`, `--throughput`.
/// Exit codes: 0 pass, 1 anomalies or a failed threshold, 2 could not run.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version)]
pub struct Config {
    /// Base URL of the cluster; several comma-separated URLs are used round robin per request.
    #[arg(
        long,
        env = "LOADTEST_TARGET",
        default_value = "http://127.0.0.1:8080",
        value_parser = Targets::parse,
        value_name = "URL[,URL…]"
    )]
    pub target: Targets,

    /// Sequential mode: virtual users, each with its own client and cookie jar.
    #[arg(long, env = "LOADTEST_USERS", value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with_all = ["parallel", "throughput"])]
    pub users: Option<u64>,

    /// Requests per user (sequential, default 20) or in total (throughput; default: use --duration).
    #[arg(long, env = "LOADTEST_REQUESTS", value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with = "parallel")]
    pub requests: Option<u64>,

    /// Parallel mode: K workers incrementing ONE session at once.
    #[arg(long, env = "LOADTEST_PARALLEL", value_name = "K",
          value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "throughput")]
    pub parallel: Option<u64>,

    /// Parallel mode: increments per worker (default 100; unlimited when --duration is given).
    #[arg(long, env = "LOADTEST_PER_WORKER", value_name = "M",
          value_parser = clap::value_parser!(u64).range(1..), requires = "parallel")]
    pub per_worker: Option<u64>,

    /// Throughput mode: closed loop, or open loop with --rate.
    #[arg(long, env = "LOADTEST_THROUGHPUT", value_parser = BoolishValueParser::new())]
    pub throughput: bool,

    /// How long to run (throughput default 10s; parallel: stop workers then). E.g. 10s, 500ms, 2m.
    #[arg(long, env = "LOADTEST_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Throughput mode: concurrent connections, each a user with its own cookie (default 50).
    #[arg(long, env = "LOADTEST_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..),
          requires = "throughput")]
    pub connections: Option<u64>,

    /// Throughput mode: open loop at this many requests/s in total, latency measured from the
    /// intended send time (no coordinated omission).
    #[arg(long, env = "LOADTEST_RATE", value_parser = parse_rate, requires = "throughput")]
    pub rate: Option<f64>,

    /// Throughput mode: request path (the checker modes use the counter endpoints).
    #[arg(long, env = "LOADTEST_PATH", default_value = "/session", value_parser = parse_path)]
    pub path: String,

    /// Throughput mode: request method.
    #[arg(long, env = "LOADTEST_METHOD", default_value = "GET", value_parser = parse_method)]
    pub method: Method,

    /// Throughput mode: send no cookies back (every request starts a new session).
    #[arg(long, env = "LOADTEST_NO_COOKIES", value_parser = BoolishValueParser::new(), requires = "throughput")]
    pub no_cookies: bool,

    /// Counter endpoint for sequential and parallel modes: `json` = POST /api/session/views,
    /// `text` = GET /session (`Session View Cnt  N`, as the original app).
    #[arg(long, env = "LOADTEST_ENDPOINT", value_enum, default_value_t = Endpoint::Json)]
    pub endpoint: Endpoint,

    /// Per-request timeout; a timed-out request is an unknown outcome.
    #[arg(long, env = "LOADTEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Threshold: fail (exit 1) below this many requests/s.
    #[arg(long, env = "LOADTEST_MIN_RPS", value_parser = parse_rate)]
    pub min_rps: Option<f64>,

    /// Threshold: fail (exit 1) when p99 latency is above this, e.g. 50ms.
    #[arg(long, env = "LOADTEST_MAX_P99", value_parser = parse_duration)]
    pub max_p99: Option<Duration>,

    /// Runtime worker threads (default: one per core).
    #[arg(long, env = "LOADTEST_THREADS", value_parser = clap::value_parser!(u64).range(1..1025))]
    pub threads: Option<u64>,

    /// Print the report as JSON on stdout instead of the table.
    #[arg(long, env = "LOADTEST_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,

    /// Never draw the progress bar (it is drawn only on a terminal anyway).
    #[arg(long, env = "LOADTEST_NO_PROGRESS", value_parser = BoolishValueParser::new())]
    pub no_progress: bool,
}

/// When a count-or-time bounded run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Stop after this many requests in total.
    pub requests: Option<u64>,
    /// Stop at this time after the start.
    pub duration: Option<Duration>,
}

/// The resolved mode with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Many users, each counting 1..=requests on its own session.
    Sequential {
        /// Virtual users.
        users: u64,
        /// Requests per user.
        requests: u64,
    },
    /// K workers racing increments on one session.
    Parallel {
        /// Concurrent workers (K).
        workers: u64,
        /// Increments per worker (M); `None` = until the duration ends.
        per_worker: Option<u64>,
        /// Stop at this time, if given.
        duration: Option<Duration>,
    },
    /// Requests as fast as possible (closed loop) or at a fixed rate (open loop).
    Throughput {
        /// Concurrent connections.
        connections: u64,
        /// When to stop.
        limit: Limit,
        /// Open-loop rate in requests/s; `None` = closed loop.
        rate: Option<f64>,
    },
}

/// Default users and requests of the sequential mode.
pub const DEFAULT_USERS: u64 = 50;
/// Default requests per user of the sequential mode.
pub const DEFAULT_REQUESTS: u64 = 20;
/// Default increments per parallel worker when no duration is given.
pub const DEFAULT_PER_WORKER: u64 = 100;
/// Default connections of the throughput mode.
pub const DEFAULT_CONNECTIONS: u64 = 50;
/// Default duration of the throughput mode when no request count is given.
pub const DEFAULT_THROUGHPUT_DURATION: Duration = Duration::from_secs(10);

impl Config {
    /// Parses the process arguments and environment. On error the message names the flag and,
    /// when the bad value came from the environment, the variable; `exit_code` is clap's (2 for
    /// usage errors, 0 for --help/--version).
    pub fn from_env_and_args() -> Result<Config, ConfigError> {
        Config::try_parse().map_err(ConfigError::from_clap)
    }

    /// Parses the given arguments (tests, and the binary via `from_env_and_args`).
    pub fn try_from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::try_parse_from(args).map_err(ConfigError::from_clap)
    }

    /// The mode, with its defaults applied.
    pub fn mode(&self) -> Mode {
        if let Some(workers) = self.parallel {
            Mode::Parallel {
                workers,
                per_worker: self.per_worker.or(if self.duration.is_some() {
                    None
                } else {
                    Some(DEFAULT_PER_WORKER)
                }),
                duration: self.duration,
            }
        } else if self.throughput {
            Mode::Throughput {
                connections: self.connections.unwrap_or(DEFAULT_CONNECTIONS),
                limit: Limit {
                    requests: self.requests,
                    duration: match (self.requests, self.duration) {
                        (None, None) => Some(DEFAULT_THROUGHPUT_DURATION),
                        (_, duration) => duration,
                    },
                },
                rate: self.rate,
            }
        } else {
            Mode::Sequential {
                users: self.users.unwrap_or(DEFAULT_USERS),
                requests: self.requests.unwrap_or(DEFAULT_REQUESTS),
            }
        }
    }
}

/// A configuration that could not be parsed. `Display` is the full message for stderr.
#[derive(Debug)]
pub struct ConfigError {
    /// Clap's message, plus the environment variable when the bad value came from one.
    message: String,
    /// 2 for errors, 0 for --help and --version.
    exit_code: i32,
}

impl ConfigError {
    fn from_clap(error: clap::Error) -> ConfigError {
        let exit_code = error.exit_code();
        let mut message = error.render().to_string();
        if let Some(variable) = env_source(&error) {
            message.push_str(&format!(
                "\nnote: the value came from the environment variable {variable}\n"
            ));
        }
        ConfigError { message, exit_code }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// Whether this is --help or --version output rather than an error.
    pub fn is_informational(&self) -> bool {
        self.exit_code == 0
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Clap names the flag but not the variable; find the variable whose value was rejected.
fn env_source(error: &clap::Error) -> Option<String> {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let arg = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => return None,
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        _ => None,
    };
    let command = Config::command();
    let spec = command.get_arguments().find(|a| {
        a.get_long().is_some_and(|long| {
            arg.starts_with(&format!("--{long} ")) || arg == format!("--{long}")
        })
    })?;
    let variable = spec.get_env()?.to_string_lossy().into_owned();
    let current = std::env::var_os(&variable)?;
    match value {
        Some(value) if current.to_string_lossy() != value => None,
        _ => Some(variable),
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "us" | "µs" => number / 1_000_000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "`{raw}`: unknown unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 86_400.0 * 7.0 {
        return Err(format!(
            "`{raw}`: a duration must be above 0 and at most 7 days"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a number"))?;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!("`{raw}` must be a positive number"))
    }
}

fn parse_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("`{raw}` must start with /"));
    }
    http::uri::PathAndQuery::try_from(raw).map_err(|e| format!("`{raw}`: {e}"))?;
    Ok(raw.to_owned())
}

fn parse_method(raw: &str) -> Result<Method, String> {
    Method::from_bytes(raw.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{raw}` is not an HTTP method"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::try_from_args(std::iter::once("loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn no_flags_is_sequential_against_localhost_8080() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.target.to_string(), "http://127.0.0.1:8080");
        assert_eq!(
            config.mode(),
            Mode::Sequential {
                users: 50,
                requests: 20
            }
        );
        assert_eq!(config.endpoint, Endpoint::Json);
        assert_eq!(config.timeout, Duration::from_secs(5));
    }

    #[test]
    fn parallel_flag_selects_parallel_mode() {
        let config = parse(&["--parallel", "16", "--per-worker", "10"]).expect("parses");
        assert_eq!(
            config.mode(),
            Mode::Parallel {
                workers: 16,
                per_worker: Some(10),
                duration: None
            }
        );
        let timed = parse(&["--parallel", "4", "--duration", "2s"]).expect("parses");
        assert_eq!(
            timed.mode(),
            Mode::Parallel {
                workers: 4,
                per_worker: None,
                duration: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn throughput_defaults_to_ten_seconds_closed_loop() {
        let config = parse(&["--throughput"]).expect("parses");
        assert_eq!(
            config.mode(),
            Mode::Throughput {
                connections: 50,
                limit: Limit {
                    requests: None,
                    duration: Some(Duration::from_secs(10))
                },
                rate: None
            }
        );
        let counted =
            parse(&["--throughput", "--requests", "1000", "--rate", "500"]).expect("parses");
        assert_eq!(
            counted.mode(),
            Mode::Throughput {
                connections: 50,
                limit: Limit {
                    requests: Some(1000),
                    duration: None
                },
                rate: Some(500.0)
            }
        );
    }

    #[test]
    fn conflicting_or_bad_flags_exit_two() {
        for args in [
            &["--parallel", "2", "--throughput"][..],
            &["--parallel", "2", "--requests", "5"],
            &["--users", "0"],
            &["--rate", "10"],
            &["--throughput", "--rate", "-1"],
            &["--timeout", "soon"],
            &["--target", "https://example.invalid"],
            &["--no-such-flag"],
        ] {
            let error = parse(args).expect_err("must be rejected");
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn boolean_variables_accept_the_usual_spellings() {
        // Parsed through the same value parser clap applies to LOADTEST_THROUGHPUT & co.
        let parser = BoolishValueParser::new();
        let command = clap::Command::new("t");
        for (raw, expected) in [
            ("1", true),
            ("yes", true),
            ("true", true),
            ("0", false),
            ("off", false),
        ] {
            let parsed = clap::builder::TypedValueParser::parse_ref(
                &parser,
                &command,
                None,
                std::ffi::OsStr::new(raw),
            )
            .expect("boolish");
            assert_eq!(parsed, expected, "{raw}");
        }
    }

    #[test]
    fn help_is_not_an_error() {
        let help = parse(&["--help"]).expect_err("help short-circuits");
        assert!(help.is_informational());
        assert!(help.to_string().contains("LOADTEST_TARGET"));
    }

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn methods_and_paths_are_validated() {
        assert_eq!(parse_method("post"), Ok(Method::POST));
        assert!(parse_path("session").is_err());
        assert_eq!(parse_path("/healthz"), Ok("/healthz".to_owned()));
    }
}
