//! The checker on broken copies of the shipped manifests: each kind of mistake is reported
//! with a message naming it. Each test changes one string of one file (the helper fails if
//! that string is not there exactly once, so a test cannot silently check nothing).

use std::collections::BTreeMap;

use crate::{
    checks::check,
    helpers::{binaries, broken},
};

/// Asserts that checking `files` reports a problem containing every one of `expected`.
fn assert_caught(files: &BTreeMap<String, String>, expected: &[&str]) {
    let problems = check(files, &binaries());
    assert!(
        problems
            .iter()
            .any(|p| expected.iter().all(|e| p.contains(e))),
        "expected a problem mentioning {expected:?}, got:\n  - {}",
        problems.join("\n  - ")
    );
}

#[test]
fn pod_labels_that_miss_the_selector_are_caught() {
    let files = broken(
        "app.yaml",
        "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: app\n",
        "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: web\n",
    );
    assert_caught(
        &files,
        &["Deployment/app", "selector app.kubernetes.io/name=app"],
    );
    assert_caught(&files, &["Service/app-headless", "matches no pod template"]);
    assert_caught(
        &files,
        &["PodDisruptionBudget/app", "matches no pod template"],
    );
}

#[test]
fn a_probe_path_the_app_does_not_serve_is_caught() {
    let files = broken("app.yaml", "path: /readyz", "path: /ready");
    assert_caught(
        &files,
        &["readinessProbe must be httpGet /readyz, not /ready"],
    );
    assert_caught(&files, &["path /ready is not served on LISTEN_ADDR"]);
}

#[test]
fn a_liveness_probe_that_depends_on_redis_is_caught() {
    let files = broken("app.yaml", "path: /healthz", "path: /readyz");
    assert_caught(
        &files,
        &["livenessProbe must be httpGet /healthz, not /readyz"],
    );
}

#[test]
fn a_probe_on_the_wrong_port_is_caught() {
    let files = broken(
        "balancer.yaml",
        "              port: admin\n            initialDelaySeconds",
        "              port: http\n            initialDelaySeconds",
    );
    assert_caught(
        &files,
        &["livenessProbe path /healthz is not served on LISTEN_ADDR (port 8080)"],
    );
}

#[test]
fn a_container_port_that_differs_from_listen_addr_is_caught() {
    let files = broken("app.yaml", "containerPort: 8000", "containerPort: 8001");
    assert_caught(
        &files,
        &["LISTEN_ADDR listens on port 8000, which is not a containerPort"],
    );
    assert_caught(&files, &["readinessProbe probes port 8001"]);
}

#[test]
fn a_listen_addr_that_the_balancer_does_not_dial_is_caught() {
    let files = broken("app.yaml", "value: 0.0.0.0:8000", "value: 0.0.0.0:9000");
    assert_caught(
        &files,
        &[
            "UPSTREAMS entry app-headless:8000: port 8000 is not the port",
            "LISTEN_ADDR 0.0.0.0:9000",
        ],
    );
    assert_caught(
        &files,
        &["LISTEN_ADDR listens on port 9000, which is not a containerPort"],
    );
}

#[test]
fn an_env_var_the_app_does_not_read_is_caught() {
    let files = broken(
        "app.yaml",
        "name: SHUTDOWN_GRACE\n",
        "name: SHUTDOWN_GRACE_SECONDS\n",
    );
    assert_caught(
        &files,
        &["env SHUTDOWN_GRACE_SECONDS is not read by the app binary"],
    );
}

#[test]
fn an_env_var_the_balancer_does_not_read_is_caught() {
    let files = broken(
        "balancer.yaml",
        "name: RESOLVE_INTERVAL",
        "name: DNS_INTERVAL",
    );
    assert_caught(
        &files,
        &["env DNS_INTERVAL is not read by the balancer binary"],
    );
}

#[test]
fn a_misspelt_interpolation_is_caught() {
    let files = broken(
        "app.yaml",
        "redis://app:$(REDIS_APP_PASSWORD)@",
        "redis://app:$(REDIS_APP_PASS)@",
    );
    assert_caught(
        &files,
        &["env REDIS_URL uses $(REDIS_APP_PASS), which is not defined earlier"],
    );
    assert_caught(
        &files,
        &[
            "env REDIS_APP_PASSWORD is not read by the app binary and not used as $(REDIS_APP_PASSWORD)",
        ],
    );
}

#[test]
fn a_value_the_binary_rejects_is_caught() {
    let files = broken(
        "secret.yaml",
        "SESSION_SECRET: demo-only-secret-change-me-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ",
        "SESSION_SECRET: too-short",
    );
    assert_caught(
        &files,
        &[
            "the app binary rejects this configuration",
            "session-secret",
        ],
    );
}

#[test]
fn a_missing_secret_is_caught() {
    let files = broken(
        "app.yaml",
        "name: session-cluster\n                  key: SESSION_SECRET",
        "name: app-secrets\n                  key: SESSION_SECRET",
    );
    assert_caught(
        &files,
        &[
            "env SESSION_SECRET",
            "Secret `app-secrets`, which is not defined",
        ],
    );
}

#[test]
fn a_missing_secret_key_is_caught() {
    let files = broken("app.yaml", "key: SESSION_SECRET", "key: session-secret");
    assert_caught(
        &files,
        &["reads key `session-secret` of Secret `session-cluster`"],
    );
}

#[test]
fn upstreams_naming_a_normal_service_is_caught() {
    let files = broken("app.yaml", "  clusterIP: None\n", "");
    assert_caught(
        &files,
        &["UPSTREAMS entry app-headless:8000", "is not headless"],
    );
}

#[test]
fn upstreams_naming_no_service_or_the_wrong_port_is_caught() {
    let files = broken(
        "balancer.yaml",
        "value: app-headless:8000",
        "value: app:8000",
    );
    assert_caught(&files, &["UPSTREAMS entry app:8000: no Service `app`"]);
    let files = broken(
        "balancer.yaml",
        "value: app-headless:8000",
        "value: app-headless:80",
    );
    assert_caught(
        &files,
        &["UPSTREAMS entry app-headless:80: port 80 is not the port"],
    );
}

#[test]
fn a_manifest_left_out_of_the_kustomization_is_caught() {
    let files = broken("kustomization.yaml", "  - hpa.yaml\n", "");
    assert_caught(&files, &["hpa.yaml is not listed in kustomization.yaml"]);
}

#[test]
fn an_autoscaler_aimed_at_nothing_is_caught() {
    let files = broken("hpa.yaml", "    name: app\n", "    name: api\n");
    assert_caught(&files, &["scaleTargetRef Deployment/api is not defined"]);
}

#[test]
fn a_pod_that_may_run_as_root_is_caught() {
    let files = broken("balancer.yaml", "runAsNonRoot: true", "runAsNonRoot: false");
    assert_caught(
        &files,
        &["container balancer: runAsNonRoot: true is not set"],
    );
}

#[test]
fn invalid_yaml_is_caught() {
    let files = broken(
        "redis.yaml",
        "  serviceName: redis-headless\n",
        "  serviceName: [redis\n",
    );
    assert_caught(&files, &["redis.yaml: not valid YAML"]);
}
