//! Tracing setup: `RUST_LOG` filter (default `info`), text or JSON lines.
//!
//! Requests are not logged at `info`: a proxy's hot path should not format a line per request
//! (nginx's access log is off in the benchmark for the same reason). Failures are logged.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: never in a file, a pipe, `docker compose logs`
    // or a log collector, and never with `NO_COLOR` set (no-color.org).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
