//! The manifests as shipped pass every check, and contain what the deployment promises.

use crate::{
    checks::check,
    helpers::{binaries, shipped_files},
    manifest::Manifests,
};

#[test]
fn shipped_manifests_pass_every_check() {
    // Arrange
    let files = shipped_files();

    // Act
    let problems = check(&files, &binaries());

    // Assert
    assert!(
        problems.is_empty(),
        "deploy/k8s has {} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

#[test]
fn shipped_manifests_hold_the_promised_objects() {
    let m = Manifests::parse(&shipped_files());

    let app = m.find("Deployment", "app").expect("Deployment app");
    assert_eq!(app.value["spec"]["replicas"], 3);
    let node_name = app.containers()[0]
        .env()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .cloned()
        .expect("NODE_NAME is set");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
        "NODE_NAME comes from the pod name"
    );

    let redis = m.find("StatefulSet", "redis").expect("StatefulSet redis");
    assert!(
        redis.value["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            .is_string(),
        "Redis keeps its data on a PVC"
    );
    let command = redis.containers()[0].value["command"].to_string();
    assert!(command.contains("/etc/redis/start.sh"), "{command}");
    assert!(command.contains("--appendonly"));
    // The app connects as the ACL's `app` user, never as the admin.
    let app_url = app.containers()[0]
        .env()
        .iter()
        .find(|e| e["name"] == "REDIS_URL")
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
        .expect("REDIS_URL");
    assert!(
        app_url.starts_with("redis://app:$(REDIS_APP_PASSWORD)@"),
        "{app_url}"
    );

    let balancer = m.find("Service", "balancer").expect("Service balancer");
    assert_eq!(balancer.value["spec"]["type"], "LoadBalancer");
    assert!(m.find("HorizontalPodAutoscaler", "app").is_some());
    assert!(m.secret("session-cluster").is_some());
}

#[test]
fn the_redis_acl_in_the_manifests_is_the_shipped_one() {
    let m = Manifests::parse(&shipped_files());
    let config = m
        .find("ConfigMap", "redis-acl")
        .expect("ConfigMap redis-acl");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/redis");
    for file in ["users.acl", "start.sh"] {
        let shipped = std::fs::read_to_string(format!("{dir}/{file}")).expect("deploy/redis file");
        assert_eq!(
            config.value["data"][file].as_str(),
            Some(shipped.as_str()),
            "redis.yaml's ConfigMap must carry deploy/redis/{file} verbatim"
        );
    }
}

#[test]
fn every_pod_runs_with_least_privilege() {
    let m = Manifests::parse(&shipped_files());
    for w in m.workloads() {
        let pod = w.pod_spec();
        // No pod calls the Kubernetes API.
        assert_eq!(
            pod["automountServiceAccountToken"],
            false,
            "{}: a service-account token is mounted",
            w.id()
        );
        // Non-root, with a high UID (no clash with a host or image account).
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{}", w.id());
        let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0);
        assert!(uid >= 10_000, "{}: runAsUser {uid}", w.id());
    }
    // Every image is pinned: a kustomization tag that is not `latest` for each container image.
    let pinned: Vec<(String, String)> = m.kustomization["images"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").to_owned(),
                e["newTag"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for c in m.workloads().flat_map(|w| w.containers()) {
        let image = c.value["image"].as_str().unwrap_or("");
        let tag = pinned
            .iter()
            .find(|(name, _)| name == c.image_name())
            .map(|(_, tag)| tag.as_str())
            .or_else(|| image.rsplit_once(':').map(|(_, t)| t))
            .unwrap_or("latest");
        assert!(
            !tag.is_empty() && tag != "latest",
            "{}: image {image} is not pinned",
            c.id()
        );
    }
}

#[test]
fn network_policies_let_only_the_balancer_reach_the_replicas_and_only_the_replicas_reach_redis() {
    let m = Manifests::parse(&shipped_files());
    let deny = m
        .find("NetworkPolicy", "default-deny-ingress")
        .expect("a default-deny policy");
    assert_eq!(deny.value["spec"]["podSelector"], serde_json::json!({}));
    assert!(
        deny.value["spec"]["ingress"].is_null(),
        "denies all ingress"
    );
    let only_from = |target: &str| -> Vec<String> {
        m.of_kind("NetworkPolicy")
            .filter(|p| {
                p.value["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == target
            })
            .flat_map(|p| {
                p.value["spec"]["ingress"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|rule| {
                rule["from"]
                    .as_array()
                    .and_then(|from| from.first())
                    .map(|f| {
                        f["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                            .as_str()
                            .unwrap_or("<any pod>")
                            .to_owned()
                    })
                    .unwrap_or_else(|| "<anyone>".to_owned())
            })
            .collect()
    };
    assert_eq!(only_from("app"), ["balancer"]);
    assert_eq!(only_from("redis"), ["app"]);
}
