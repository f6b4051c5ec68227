//! What the checks compare the manifests with: the shipped files, and for each of our binaries
//! the environment variables it accepts (read from its clap definition, so a renamed flag
//! fails this test), its listeners and the routes served on each.

use std::{collections::BTreeMap, path::PathBuf};

use clap::{CommandFactory, Parser};

/// A listening address a binary takes from an environment variable, and what it serves there.
#[derive(Debug, Clone)]
pub struct Listener {
    /// The variable holding the address, e.g. `LISTEN_ADDR`.
    pub env: &'static str,
    /// Paths answered there that a probe may use (`routes.rs` proves each answers 200).
    pub routes: &'static [&'static str],
}

/// One of our binaries as it runs in a container.
#[derive(Debug, Clone)]
pub struct Binary {
    /// Short name for messages.
    pub name: &'static str,
    /// Image name (without tag) that runs it: how a container is recognised.
    pub image: &'static str,
    /// Its clap definition: accepted variables, their flags and defaults.
    pub command: clap::Command,
    /// Parses a command line exactly as the binary does (including checks across values).
    pub parse: fn(Vec<String>) -> Result<(), String>,
    /// Variables read outside clap.
    pub extra_env: &'static [&'static str],
    pub listeners: Vec<Listener>,
    /// The path the readiness probe must use, if the binary needs a specific one.
    pub readiness: Option<&'static str>,
    /// The path the liveness probe must use.
    pub liveness: Option<&'static str>,
    /// The variable listing upstreams that must name a headless Service (the balancer's).
    pub upstreams_env: Option<&'static str>,
}

impl Binary {
    /// Every variable clap reads, with the long flag it sets.
    pub fn clap_env(&self) -> BTreeMap<String, clap::Arg> {
        self.command
            .get_arguments()
            .filter_map(|arg| Some((arg.get_env()?.to_str()?.to_owned(), arg.clone())))
            .collect()
    }

    /// The clap default of the argument read from `env`.
    pub fn default_of(&self, env: &str) -> Option<String> {
        let arg = self.clap_env().remove(env)?;
        let value = arg.get_default_values().first()?;
        Some(value.to_string_lossy().into_owned())
    }
}

/// Routes of the app that probes may use. `/readyz` fails while Redis is unreachable,
/// `/healthz` never does.
pub const APP_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];
/// Routes of the balancer's admin listener (`/` is its dashboard).
pub const BALANCER_ADMIN_ROUTES: &[&str] = &["/", "/healthz", "/status", "/metrics"];

/// The app and the balancer, as the manifests must run them.
pub fn binaries() -> Vec<Binary> {
    vec![
        Binary {
            name: "app",
            image: "session-cluster/app",
            command: app::Config::command(),
            parse: |args| {
                app::Config::try_parse_from(args)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
            // tracing's EnvFilter reads it (app/src/telemetry.rs).
            extra_env: &["RUST_LOG"],
            listeners: vec![Listener {
                env: "LISTEN_ADDR",
                routes: APP_ROUTES,
            }],
            readiness: Some("/readyz"),
            // Liveness must not depend on Redis: a Redis outage would restart every pod.
            liveness: Some("/healthz"),
            upstreams_env: None,
        },
        Binary {
            name: "balancer",
            image: "session-cluster/balancer",
            command: balancer::Config::command(),
            parse: |args| {
                let config = balancer::Config::try_parse_from(args).map_err(|e| e.to_string())?;
                config.validate()
            },
            // tracing's EnvFilter reads it (balancer/src/telemetry.rs).
            extra_env: &["RUST_LOG"],
            listeners: vec![
                // The client port proxies every path to the app; nothing there is the balancer's own.
                Listener {
                    env: "LISTEN_ADDR",
                    routes: &[],
                },
                Listener {
                    env: "ADMIN_ADDR",
                    routes: BALANCER_ADMIN_ROUTES,
                },
            ],
            readiness: None,
            liveness: None,
            upstreams_env: Some("UPSTREAMS"),
        },
    ]
}

/// `deploy/k8s` in this checkout.
pub fn k8s_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s")
}

/// Every `*.yaml` / `*.yml` file of `deploy/k8s`, name → text.
pub fn shipped_files() -> BTreeMap<String, String> {
    let dir = k8s_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            )
        })
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

/// The shipped files with `from` replaced by `to` once in `file`; panics if `from` is not
/// there exactly once, so a mutation test cannot silently test nothing.
pub fn broken(file: &str, from: &str, to: &str) -> BTreeMap<String, String> {
    let mut files = shipped_files();
    let text = files.get_mut(file).unwrap_or_else(|| panic!("no {file}"));
    assert_eq!(
        text.matches(from).count(),
        1,
        "{file} must contain {from:?} exactly once for this test"
    );
    *text = text.replacen(from, to, 1);
    files
}
