//! SIGHUP reloads the certificate files (as nginx and HAProxy do on a reload), without
//! dropping a connection: see [`crate::tls::certs`].

use crate::tls::Tls;

/// Reloads `tls` on every SIGHUP until dropped. A reload that fails is logged and the old
/// certificate stays in use.
pub async fn on_sighup(tls: Tls) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; certificates will not be reloaded");
                return;
            }
        };
        while hups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.certificate_path().display(), "SIGHUP: certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: certificate not reloaded; the old one stays")
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop(tls);
}
