//! The TLS port's settings (flattened into [`crate::Config`]): where it listens, which
//! certificate it serves, and the HTTP/2 limits of its clients.
//!
//! A setting that cannot work (a certificate without its key, a TLS option without
//! `TLS_LISTEN_ADDR`) is refused at start by [`TlsConfig::validate`], naming the variable;
//! the files themselves are read by [`crate::tls::Tls::load`], which names the variable too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::positive_duration;

/// Settings of the TLS port. Each flag can also be given by the environment variable in its
/// name.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsConfig {
    /// Where TLS clients connect (HTTP/2 or HTTP/1.1, chosen by ALPN). Unset: no TLS port;
    /// `LISTEN_ADDR` stays plain HTTP either way.
    #[arg(long, env = "TLS_LISTEN_ADDR")]
    pub tls_listen_addr: Option<SocketAddr>,

    /// PEM file with the certificate chain, leaf first (with `TLS_KEY`). Re-read on SIGHUP.
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1). Re-read on
    /// SIGHUP.
    #[arg(long, env = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Make a development certificate for `localhost` and `127.0.0.1` at start instead of
    /// `TLS_CERT`/`TLS_KEY`; it is written to `TLS_SELF_SIGNED_DIR` so clients can trust it.
    #[arg(long, env = "TLS_SELF_SIGNED", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub tls_self_signed: bool,

    /// Where `TLS_SELF_SIGNED` writes `cert.pem` and `key.pem` (default: a
    /// `session-cluster-balancer-tls` directory in the system's temporary directory).
    #[arg(long, env = "TLS_SELF_SIGNED_DIR")]
    pub tls_self_signed_dir: Option<PathBuf>,

    /// Time from accept to a finished TLS handshake; a client that does not finish in time
    /// is disconnected.
    #[arg(long, env = "TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub tls_handshake_timeout: Duration,

    /// Concurrent streams (requests) one HTTP/2 client connection may have open.
    #[arg(long, env = "H2_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_concurrent_streams: u32,

    /// How often an HTTP/2 connection with no frame from the client is pinged; a ping not
    /// answered within `H2_KEEP_ALIVE_TIMEOUT` closes it (a vanished client).
    #[arg(long, env = "H2_KEEP_ALIVE_INTERVAL", default_value = "30s", value_parser = positive_duration)]
    pub h2_keep_alive_interval: Duration,

    /// How long an HTTP/2 ping may go unanswered.
    #[arg(long, env = "H2_KEEP_ALIVE_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub h2_keep_alive_timeout: Duration,

    /// Answer every request on the plain port with a redirect (308) to the same URL on the
    /// TLS port. Needs `TLS_LISTEN_ADDR`.
    #[arg(long, env = "HTTPS_REDIRECT", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub https_redirect: bool,
}

impl Default for TlsConfig {
    /// No TLS port, and the defaults of every other setting.
    fn default() -> TlsConfig {
        TlsConfig {
            tls_listen_addr: None,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            tls_self_signed_dir: None,
            tls_handshake_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 128,
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_keep_alive_timeout: Duration::from_secs(20),
            https_redirect: false,
        }
    }
}

impl TlsConfig {
    /// Checks that the TLS settings go together; the error names the variable to fix.
    pub fn validate(&self) -> Result<(), String> {
        let files = self.tls_cert.is_some() || self.tls_key.is_some();
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("TLS_KEY: required with TLS_CERT".to_owned()),
            (None, Some(_)) => return Err("TLS_CERT: required with TLS_KEY".to_owned()),
            _ => {}
        }
        if files && self.tls_self_signed {
            return Err(
                "TLS_SELF_SIGNED: set together with TLS_CERT/TLS_KEY; choose one".to_owned(),
            );
        }
        match self.tls_listen_addr {
            Some(_) if !files && !self.tls_self_signed => Err(
                "TLS_LISTEN_ADDR: needs TLS_CERT and TLS_KEY, or TLS_SELF_SIGNED=true".to_owned(),
            ),
            None if files => Err("TLS_CERT: set, but TLS_LISTEN_ADDR is not".to_owned()),
            None if self.tls_self_signed => {
                Err("TLS_SELF_SIGNED: set, but TLS_LISTEN_ADDR is not".to_owned())
            }
            None if self.https_redirect => Err("HTTPS_REDIRECT: needs TLS_LISTEN_ADDR".to_owned()),
            _ => Ok(()),
        }
    }

    /// The directory the development certificate goes to.
    pub fn self_signed_dir(&self) -> PathBuf {
        self.tls_self_signed_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("session-cluster-balancer-tls"))
    }
}
