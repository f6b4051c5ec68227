//! What the browser test needs, started for real and stopped on drop: the cluster under test
//! (in-process, or the one named by `BROWSER_TARGET`) and a `chromedriver` with a headless
//! Chromium session.

use std::{
    net::{SocketAddr, TcpListener as StdListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use app::testing::{RedisServer, Replica};
use balancer::config::Upstream;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

const INSTALL_HINT: &str = "the browser test drives Debian's Chromium through chromedriver: \
     install both with `apt-get install -y chromium chromium-driver` \
     (or set CHROMEDRIVER and CHROME_BIN to other paths)";

/// The cluster the browser talks to.
pub enum Target {
    /// A cluster someone else runs (`BROWSER_TARGET`), e.g. docker compose in deploy/e2e.sh.
    External(String),
    /// Our own: redis-server, three replicas and the balancer, all on loopback.
    Local(LocalCluster),
}

impl Target {
    /// `BROWSER_TARGET` when set, else a freshly started local cluster.
    pub async fn from_env_or_start() -> Target {
        match std::env::var("BROWSER_TARGET") {
            Ok(url) if !url.trim().is_empty() => {
                Target::External(url.trim().trim_end_matches('/').to_owned())
            }
            _ => Target::Local(LocalCluster::start(3).await),
        }
    }

    /// Base URL of the balancer.
    pub fn url(&self) -> String {
        match self {
            Target::External(url) => url.clone(),
            Target::Local(cluster) => format!("http://{}", cluster.balancer_addr),
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
    stop_balancer: oneshot::Sender<()>,
    balancer: JoinHandle<anyhow::Result<()>>,
}

impl LocalCluster {
    async fn start(n: usize) -> LocalCluster {
        let redis = RedisServer::start();
        let mut replicas = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("replica-{}", char::from(b'a' + i as u8));
            replicas.push(Replica::start(app::Config::for_test(&redis.url(), &name)).await);
        }
        let upstreams = replicas
            .iter()
            .map(|r| Upstream {
                host: "127.0.0.1".to_owned(),
                port: r.addr().port(),
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind balancer");
        let admin = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind balancer admin");
        let balancer_addr = listener.local_addr().expect("balancer addr");
        let (stop_balancer, stopped) = oneshot::channel::<()>();
        let config = balancer::Config::with_upstreams(upstreams);
        let balancer = tokio::spawn(balancer::run(listener, admin, config, async move {
            let _ = stopped.await;
        }));
        LocalCluster {
            _redis: redis,
            replicas,
            balancer_addr,
            stop_balancer,
            balancer,
        }
    }

    async fn stop(self) {
        let _ = self.stop_balancer.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.balancer).await;
        for replica in self.replicas {
            replica.stop().await;
        }
    }
}

/// A `chromedriver` process on a free loopback port, killed on drop.
pub struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it accepts connections. Panics with the install
    /// hint when chromedriver or Chromium is missing: a browser test that cannot run fails.
    pub fn start() -> ChromeDriver {
        let driver = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| find_on_path(&["chromedriver"]))
            .unwrap_or_else(|| panic!("chromedriver not found. {INSTALL_HINT}"));
        chrome_binary();
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let child = Command::new(&driver)
            .args([
                format!("--port={port}"),
                "--allowed-ips=127.0.0.1".to_owned(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {}: {err}. {INSTALL_HINT}", driver.display())
            });
        let driver = ChromeDriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A new headless Chromium session.
    pub async fn session(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chrome_binary(),
                // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=900,1100", "--no-first-run"],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|err| {
                panic!("chromedriver could not start Chromium: {err}. {INSTALL_HINT}")
            })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Chromium's binary: `CHROME_BIN`, else Debian's `chromium` on PATH.
fn chrome_binary() -> String {
    std::env::var_os("CHROME_BIN")
        .map(PathBuf::from)
        .or_else(|| find_on_path(&["chromium", "chromium-browser", "google-chrome"]))
        .unwrap_or_else(|| panic!("Chromium not found. {INSTALL_HINT}"))
        .to_string_lossy()
        .into_owned()
}

/// Text of the element with this id, waiting until `accept` likes it: the page is reloading
/// after a click, so the element may be missing or stale for a moment.
pub async fn text_when(browser: &Client, id: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = browser.find(Locator::Id(id)).await
            && let Ok(text) = element.text().await
        {
            if accept(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("#{id} never became acceptable within 15 s; last text: {last:?}");
}

/// `test-output/` at the workspace root (gitignored), created if missing.
pub fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-output");
    std::fs::create_dir_all(&dir).expect("create test-output/");
    dir
}
