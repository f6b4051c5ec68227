//! A real `redis-server` on a free loopback port, optionally with the shipped ACL
//! (`deploy/redis/users.acl`, selected by `TEST_REDIS_ACL=1`), killed on drop.
//!
//! Nothing here mocks Redis: the point of the tests is the real thing.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::ports::free_port;

const INSTALL_HINT: &str = "redis-server is not on PATH. The tests need a real Redis: \
     install it with `apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis`.";

/// A real `redis-server` process on a free loopback port, killed on drop.
///
/// With `TEST_REDIS_ACL=1` in the environment (or [`RedisServer::start_with_acl`]) it runs
/// with the shipped `deploy/redis/users.acl`: replicas then connect as the least-privilege
/// `app` user, and [`RedisServer::cli`] runs as the `default` admin.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
    acl: bool,
}

/// The `default` (admin) user's password under the ACL, in tests.
pub const TEST_ADMIN_PASSWORD: &str = "test-admin-password";
/// The `app` user's password under the ACL, in tests.
pub const TEST_APP_PASSWORD: &str = "test-app-password";
/// The shipped ACL template.
pub const USERS_ACL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/redis/users.acl");
/// The shipped script that renders it.
const START_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/redis/start.sh");

impl RedisServer {
    /// Starts a fresh, empty Redis and waits until it answers PING; with the shipped ACL
    /// when `TEST_REDIS_ACL=1`.
    pub fn start() -> RedisServer {
        let acl = std::env::var("TEST_REDIS_ACL").is_ok_and(|v| v == "1");
        RedisServer::start_as(acl)
    }

    /// Starts a fresh, empty Redis without any ACL, whatever `TEST_REDIS_ACL` says (for tests
    /// of settings the shipped ACL does not allow, such as another key prefix).
    pub fn start_without_acl() -> RedisServer {
        RedisServer::start_as(false)
    }

    /// Starts a fresh, empty Redis with the shipped `deploy/redis/users.acl`.
    pub fn start_with_acl() -> RedisServer {
        RedisServer::start_as(true)
    }

    fn start_as(acl: bool) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "session-cluster-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("redis work dir");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir,
            acl,
        };
        if acl {
            server.render_acl();
        }
        server.spawn();
        server
    }

    /// Writes the shipped ACL with the test passwords, rendered by the shipped
    /// `deploy/redis/start.sh` itself (`ACL_RENDER_ONLY=1`), as compose and Kubernetes do.
    fn render_acl(&self) {
        let rendered = Command::new("sh")
            .arg(START_SH)
            .env("REDIS_PASSWORD", TEST_ADMIN_PASSWORD)
            .env("REDIS_APP_PASSWORD", TEST_APP_PASSWORD)
            .env("ACL_TEMPLATE", USERS_ACL)
            .env("ACL_OUT", self.dir.join("users.acl"))
            .env("ACL_RENDER_ONLY", "1")
            .status()
            .expect("sh runs deploy/redis/start.sh");
        assert!(
            rendered.success(),
            "deploy/redis/start.sh could not render the ACL"
        );
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        if self.acl {
            command.args(["--aclfile", "users.acl"]);
        }
        let child = command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(err) => panic!("cannot start redis-server: {err}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if self.acl {
            let auth = format!("AUTH default {TEST_ADMIN_PASSWORD}\r\n");
            let mut ok = [0u8; 5];
            if stream.write_all(auth.as_bytes()).is_err()
                || stream.read_exact(&mut ok).is_err()
                || &ok != b"+OK\r\n"
            {
                return false;
            }
        }
        let mut buf = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut buf).is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:PORT`, or with the ACL `redis://app:PASSWORD@127.0.0.1:PORT`: what a
    /// replica connects with.
    pub fn url(&self) -> String {
        if self.acl {
            format!("redis://app:{TEST_APP_PASSWORD}@127.0.0.1:{}", self.port)
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    /// [`RedisServer::url`] with `addr` in place of this server's address: what a replica
    /// connects with to reach it through a relay (a [`crate::HoldingProxy`]).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        self.url()
            .replace(&format!("127.0.0.1:{}", self.port), &addr.to_string())
    }

    /// Its address.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether it runs with the shipped ACL.
    pub fn has_acl(&self) -> bool {
        self.acl
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server: Redis is down until [`RedisServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: persistence is off).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs one command with `redis-cli` (as the admin user under the ACL) and returns its
    /// output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if self.acl {
            command.args([
                "--user",
                "default",
                "--pass",
                TEST_ADMIN_PASSWORD,
                "--no-auth-warning",
            ]);
        }
        let out = command
            .args(args)
            .output()
            .expect("redis-cli runs (it comes with redis-server)");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs one command with `redis-cli` as the least-privilege `app` user (needs the ACL);
    /// returns stdout and stderr, trimmed.
    pub fn cli_as_app(&self, args: &[&str]) -> String {
        assert!(self.acl, "cli_as_app needs a RedisServer with the ACL");
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args([
                "--user",
                "app",
                "--pass",
                TEST_APP_PASSWORD,
                "--no-auth-warning",
            ])
            .args(args)
            .output()
            .expect("redis-cli runs (it comes with redis-server)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
