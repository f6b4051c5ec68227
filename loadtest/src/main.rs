//! The `loadtest` binary: parse the configuration, run the selected mode, print the table
//! (or JSON) and exit 0 (pass), 1 (anomalies, lost updates, failed threshold, nothing proven)
//! or 2 (could not run: bad flags, unreachable target).
//!
//! Run with:
//! ```text
//! cargo run --release -p loadtest                                  # 50 users x 20 requests on :8080
//! cargo run --release -p loadtest -- --target http://a:1,http://b:2  # round robin over replicas
//! cargo run --release -p loadtest -- --parallel 16 --per-worker 100  # lost updates on one session
//! cargo run --release -p loadtest -- --throughput --duration 10s --rate 2000 --json
//! cargo run --release -p loadtest -- --report report.html              # also an HTML page with charts
//! ```

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use loadtest::Config;

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(config) => config,
        Err(error) if error.is_informational() => {
            print!("{error}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprint!("{error}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "loadtest: could not run against {}: {error:#}",
                config.target()
            );
            ExitCode::from(2)
        }
    }
}

fn run(config: &Config) -> anyhow::Result<ExitCode> {
    // Opened before the run, so a path that cannot be written fails at once, not after it.
    let report_file = config
        .report()
        .map(|path| {
            std::fs::File::create(path)
                .with_context(|| format!("creating the --report file {}", path.display()))
        })
        .transpose()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.threads() {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(loadtest::run(config, ctrl_c()))?;
    if config.json() {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if let (Some(mut file), Some(path)) = (report_file, config.report()) {
        let html = report.to_html()?;
        file.write_all(html.as_bytes())
            .with_context(|| format!("writing the --report file {}", path.display()))?;
    }
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}

/// Resolves on ctrl-c; never, if the signal cannot be watched (so the run is not cut short).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
