//! Test helpers: a cookie-keeping client and a small cluster of replicas on one Redis.

use std::time::Duration;

use app::{
    Config,
    testing::{RedisServer, Replica},
};
use serde_json::Value;

/// A user: one HTTP client with its own cookie jar.
pub fn user() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A client without a cookie jar: the test sets the `Cookie` header itself.
pub fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// Opens a session with a request to `path` on replica 0; its `sid=…` cookie and its id.
pub async fn open_session(cluster: &Cluster, path: &str) -> (String, String) {
    let url = cluster.url(0, path);
    let res = if path == "/api/session/views" {
        plain().post(url).send().await
    } else {
        plain().get(url).send().await
    };
    let cookie = set_cookie(&res.expect("open")).expect("a session cookie");
    let id = cookie.split_once('=').expect("name=value").1.to_owned();
    (cookie, id)
}

/// The session's counter, read on replica 0 with `cookie`.
pub async fn views_of(cluster: &Cluster, cookie: &str) -> u64 {
    let res = plain()
        .get(cluster.url(0, "/api/session"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("read");
    res.json::<Value>().await.expect("json")["views"]
        .as_u64()
        .expect("views")
}

/// Redis plus `n` replicas named `node-0`, `node-1`, …, each configured by `configure`.
pub struct Cluster {
    pub redis: RedisServer,
    pub replicas: Vec<Replica>,
}

impl Cluster {
    pub async fn start(n: usize, configure: impl Fn(&mut Config)) -> Cluster {
        Cluster::start_on(RedisServer::start(), n, configure).await
    }

    /// `n` replicas on `redis`.
    pub async fn start_on(
        redis: RedisServer,
        n: usize,
        configure: impl Fn(&mut Config),
    ) -> Cluster {
        let mut replicas = Vec::new();
        let mut locking = false;
        for i in 0..n {
            let mut config = Config::for_test(&redis.url(), &format!("node-{i}"));
            configure(&mut config);
            locking |=
                config.session_lock && config.session_store == app::config::SessionStoreKind::Redis;
            replicas.push(Replica::start(config).await);
        }
        let cluster = Cluster { redis, replicas };
        if locking {
            cluster.wait_for_lock_scripts().await;
        }
        cluster
    }

    /// Waits (at most 5 s) until the replicas' background preload put every lock script in
    /// Redis, so tests that list the commands of a request never see a first-use `EVAL`.
    async fn wait_for_lock_scripts(&self) {
        let shas = app::testing::lock_script_shas();
        let mut args = vec!["SCRIPT", "EXISTS"];
        args.extend(shas.iter().map(String::as_str));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self.redis.cli(&args).lines().all(|line| line.trim() == "1") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, replica: usize, path: &str) -> String {
        format!("{}{path}", self.replicas[replica].url())
    }

    /// `replica`'s `/metrics` text.
    pub async fn metrics(&self, replica: usize) -> String {
        plain()
            .get(self.url(replica, "/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

/// A replica as a real process of the app binary (so a test can SIGKILL it), on a free port
/// and `cluster`'s Redis, named `node`, with `env` on top; returns once `/readyz` answers 200.
pub async fn app_process(
    cluster: &Cluster,
    node: &str,
    env: &[(&str, String)],
) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_app"))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", cluster.redis.url())
        .env("NODE_NAME", node)
        .env("SHUTDOWN_DELAY", "0s")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("app binary");
    let url = format!("http://127.0.0.1:{port}");
    let ready = std::time::Instant::now();
    while !plain()
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "{node} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}

/// `GET /session` and the counter it printed, with the node that served it.
pub async fn seed_visit(client: &reqwest::Client, url: &str) -> (u64, String) {
    let res = client.get(url).send().await.expect("request");
    assert_eq!(res.status(), 200, "GET {url}");
    let node = served_by(&res);
    let body = res.text().await.expect("body");
    let count = body
        .strip_prefix("Session View Cnt  ")
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
        .parse()
        .expect("a number");
    (count, node)
}

/// `POST /api/session/views` and its JSON.
pub async fn increment(client: &reqwest::Client, base: &str) -> Value {
    let res = client
        .post(format!("{base}/api/session/views"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

/// `GET /api/session` and its JSON.
pub async fn read(client: &reqwest::Client, base: &str) -> Value {
    let res = client
        .get(format!("{base}/api/session"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

pub fn served_by(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .expect("X-Served-By on every response")
        .to_owned()
}

/// The session cookie the server set, as `sid=value`.
pub fn set_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sid="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The value of the first sample in a metrics exposition whose line starts with `prefix`
/// (0 when absent, as Prometheus treats a missing counter).
pub fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Runs `requests`, and returns the client commands Redis received meanwhile.
pub async fn commands_during<Fut: std::future::Future<Output = ()>>(
    cluster: &Cluster,
    requests: Fut,
) -> Vec<String> {
    let mut monitor = std::process::Command::new("redis-cli");
    monitor.args(["-p", &cluster.redis.port().to_string()]);
    if cluster.redis.has_acl() {
        monitor.args([
            "--user",
            "default",
            "--pass",
            app::testing::TEST_ADMIN_PASSWORD,
            "--no-auth-warning",
        ]);
    }
    let mut monitor = monitor
        .arg("MONITOR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli MONITOR");
    // MONITOR answers OK once it is subscribed; wait for that before sending traffic.
    let mut stdout = monitor.stdout.take().expect("stdout");
    let mut ok = [0u8; 3];
    std::io::Read::read_exact(&mut stdout, &mut ok).expect("MONITOR started");
    requests.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    monitor.kill().expect("stop MONITOR");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).expect("MONITOR output");
    let _ = monitor.wait();
    out.lines()
        .filter(|line| line.contains(" 127.0.0.1:") && !line.contains("lua]"))
        .filter_map(|line| line.split('"').nth(1).map(str::to_uppercase))
        // fred's connection handshake (a pool connection may still be opening), the lock
        // scripts' one-time SCRIPT LOAD and the wake-up subscription at start: not per request.
        .filter(|command| {
            !matches!(
                command.as_str(),
                "PING" | "CLIENT" | "INFO" | "SCRIPT" | "SUBSCRIBE" | "AUTH"
            )
        })
        .collect()
}
