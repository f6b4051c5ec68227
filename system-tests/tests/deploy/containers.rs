//! Rules comparing a container with the binary it runs (recognised by its image):
//!
//! - every env var is one the binary reads (its clap `env`, or `RUST_LOG`), or exists only to
//!   be spliced into another value as `$(VAR)`;
//! - every `$(VAR)` names a variable defined *earlier* in the list (Kubernetes leaves a
//!   forward or unknown reference as literal text, which would reach Redis as a password);
//! - the values, with Secrets and the downward API filled in, parse with the binary's own
//!   clap definition (a too-short SESSION_SECRET or a bad REDIS_URL fails here, not in a pod);
//! - the listen ports are declared containerPorts, probes hit a listener on a path it serves;
//! - the balancer's UPSTREAMS names a headless Service and the port its pods listen on.

use std::{collections::BTreeMap, net::SocketAddr};

use serde_json::Value;

use crate::{
    checks::is_headless,
    helpers::Binary,
    manifest::{Container, Manifests, string_map},
};

/// Stand-ins for values only known in a running pod (downward API `fieldRef`).
fn field_value(path: &str) -> String {
    match path {
        "metadata.name" => "app-5d8c7b9f6c-x7k2p".to_owned(),
        "metadata.namespace" => "session-cluster".to_owned(),
        "status.podIP" | "status.hostIP" => "10.0.0.7".to_owned(),
        "spec.nodeName" => "node-1".to_owned(),
        other => format!("fieldref-{}", other.replace('.', "-")),
    }
}

/// Runs every per-container rule on the containers that run one of `binaries`.
pub fn check(m: &Manifests, binaries: &[Binary], problems: &mut Vec<String>) {
    for w in m.workloads() {
        for c in w.containers() {
            if let Some(binary) = binaries.iter().find(|b| b.image == c.image_name()) {
                let env = environment(m, c, problems);
                env_names(c, binary, &env, problems);
                values(c, binary, &env, problems);
                let ports = listener_ports(c, binary, &env, problems);
                probes(c, binary, &ports, problems);
                if let Some(var) = binary.upstreams_env {
                    upstreams(m, c, var, &env, binaries, problems);
                }
            }
        }
    }
}

/// The container's env, in order, with `$(VAR)` expanded as the kubelet does.
fn environment(
    m: &Manifests,
    c: Container<'_>,
    problems: &mut Vec<String>,
) -> Vec<(String, String)> {
    if c.value.get("envFrom").is_some() {
        problems.push(format!(
            "{}: uses envFrom; list each variable under env so its name can be checked",
            c.id()
        ));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for entry in c.env() {
        let name = entry["name"].as_str().unwrap_or("").to_owned();
        if env.iter().any(|(n, _)| *n == name) {
            problems.push(format!("{}: env {name} is set twice", c.id()));
        }
        let value = if let Some(raw) = entry["value"].as_str() {
            expand(raw, &env).unwrap_or_else(|missing| {
                problems.push(format!(
                    "{}: env {name} uses $({missing}), which is not defined earlier in env; \
                     Kubernetes would pass the text `$({missing})` literally",
                    c.id()
                ));
                raw.to_owned()
            })
        } else if let Some(secret) = entry["valueFrom"].get("secretKeyRef") {
            let (name, key) = (secret["name"].as_str(), secret["key"].as_str());
            name.and_then(|n| m.secret(n))
                .and_then(|keys| keys.get(key.unwrap_or("")).cloned())
                .unwrap_or_default()
        } else if let Some(config) = entry["valueFrom"].get("configMapKeyRef") {
            let map = config["name"].as_str().and_then(|n| m.find("ConfigMap", n));
            match map {
                Some(doc) => string_map(&doc.value["data"])
                    .remove(config["key"].as_str().unwrap_or(""))
                    .unwrap_or_default(),
                None => {
                    problems.push(format!(
                        "{}: env {name} reads ConfigMap {}, which is not defined here",
                        c.id(),
                        config["name"]
                    ));
                    String::new()
                }
            }
        } else if let Some(path) = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            field_value(path)
        } else {
            String::new()
        };
        env.push((name, value));
    }
    env
}

