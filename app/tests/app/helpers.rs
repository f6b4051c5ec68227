//! Test helpers: a cookie-keeping client and a small cluster of replicas on one Redis.

use std::time::Duration;

use app::Config;
use serde_json::Value;
use test_kit::{Hold, HoldingProxy, RedisServer, Replica, nothing, session_loads, session_saves};

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

/// `config`'s app served in-process on `127.0.0.1:0`.
pub async fn start_replica(config: Config) -> Replica {
    let node = config.node();
    Replica::start(&node, move |listener, shutdown| {
        app::run(listener, config, shutdown)
    })
    .await
}

/// How a replica's session writes are slowed, by a [`HoldingProxy`] between it and Redis: the
/// window between a write's load and its save widens by the delay, with nothing in the app
/// waiting. Which side is held decides what happens meanwhile.
#[derive(Debug, Clone, Copy)]
pub enum Slow {
    /// The save reaches Redis late: the writer waits on it with the lock held (and renewed).
    Saves(Duration),
    /// The load's answer (the acquire, or the optimistic peek) reaches the writer late: the
    /// writes that arrive meanwhile are queued when it works, and join its round with group
    /// commit, as while a handler computes; its save is sent, and timed, after that.
    Loads(Duration),
    /// Both, each by the delay: a round that a write joins takes twice as long.
    LoadsAndSaves(Duration),
}

impl Slow {
    fn delay(self) -> Duration {
        match self {
            Slow::Saves(d) | Slow::Loads(d) | Slow::LoadsAndSaves(d) => d,
        }
    }

    fn hold(self) -> Hold {
        let scripts = app::session_scripts();
        let script = |s: &app::Script| (s.sha.clone(), s.text.to_owned());
        let saves = session_saves(scripts.saves().into_iter().map(script).collect());
        let loads = session_loads(script(&scripts.acquire));
        let (commands, answers) = match self {
            Slow::Saves(_) => (saves, nothing()),
            Slow::Loads(_) => (nothing(), loads),
            Slow::LoadsAndSaves(_) => (saves, loads),
        };
        Hold {
            delay: self.delay(),
            commands,
            answers,
        }
    }
}

/// Redis plus `n` replicas named `node-0`, `node-1`, …, each configured by `configure`.
pub struct Cluster {
    pub redis: RedisServer,
    pub replicas: Vec<Replica>,
    /// The relays slowed replicas reach Redis through, kept alive for them; never read.
    _held: Vec<HoldingProxy>,
}

impl Cluster {
    pub async fn start(n: usize, configure: impl Fn(&mut Config)) -> Cluster {
        Cluster::start_on(RedisServer::start(), n, configure).await
    }

    /// Redis plus `n` replicas, `node-i` slowed by `slow("node-i")` (see [`Slow`]), each
    /// configured by `configure`.
    pub async fn start_slow(
        n: usize,
        slow: impl Fn(&str) -> Option<Slow>,
        configure: impl Fn(&mut Config),
    ) -> Cluster {
        Cluster::start_slow_on(RedisServer::start(), n, slow, configure).await
    }

    /// `n` replicas on `redis`.
    pub async fn start_on(
        redis: RedisServer,
        n: usize,
        configure: impl Fn(&mut Config),
    ) -> Cluster {
        Cluster::start_slow_on(redis, n, |_| None, configure).await
    }

    async fn start_slow_on(
        redis: RedisServer,
        n: usize,
        slow: impl Fn(&str) -> Option<Slow>,
        configure: impl Fn(&mut Config),
    ) -> Cluster {
        let mut replicas = Vec::new();
        let mut held = Vec::new();
        let mut locking = false;
        for i in 0..n {
            let node = format!("node-{i}");
            let mut config = Config::for_test(&redis.url(), &node);
            let slowed = slow(&node);
            if let Some(slow) = slowed {
                let proxy = HoldingProxy::start(redis.addr(), slow.hold()).await;
                config.redis_url = redis.url_via(proxy.addr());
                // A held answer or save must not time out (unless a test sets a shorter
                // timeout on purpose), and the pool is as large as it goes: the pool takes
                // its connections in turn, so a command (a lease renewal) comes back to the
                // connection of a held answer, and waits behind it, only after 64 others.
                config.redis_timeout = config
                    .redis_timeout
                    .max(2 * slow.delay() + Duration::from_millis(200));
                config.redis_pool_size = 64;
                held.push(proxy);
            }
            configure(&mut config);
            locking |= config.session_lock && config.session_store == app::SessionStoreKind::Redis;
            let replica = start_replica(config).await;
            if slowed.is_some() {
                // Its pool's connections open through the relay: wait until all answer.
                test_kit::wait_for_200(&format!("{}/readyz", replica.url())).await;
            }
            replicas.push(replica);
        }
        let cluster = Cluster {
            redis,
            replicas,
            _held: held,
        };
        if locking {
            cluster.wait_for_lock_scripts().await;
        }
        cluster
    }

    /// Waits (at most 5 s) until the replicas' background preload put every lock script in
    /// Redis, so tests that list the commands of a request never see a first-use `EVAL`.
    async fn wait_for_lock_scripts(&self) {
        let shas = app::lock_script_shas();
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
            test_kit::TEST_ADMIN_PASSWORD,
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
