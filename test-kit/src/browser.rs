//! A `chromedriver` with a headless Chromium session (Debian's `chromium`, or `CHROME_BIN`),
//! started for real and killed on drop, and the waits a browser test needs.

use std::{
    net::{TcpListener as StdListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

const INSTALL_HINT: &str = "the browser test drives Debian's Chromium through chromedriver: \
     install both with `apt-get install -y chromium chromium-driver` \
     (or set CHROMEDRIVER and CHROME_BIN to other paths)";

/// A `chromedriver` process on a free loopback port, killed on drop.
pub struct ChromeDriver {
    /// The chromedriver process.
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

    /// A new headless Chromium session, 900×1100, that records the browser's console.
    pub async fn session(&self) -> Client {
        self.open(900, 1100, &[]).await
    }

    /// A new headless Chromium session with a window of `width`×`height`, recording the
    /// browser's console (see [`ChromeDriver::console_errors`]).
    pub async fn session_sized(&self, width: u32, height: u32) -> Client {
        self.open(width, height, &[]).await
    }

    /// A new headless Chromium session with `extra_args` on Chromium's command line (for
    /// example `--ignore-certificate-errors-spki-list=...` to trust one test certificate).
    pub async fn session_with(&self, extra_args: &[String]) -> Client {
        self.open(900, 1100, extra_args).await
    }

    async fn open(&self, width: u32, height: u32, extra_args: &[String]) -> Client {
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!("--window-size={width},{height}"));
        args.extend(extra_args.iter().cloned());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chrome_binary(),
                // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
                "args": args,
            }),
        );
        caps.insert(
            "goog:loggingPrefs".to_owned(),
            serde_json::json!({"browser": "ALL"}),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|err| {
                panic!("chromedriver could not start Chromium: {err}. {INSTALL_HINT}")
            })
    }

    /// The console messages of level SEVERE (errors: a failed load, a blocked resource, a
    /// script error) since the last call, from chromedriver's log endpoint.
    pub async fn console_errors(&self, browser: &Client) -> Vec<String> {
        let session = browser
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let url = format!("http://127.0.0.1:{}/session/{session}/se/log", self.port);
        let log: serde_json::Value = reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"type": "browser"}))
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("the log is JSON");
        log["value"]
            .as_array()
            .unwrap_or_else(|| panic!("no log entries in {log}"))
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].to_string())
            .collect()
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