/// Expands `$(VAR)` from the variables defined so far; `$$(VAR)` is an escaped literal.
/// Returns the first unknown name on failure.
fn expand(raw: &str, defined: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("$(") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find(')') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        match defined.iter().rev().find(|(n, _)| n == name) {
            Some((_, value)) => out.push_str(value),
            None => return Err(name.to_owned()),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The names referenced as `$(NAME)` in `text`.
fn references(text: &str) -> Vec<&str> {
    text.match_indices("$(")
        .filter_map(|(i, _)| {
            let after = &text[i + 2..];
            after.find(')').map(|end| &after[..end])
        })
        .collect()
}

fn env_names(
    c: Container<'_>,
    binary: &Binary,
    env: &[(String, String)],
    problems: &mut Vec<String>,
) {
    let accepted = binary.clap_env();
    // Everything that may interpolate a variable: env values, command and args.
    let mut texts: Vec<&str> = c.env().iter().filter_map(|e| e["value"].as_str()).collect();
    for field in ["command", "args"] {
        texts.extend(
            c.value[field]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter_map(Value::as_str),
        );
    }
    let referenced: Vec<&str> = texts.iter().flat_map(|t| references(t)).collect();
    for (name, _) in env {
        let known = accepted.contains_key(name) || binary.extra_env.contains(&name.as_str());
        if !known && !referenced.contains(&name.as_str()) {
            problems.push(format!(
                "{}: env {name} is not read by the {} binary and not used as $({name}); \
                 it accepts {:?} and {:?}",
                c.id(),
                binary.name,
                accepted.keys().collect::<Vec<_>>(),
                binary.extra_env
            ));
        }
    }
}

/// Parses the container's configuration with the binary's own clap definition.
fn values(c: Container<'_>, binary: &Binary, env: &[(String, String)], problems: &mut Vec<String>) {
    let accepted = binary.clap_env();
    let mut args = vec![binary.name.to_owned()];
    for (name, value) in env {
        let Some(arg) = accepted.get(name) else {
            continue;
        };
        let Some(long) = arg.get_long() else { continue };
        if arg.get_action().takes_values() {
            args.push(format!("--{long}={value}"));
        } else if matches!(value.as_str(), "1" | "true" | "yes" | "on") {
            args.push(format!("--{long}"));
        }
    }
    if let Err(err) = (binary.parse)(args) {
        let first = err
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        problems.push(format!(
            "{}: the {} binary rejects this configuration: {first}",
            c.id(),
            binary.name
        ));
    }
}

/// The port of each listener (from env or the clap default); each must be a containerPort.
fn listener_ports<'b>(
    c: Container<'_>,
    binary: &'b Binary,
    env: &[(String, String)],
    problems: &mut Vec<String>,
) -> BTreeMap<u64, &'b crate::helpers::Listener> {
    let declared: Vec<u64> = c.ports().iter().map(|(_, n)| *n).collect();
    let mut ports = BTreeMap::new();
    for listener in &binary.listeners {
        let addr = env
            .iter()
            .rev()
            .find(|(n, _)| n == listener.env)
            .map(|(_, v)| v.clone())
            .or_else(|| binary.default_of(listener.env))
            .unwrap_or_default();
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            // `values` reports the unparsable address with the binary's own message.
            continue;
        };
        let port = u64::from(addr.port());
        if !declared.contains(&port) {
            problems.push(format!(
                "{}: {} listens on port {port}, which is not a containerPort ({declared:?})",
                c.id(),
                listener.env
            ));
        }
        ports.insert(port, listener);
    }
    ports
}

