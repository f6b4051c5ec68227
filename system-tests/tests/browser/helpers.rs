//! What the browser test needs, started for real and stopped on drop: the cluster under test
//! (in-process, or the one named by `BROWSER_TARGET`), over plain HTTP or over the balancer's
//! TLS port with a certificate made for the run and trusted by Chromium for that run only;
//! `chromedriver` with a headless Chromium session comes from `test-kit`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use balancer::Upstream;
use base64::Engine as _;
use rcgen::PublicKeyData as _;
use sha2::Digest as _;
pub use test_kit::{ChromeDriver, output_dir, text_when};
use test_kit::{InProcessBalancer, RedisServer, Replica};

/// The cluster the browser talks to.
pub enum Target {
    /// A cluster someone else runs (`BROWSER_TARGET`), e.g. docker compose in deploy/e2e.sh.
    External(String),
    /// Our own: redis-server, three replicas and the balancer, all on loopback.
    Local(Box<LocalCluster>),
}

impl Target {
    /// `BROWSER_TARGET` when set, else a freshly started local cluster.
    pub async fn from_env_or_start() -> Target {
        match std::env::var("BROWSER_TARGET") {
            Ok(url) if !url.trim().is_empty() => {
                Target::External(url.trim().trim_end_matches('/').to_owned())
            }
            _ => Target::Local(Box::new(LocalCluster::start(3, false).await)),
        }
    }

    /// A local cluster served on the balancer's TLS port, with `COOKIE_SECURE=true`.
    pub async fn start_tls() -> Target {
        Target::Local(Box::new(LocalCluster::start(3, true).await))
    }

    /// What Chromium needs on its command line for this target: for a TLS cluster, trust in
    /// its certificate (by the SHA-256 of its public key), for this session only.
    pub fn chromium_args(&self) -> Vec<String> {
        match self {
            Target::Local(cluster) => match &cluster.tls {
                Some(tls) => vec![format!(
                    "--ignore-certificate-errors-spki-list={}",
                    tls.spki_sha256
                )],
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Base URL of the balancer.
    pub fn url(&self) -> String {
        match self {
            Target::External(url) => url.clone(),
            Target::Local(cluster) => match &cluster.tls {
                Some(tls) => format!("https://localhost:{}", tls.addr.port()),
                None => format!("http://{}", cluster.balancer_addr),
            },
        }
    }

    /// Stops what we started (nothing for an external cluster).
    pub async fn stop(self) {
        if let Target::Local(cluster) = self {
            cluster.stop().await;
        }
    }
}

/// Redis, N replicas and the real balancer, in this process.
pub struct LocalCluster {
    /// Kept alive for the replicas; killed on drop.
    _redis: RedisServer,
    replicas: Vec<Replica>,
    balancer_addr: SocketAddr,
    balancer: InProcessBalancer,
    /// The TLS port, when the cluster is served over TLS.
    tls: Option<TlsPort>,
}

/// The balancer's TLS port and how Chromium is told to trust its certificate.
pub struct TlsPort {
    addr: SocketAddr,
    /// base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo.
    spki_sha256: String,
}

/// Writes a certificate for localhost and its key to a directory of this run; returns the
/// two paths and the base64 SHA-256 of its public key.
fn run_certificate() -> (PathBuf, PathBuf, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    let dir = std::env::temp_dir().join(format!("browser-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let spki = sha2::Sha256::digest(key.subject_public_key_info());
    let hash = base64::engine::general_purpose::STANDARD.encode(spki);
    (cert_path, key_path, hash)
}

impl LocalCluster {
    async fn start(n: usize, tls: bool) -> LocalCluster {
        let redis = RedisServer::start();
        let mut replicas = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("replica-{}", char::from(b'a' + i as u8));
            let mut config = app::Config::for_test(&redis.url(), &name);
            // Over TLS, as a deployment would: the browser must send a Secure cookie back.
            config.cookie_secure = tls;
            replicas.push(
                Replica::start(&name, move |listener, shutdown| {
                    app::run(listener, config, shutdown)
                })
                .await,
            );
        }
        let upstreams = replicas
            .iter()
            .map(|r| Upstream {
                host: "127.0.0.1".to_owned(),
                port: r.addr().port(),
            })
            .collect();
        let mut config = balancer::Config::with_upstreams(upstreams);
        let (balancer, tls) = if tls {
            let (cert, key, spki_sha256) = run_certificate();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind TLS");
            let addr = listener.local_addr().expect("TLS addr");
            config.tls.tls_listen_addr = Some(addr);
            config.tls.tls_cert = Some(cert);
            config.tls.tls_key = Some(key);
            let loaded = balancer::Tls::load(&config.tls).expect("certificate loads");
            let balancer = InProcessBalancer::start(move |plain, admin, shutdown| {
                balancer::run_with_tls(
                    plain,
                    listener,
                    loaded,
                    admin,
                    config,
                    Arc::new(balancer::SystemResolver),
                    shutdown,
                )
            })
            .await;
            (balancer, Some(TlsPort { addr, spki_sha256 }))
        } else {
            let balancer = InProcessBalancer::start(move |listener, admin, shutdown| {
                balancer::run(listener, admin, config, shutdown)
            })
            .await;
            (balancer, None)
        };
        LocalCluster {
            _redis: redis,
            replicas,
            balancer_addr: balancer.addr,
            balancer,
            tls,
        }
    }

    async fn stop(self) {
        let mut balancer = self.balancer;
        balancer.signal_shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(15), balancer.join()).await;
        for replica in self.replicas {
            replica.stop().await;
        }
    }
}
