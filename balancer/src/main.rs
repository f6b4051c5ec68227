//! The `balancer` binary: parse config, set up logging, bind, run until SIGTERM/Ctrl-C.
//!
//! Run with:
//! ```text
//! UPSTREAMS=127.0.0.1:8001,127.0.0.1:8002 cargo run -p balancer --release
//! UPSTREAMS=app:8000 LISTEN_ADDR=0.0.0.0:8080 ADMIN_ADDR=0.0.0.0:8081 balancer
//! ```
//! Invalid configuration prints a message naming the variable and exits with code 2.

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

use balancer::{Config, init_tracing, shutdown_signal};

// The proxying runs on its own worker threads (see `workers`); this runtime only runs
// discovery, health checks and the admin endpoints.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // clap prints its own errors (naming the variable) and exits with code 2.
    let config = Config::parse();
    if let Err(msg) = config.validate() {
        eprintln!("error: invalid configuration: {msg}");
        std::process::exit(2);
    }
    init_tracing(config.log_format);
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot bind LISTEN_ADDR {}", config.listen_addr))?;
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot bind ADMIN_ADDR {}", config.admin_addr))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin.local_addr()?,
        upstreams = ?config.upstreams.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "balancer starting"
    );
    balancer::run(listener, admin, config, shutdown_signal()).await
}
