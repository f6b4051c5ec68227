//! The `balancer` binary: parse config, set up logging, bind, run until SIGTERM/Ctrl-C.
//!
//! Run with:
//! ```text
//! UPSTREAMS=127.0.0.1:8001,127.0.0.1:8002 cargo run -p balancer --release
//! UPSTREAMS=app:8000 LISTEN_ADDR=0.0.0.0:8080 ADMIN_ADDR=0.0.0.0:8081 balancer
//! UPSTREAMS=app:8000 TLS_LISTEN_ADDR=0.0.0.0:8443 TLS_SELF_SIGNED=true balancer
//! UPSTREAMS=app:8000 TLS_LISTEN_ADDR=0.0.0.0:8443 TLS_CERT=cert.pem TLS_KEY=key.pem balancer
//! ```
//! Invalid configuration (a TLS file that cannot be read included) prints a message naming
//! the variable and exits with code 2. SIGHUP reloads `TLS_CERT` and `TLS_KEY`.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

use balancer::{CertSource, Config, SystemResolver, Tls, init_tracing, shutdown_signal};

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
    let tls = match config.tls.tls_listen_addr {
        Some(addr) => match Tls::load(&config.tls) {
            Ok(tls) => Some((addr, tls)),
            Err(msg) => {
                eprintln!("error: invalid configuration: {msg}");
                std::process::exit(2);
            }
        },
        None => None,
    };
    if let Some((_, tls)) = &tls
        && let CertSource::SelfSigned { cert, .. } = tls.source()
    {
        tracing::info!(cert = %cert.display(), "TLS_SELF_SIGNED: development certificate for localhost and 127.0.0.1 written; trust it, or use curl -k");
    }
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
    let Some((tls_addr, tls)) = tls else {
        return balancer::run(listener, admin, config, shutdown_signal()).await;
    };
    let tls_listener = TcpListener::bind(tls_addr)
        .await
        .with_context(|| format!("cannot bind TLS_LISTEN_ADDR {tls_addr}"))?;
    tracing::info!(tls_listen = %tls_listener.local_addr()?, cert = %tls.certificate_path().display(), "TLS port");
    balancer::run_with_tls(
        listener,
        tls_listener,
        tls,
        admin,
        config,
        Arc::new(SystemResolver),
        shutdown_signal(),
    )
    .await
}