fn probes(
    c: Container<'_>,
    binary: &Binary,
    ports: &BTreeMap<u64, &crate::helpers::Listener>,
    problems: &mut Vec<String>,
) {
    let required = [
        ("readinessProbe", binary.readiness),
        ("livenessProbe", binary.liveness),
        ("startupProbe", None),
    ];
    for (kind, wanted) in required {
        let probe = &c.value[kind];
        if probe.is_null() {
            if let Some(path) = wanted {
                problems.push(format!("{}: no {kind} (expected GET {path})", c.id()));
            }
            continue;
        }
        let get = &probe["httpGet"];
        let path = get["path"].as_str().unwrap_or("/");
        if let Some(wanted) = wanted
            && (get.is_null() || path != wanted)
        {
            problems.push(format!(
                "{}: {kind} must be httpGet {wanted}, not {}",
                c.id(),
                if get.is_null() {
                    "a non-HTTP probe"
                } else {
                    path
                }
            ));
        }
        if get.is_null() {
            continue;
        }
        let Some(port) = c.resolve_port(&get["port"]) else {
            problems.push(format!(
                "{}: {kind} port {} is not a containerPort number or name",
                c.id(),
                get["port"]
            ));
            continue;
        };
        match ports.get(&port) {
            None => problems.push(format!(
                "{}: {kind} probes port {port}, but the {} binary listens on {}",
                c.id(),
                binary.name,
                describe(ports)
            )),
            Some(listener) if !listener.routes.contains(&path) => problems.push(format!(
                "{}: {kind} path {path} is not served on {} (port {port}); routes there: {:?}",
                c.id(),
                listener.env,
                listener.routes
            )),
            Some(_) => {}
        }
    }
}

fn describe(ports: &BTreeMap<u64, &crate::helpers::Listener>) -> String {
    let parts: Vec<String> = ports
        .iter()
        .map(|(p, l)| format!("{} {p}", l.env))
        .collect();
    parts.join(", ")
}

/// Each UPSTREAMS entry must be a headless Service here (so its DNS name lists every pod) and
/// the port the selected pods' binary listens on (pod IPs are dialled directly: the Service's
/// own `port` plays no part).
fn upstreams(
    m: &Manifests,
    c: Container<'_>,
    var: &str,
    env: &[(String, String)],
    binaries: &[Binary],
    problems: &mut Vec<String>,
) {
    let namespace = m.kustomization["namespace"].as_str().unwrap_or("default");
    let Some((_, value)) = env.iter().rev().find(|(n, _)| n == var) else {
        problems.push(format!("{}: {var} is not set", c.id()));
        return;
    };
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, port)) = entry.rsplit_once(':') else {
            continue; // `values` reports it with the balancer's own message
        };
        let mut labels = host.split('.');
        let service = labels.next().unwrap_or("");
        if let Some(ns) = labels.next()
            && ns != namespace
        {
            problems.push(format!(
                "{}: {var} entry {entry} points into namespace {ns}, not {namespace}",
                c.id()
            ));
        }
        let Some(svc) = m.find("Service", service) else {
            problems.push(format!(
                "{}: {var} entry {entry}: no Service `{service}` in these manifests",
                c.id()
            ));
            continue;
        };
        if !is_headless(svc) {
            problems.push(format!(
                "{}: {var} entry {entry}: Service {service} is not headless (clusterIP: None), \
                 so its DNS name is one virtual IP and the balancer would see one backend",
                c.id()
            ));
        }
        let selector = string_map(&svc.value["spec"]["selector"]);
        for w in m.selected_by(&selector) {
            for target in w.containers() {
                let Some(binary) = binaries.iter().find(|b| b.image == target.image_name()) else {
                    continue;
                };
                let listen = target
                    .env()
                    .iter()
                    .find(|e| e["name"] == "LISTEN_ADDR")
                    .and_then(|e| e["value"].as_str().map(str::to_owned))
                    .or_else(|| binary.default_of("LISTEN_ADDR"))
                    .unwrap_or_default();
                let listen_port = listen.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
                if listen_port != port {
                    problems.push(format!(
                        "{}: {var} entry {entry}: port {port} is not the port the {} binary of {} \
                         listens on (LISTEN_ADDR {listen})",
                        c.id(),
                        binary.name,
                        target.id()
                    ));
                }
            }
        }
    }
}
