//! `docker-compose.yml` (and the Sentinel override `deploy/redis-ha/compose-sentinel.yml`) as
//! Compose would run them with the shipped `.env`: every app and balancer service's environment
//! is interpolated (`${VAR}`, `${VAR:-default}`, `${VAR:?message}`) and parsed by the binary's
//! own clap definition, so a value the binary refuses (a crash loop for the user) fails here
//! instead of in a container nobody requests through.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

use crate::helpers::{Binary, binaries};

fn workspace_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The shipped `.env`, as Compose reads it: `NAME=value` lines, `#` comments.
fn dot_env() -> BTreeMap<String, String> {
    workspace_file(".env")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// `raw` with every `${NAME}`, `${NAME:-default}` and `${NAME:?message}` replaced as Compose
/// does with `vars`; a required variable that is unset is an error.
fn interpolate(raw: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            // `$$` is a literal `$`.
            out.push('$');
            rest = escaped;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = inner
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {raw}"))?;
        let expr = &inner[..end];
        let (name, fallback) = if let Some((name, default)) = expr.split_once(":-") {
            (name, Some(Ok(default.to_owned())))
        } else if let Some((name, message)) = expr.split_once(":?") {
            (name, Some(Err(format!("{name}: {message}"))))
        } else {
            (expr, None)
        };
        match (vars.get(name).filter(|v| !v.is_empty()), fallback) {
            (Some(value), _) => out.push_str(value),
            (None, Some(Ok(default))) => out.push_str(&default),
            (None, Some(Err(message))) => return Err(message),
            (None, None) => {}
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Each service of `file` that runs one of `binaries`, with its environment as a map.
fn services(file: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    let doc: Value = serde_norway::from_str(&workspace_file(file)).expect("valid YAML");
    let Some(services) = doc["services"].as_mapping() else {
        return Vec::new();
    };
    services
        .iter()
        .map(|(name, service)| {
            let name = name.as_str().unwrap_or_default().to_owned();
            let image = service["image"].as_str().unwrap_or_default().to_owned();
            let env = service["environment"]
                .as_mapping()
                .map(|env| {
                    env.iter()
                        .map(|(k, v)| {
                            let value = match v {
                                Value::String(s) => s.clone(),
                                Value::Bool(b) => b.to_string(),
                                Value::Number(n) => n.to_string(),
                                _ => String::new(),
                            };
                            (k.as_str().unwrap_or_default().to_owned(), value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            (name, image, env)
        })
        .collect()
}

/// The problems of `env` for `binary`: a refused value, or a required interpolation unset.
fn parse_env(binary: &Binary, env: &BTreeMap<String, String>) -> Result<(), String> {
    let vars = dot_env();
    let accepted = binary.clap_env();
    let mut args = vec![binary.name.to_owned()];
    for (name, raw) in env {
        let value = interpolate(raw, &vars)?;
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
    (binary.parse)(args)
}

fn problems_of(files: &[&str]) -> Vec<String> {
    let binaries = binaries();
    let mut merged: BTreeMap<String, (String, BTreeMap<String, String>)> = BTreeMap::new();
    for file in files {
        for (name, image, env) in services(file) {
            let entry = merged.entry(name).or_default();
            if !image.is_empty() {
                entry.0 = image;
            }
            entry.1.extend(env);
        }
    }
    let mut problems = Vec::new();
    for (name, (image, env)) in &merged {
        let image = image.split(':').next().unwrap_or_default();
        let Some(binary) = binaries.iter().find(|b| b.image == image) else {
            continue;
        };
        if let Err(err) = parse_env(binary, env) {
            let first = err
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            problems.push(format!("{}: service {name}: {first}", files.join(" + ")));
        }
    }
    problems
}

#[test]
fn every_app_and_balancer_service_of_the_compose_files_starts_with_its_environment() {
    let mut problems = problems_of(&["docker-compose.yml"]);
    problems.extend(problems_of(&[
        "docker-compose.yml",
        "deploy/redis-ha/compose-sentinel.yml",
    ]));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_bare_number_where_a_duration_goes_is_caught() {
    let binaries = binaries();
    let app = binaries
        .iter()
        .find(|b| b.name == "app")
        .expect("the app binary");
    let env = BTreeMap::from([("SHUTDOWN_GRACE".to_owned(), "10".to_owned())]);
    let err = parse_env(app, &env).expect_err("a bare number is refused");
    assert!(err.contains("shutdown-grace"), "{err}");
}

#[test]
fn interpolation_follows_compose() {
    let vars = BTreeMap::from([("A".to_owned(), "x".to_owned())]);
    assert_eq!(interpolate("${A}-${B:-d}", &vars).as_deref(), Ok("x-d"));
    assert_eq!(interpolate("$${A}", &vars).as_deref(), Ok("${A}"));
    assert!(interpolate("${B:?set B}", &vars).is_err());
}
