//! The `app` binary: one replica.
//!
//! Run with:
//! ```text
//! redis-server &
//! cargo run -p app -- --listen-addr 127.0.0.1:8001 --node-name a
//! cargo run -p app -- --listen-addr 127.0.0.1:8002 --node-name b
//! curl -c jar -b jar localhost:8001/session; curl -c jar -b jar localhost:8002/session
//! ```

use anyhow::Context;

// glibc's malloc showed up as a sixth of a replica's CPU under load, much of it contention
// between threads on its arenas; mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Exits with code 2 and names the variable on a bad value or a renamed variable, before
    // anything binds.
    let config = app::Config::parse_or_exit();
    app::init_tracing(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on LISTEN_ADDR {}", config.listen_addr))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        node = %config.node(),
        store = ?config.session_store,
        lock = config.session_lock,
        "listening"
    );
    app::run(listener, config, app::shutdown_signal()).await?;
    Ok(())
}
