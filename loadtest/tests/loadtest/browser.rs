//! Just enough headless Chromium for the report test: a `chromedriver` on a free loopback port
//! (killed on drop), a session that keeps the browser's console log, and that log's errors.
//! Kept small and self-contained on purpose: the workspace's browser harness is moving to a
//! shared test kit, and this can point at it then.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const INSTALL_HINT: &str = "the report test opens the report in Debian's Chromium through \
     chromedriver: install both with `apt-get install -y chromium chromium-driver` (or set \
     CHROMEDRIVER and CHROME_BIN to other paths)";

/// A `chromedriver` process, killed on drop.
pub struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it listens. Fails (never skips) without it.
    pub fn start() -> ChromeDriver {
        let driver = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| on_path(&["chromedriver"]))
            .unwrap_or_else(|| panic!("chromedriver not found. {INSTALL_HINT}"));
        let port = TcpListener::bind("127.0.0.1:0")
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
            .unwrap_or_else(|e| panic!("cannot start {}: {e}. {INSTALL_HINT}", driver.display()));
        let driver = ChromeDriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A headless Chromium session that records every console message.
    pub async fn session(&self) -> Client {
        let chrome = std::env::var_os("CHROME_BIN")
            .map(PathBuf::from)
            .or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]))
            .unwrap_or_else(|| panic!("Chromium not found. {INSTALL_HINT}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chrome,
                // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1000,1400", "--no-first-run"],
            }),
        );
        caps.insert("goog:loggingPrefs".to_owned(), json!({"browser": "ALL"}));
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!("chromedriver could not start Chromium: {e}. {INSTALL_HINT}")
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
        let log: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({"type": "browser"}))
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

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// `test-output/` at the workspace root (gitignored), created if missing.
pub fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-output");
    std::fs::create_dir_all(&dir).expect("create test-output/");
    dir
}
