//! The certificate the TLS port serves, swappable while connections are open.
//!
//! rustls asks a [`ResolvesServerCert`] for the certificate of each new handshake. Ours hands
//! out whatever [`CertStore`] holds at that moment, behind an `ArcSwap`: a reload (SIGHUP)
//! swaps in the new certificate for the next handshakes, and connections already set up keep
//! the session keys they negotiated, so nothing is dropped. A reload that fails (a missing
//! file, a key that does not match) keeps the old certificate and says why.
//!
//! Where the certificate comes from ([`Source`]): the PEM files of `TLS_CERT` and `TLS_KEY`,
//! re-read on every reload, or a development certificate for `localhost` and `127.0.0.1`
//! made at start with rcgen (`TLS_SELF_SIGNED`) and written out so clients can trust it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::tls::config::TlsConfig;

/// Where the served certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `TLS_CERT` and `TLS_KEY`: read at start and on every reload.
    Files {
        /// The certificate chain (PEM).
        cert: PathBuf,
        /// Its private key (PEM).
        key: PathBuf,
    },
    /// A development certificate made at start, written to these files.
    SelfSigned {
        /// The certificate written out for clients to trust.
        cert: PathBuf,
        /// Its key, written beside it (readable by the owner only).
        key: PathBuf,
    },
}

/// The certificate in use, handed to every new handshake.
#[derive(Debug)]
pub struct CertStore {
    /// Swapped whole by a reload; each handshake takes the one current when it starts.
    current: ArcSwap<CertifiedKey>,
    /// Where it came from, and where a reload reads it again.
    source: Source,
    /// Parses the private keys (ring).
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    /// The certificate of `config`: its files, or a new development certificate. The error
    /// names the variable to fix.
    pub fn load(config: &TlsConfig, provider: Arc<CryptoProvider>) -> Result<CertStore, String> {
        let (key, source) = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => (
                read_pair(cert, key, &provider)?,
                Source::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
            ),
            _ if config.tls_self_signed => {
                let (key, cert_path, key_path) = self_signed(&config.self_signed_dir(), &provider)?;
                (
                    key,
                    Source::SelfSigned {
                        cert: cert_path,
                        key: key_path,
                    },
                )
            }
            _ => {
                return Err(
                    "TLS_LISTEN_ADDR: needs TLS_CERT and TLS_KEY, or TLS_SELF_SIGNED=true"
                        .to_owned(),
                );
            }
        };
        Ok(CertStore {
            current: ArcSwap::from_pointee(key),
            source,
            provider,
        })
    }

    /// Where the certificate came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Reads `TLS_CERT` and `TLS_KEY` again and serves them to new handshakes; on an error
    /// the current certificate stays. A development certificate is kept as it is.
    pub fn reload(&self) -> Result<(), String> {
        if let Source::Files { cert, key } = &self.source {
            let fresh = read_pair(cert, key, &self.provider)?;
            self.current.store(Arc::new(fresh));
        }
        Ok(())
    }
}

/// Reads a certificate chain and its key, checking that they belong together.
fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS_CERT: cannot read `{}`: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS_CERT: no PEM certificate in `{}`",
            cert.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("TLS_KEY: no PEM private key in `{}`: {e}", key.display()))?;
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("TLS_KEY: unusable key in `{}`: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signer);
    pair.keys_match().map_err(|e| {
        format!(
            "TLS_KEY: `{}` is not the key of the certificate in TLS_CERT ({e})",
            key.display()
        )
    })?;
    Ok(pair)
}

/// Makes a development certificate for `localhost` and `127.0.0.1` (ECDSA P-256), writes it
/// and its key to `dir`, and returns it with the two paths.
fn self_signed(
    dir: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, PathBuf, PathBuf), String> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("TLS_SELF_SIGNED: cannot make a certificate: {e}"))?;
    let cert_pem = made.cert.pem();
    let key_pem = made.signing_key.serialize_pem();
    let written = |what: &str, e: std::io::Error| {
        format!(
            "TLS_SELF_SIGNED_DIR: cannot write the {what} to `{}`: {e}",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| written("certificate", e))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert_pem.as_bytes()).map_err(|e| written("certificate", e))?;
    write_private(&key_path, key_pem.as_bytes()).map_err(|e| written("key", e))?;
    let pair = read_pair(&cert_path, &key_path, provider)?;
    Ok((pair, cert_path, key_path))
}

/// Writes a private key readable by its owner only (replacing an older one).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "balancer-certs-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_development_certificate_is_written_and_read_back() {
        let dir = temp_dir("self");
        let config = TlsConfig {
            tls_self_signed: true,
            tls_self_signed_dir: Some(dir.clone()),
            ..TlsConfig::default()
        };
        let store = CertStore::load(&config, provider()).expect("made");
        assert_eq!(
            store.source(),
            &Source::SelfSigned {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            }
        );
        let again = read_pair(&dir.join("cert.pem"), &dir.join("key.pem"), &provider());
        assert!(again.is_ok(), "{:?}", again.err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("key.pem"))
                .expect("key written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is the owner's only: {mode:o}");
        }
    }

    #[test]
    fn missing_and_mismatched_files_name_the_variable() {
        let dir = temp_dir("bad");
        let missing = read_pair(&dir.join("nope.pem"), &dir.join("nope.key"), &provider());
        assert!(missing.err().is_some_and(|e| e.starts_with("TLS_CERT:")));

        let a = temp_dir("a");
        let b = temp_dir("b");
        self_signed(&a, &provider()).expect("a");
        self_signed(&b, &provider()).expect("b");
        let mismatched = read_pair(&a.join("cert.pem"), &b.join("key.pem"), &provider());
        assert!(
            mismatched
                .as_ref()
                .err()
                .is_some_and(|e| e.starts_with("TLS_KEY:")),
            "{mismatched:?}"
        );
        let not_a_key = read_pair(&a.join("cert.pem"), &a.join("cert.pem"), &provider());
        assert!(not_a_key.err().is_some_and(|e| e.starts_with("TLS_KEY:")));
    }
}
