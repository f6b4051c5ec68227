//! The command line (clap derive, every flag also read from a `LOADTEST_*` variable): the
//! flags every mode shares are here; each mode's own flags are in its module
//! ([`crate::modes`]) and flattened in. Every value is parsed here, once; the modes resolve
//! their settings from the parsed `Config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};

use crate::endpoint::Endpoint;
use crate::modes::{parallel, sequential, throughput};
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
    pub(crate) target: Targets,

    /// The sequential mode's own flags.
    #[command(flatten)]
    pub(crate) sequential: sequential::Flags,

    /// Requests per user (sequential) or in total (throughput).
    #[arg(long, env = "LOADTEST_REQUESTS", value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with = "parallel",
          help = format!("Requests per user (sequential, default {}) or in total (throughput; \
                          default: use --duration)", sequential::DEFAULT_REQUESTS))]
    pub(crate) requests: Option<u64>,

    /// The parallel mode's own flags.
    #[command(flatten)]
    pub(crate) parallel: parallel::Flags,

    /// How long to run (throughput, parallel).
    #[arg(long, env = "LOADTEST_DURATION", value_parser = parse_duration,
          help = format!("How long to run (throughput default {} unless --requests is given; \
                          parallel: stop workers then), as 500ms, 10s, 2m",
                          humantime::format_duration(throughput::DEFAULT_DURATION)))]
    pub(crate) duration: Option<Duration>,

    /// The throughput mode's own flags.
    #[command(flatten)]
    pub(crate) throughput: throughput::Flags,

    /// Counter endpoint for sequential and parallel modes: `json` = POST /api/session/views,
    /// `text` = GET /session (`Session View Cnt  N`, as the original app).
    #[arg(long, env = "LOADTEST_ENDPOINT", value_enum, default_value_t = Endpoint::Json)]
    pub(crate) endpoint: Endpoint,

    /// Per-request timeout, as 500ms, 5s, 1m; a timed-out request is an unknown outcome.
    #[arg(long, env = "LOADTEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,

    /// Threshold: fail (exit 1) below this many requests/s.
    #[arg(long, env = "LOADTEST_MIN_RPS", value_parser = parse_rate)]
    pub(crate) min_rps: Option<f64>,

    /// Threshold: fail (exit 1) when p99 latency is above this, e.g. 50ms.
    #[arg(long, env = "LOADTEST_MAX_P99", value_parser = parse_duration)]
    pub(crate) max_p99: Option<Duration>,

    /// Runtime worker threads (default: one per core).
    #[arg(long, env = "LOADTEST_THREADS", value_parser = clap::value_parser!(u16).range(1..1025))]
    pub(crate) threads: Option<u16>,

    /// Print the report as JSON on stdout instead of the table.
    #[arg(long, env = "LOADTEST_JSON", value_parser = BoolishValueParser::new())]
    pub(crate) json: bool,

    /// Also write the report as one self-contained HTML page with charts to this file.
    #[arg(long, env = "LOADTEST_REPORT", value_name = "PATH.html", value_parser = parse_report_path)]
    pub(crate) report: Option<PathBuf>,

    /// Never draw the progress bar (it is drawn only on a terminal anyway).
    #[arg(long, env = "LOADTEST_NO_PROGRESS", value_parser = BoolishValueParser::new())]
    pub(crate) no_progress: bool,
}

/// The longest `--duration`, `--timeout` or `--max-p99` accepted: a week, so that no deadline
/// computed from it can overflow the clock.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

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

    /// The base URL(s) under test, comma-separated, as `--target` took them.
    pub fn target(&self) -> String {
        self.target.to_string()
    }

    /// `--threads`: worker threads for the runtime (and the throughput mode's load threads);
    /// `None` for one per core.
    pub fn threads(&self) -> Option<usize> {
        self.threads.map(usize::from)
    }

    /// `--report`: where to write the HTML report, if anywhere.
    pub fn report(&self) -> Option<&std::path::Path> {
        self.report.as_deref()
    }

    /// `--json`: print the report as JSON instead of the table.
    pub fn json(&self) -> bool {
        self.json
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

/// Parses `--report`: a file path, not empty and not a directory.
fn parse_report_path(raw: &str) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("the report needs a file name, e.g. report.html".to_owned());
    }
    let path = PathBuf::from(raw);
    if raw.ends_with('/') || path.is_dir() {
        return Err(format!(
            "`{raw}` is a directory; name a file in it, e.g. {raw}/report.html"
        ));
    }
    Ok(path)
}

/// Parses a humantime duration (`500ms`, `10s`, `2m`, `1h 30m`), above 0 and at most a week.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(raw.trim())
        .map_err(|e| format!("`{raw}` is not a duration like 500ms, 2s or 1m ({e})"))?;
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(format!(
            "`{raw}`: a duration must be above 0 and at most 7 days"
        ));
    }
    Ok(duration)
}

/// Parses a positive, finite number of requests per second (`--rate`, `--min-rps`).
pub(crate) fn parse_rate(raw: &str) -> Result<f64, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::try_from_args(std::iter::once("loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn no_flags_runs_against_localhost_8080_with_a_five_second_timeout() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.target.to_string(), "http://127.0.0.1:8080");
        assert_eq!(config.endpoint, Endpoint::Json);
        assert_eq!(config.timeout, Duration::from_secs(5));
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
            &["--report", ""],
            &["--report", "/tmp/"],
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
        assert_eq!(parse_duration("1s 500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("8days").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_with_an_example() {
        let error = parse_duration("10").expect_err("no unit");
        assert!(error.contains("500ms, 2s or 1m"), "{error}");
    }

    #[test]
    fn threads_fit_the_runtime() {
        assert_eq!(
            parse(&["--threads", "4"]).expect("parses").threads(),
            Some(4)
        );
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--threads", "1025"]).is_err());
    }
}
