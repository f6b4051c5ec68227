//! TLS termination on a port of its own (`TLS_LISTEN_ADDR`), beside the plain one: rustls
//! with the ring provider, ALPN `h2` and `http/1.1`, HTTP/2 to clients and HTTP/1.1 with
//! keep-alive to the replicas, as on the plain port.
//!
//! - [`config`]: the settings, checked together at start;
//! - [`certs`]: the certificate (files or a development one), swapped on SIGHUP;
//! - [`reload`]: the SIGHUP handler;
//! - [`server`]: the accept loop and handshake of one worker;
//! - [`connection`]: one negotiated connection, served as HTTP/2 or HTTP/1.1;
//! - [`redirect`]: the plain port's redirect to the TLS one (`HTTPS_REDIRECT`).
//!
//! Why ring and not aws-lc-rs (rustls' default): ring is already in the tree (the Redis
//! client's TLS), builds without cmake or a C toolchain beyond cc, and serves the TLS 1.3
//! suites and the X25519 and P-256 groups nginx and HAProxy use by default;
//! `balancer/bench/tls.sh` measures the result against both.

pub mod config;

mod certs;
mod connection;
mod redirect;
mod reload;
mod server;

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

pub use certs::Source as CertSource;
pub use redirect::HttpsRedirect;
pub use reload::on_sighup as reload_on_sighup;
pub use server::{TlsSettings, serve};

use certs::CertStore;
use config::TlsConfig;

/// The ALPN protocols offered, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The TLS port's certificate and rustls settings, shared by every worker.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The certificate in use; a reload swaps it.
    store: Arc<CertStore>,
    /// rustls' server settings, which ask `store` for the certificate of each handshake.
    server: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Loads the certificate of `config` (or makes the development one) and builds the
    /// rustls settings. The error names the variable to fix; the binary exits with code 2.
    pub fn load(config: &TlsConfig) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let store = Arc::new(CertStore::load(config, Arc::clone(&provider))?);
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS_LISTEN_ADDR: cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&store) as Arc<dyn rustls::server::ResolvesServerCert>);
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            store,
            server: Arc::new(server),
        })
    }

    /// Where the certificate came from (for the start-up log line, and tests).
    pub fn source(&self) -> &CertSource {
        self.store.source()
    }

    /// The certificate file clients may trust.
    pub fn certificate_path(&self) -> &Path {
        match self.store.source() {
            CertSource::Files { cert, .. } | CertSource::SelfSigned { cert, .. } => cert,
        }
    }

    /// Reads `TLS_CERT` and `TLS_KEY` again; new handshakes get the new certificate, open
    /// connections go on. On an error the old certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        self.store.reload()
    }

    /// An acceptor for a worker's connections.
    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.server))
    }
}
