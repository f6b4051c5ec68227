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
    assert!(command.contains("--requirepass") && command.contains("$(REDIS_PASSWORD)"));
    assert!(command.contains("--appendonly"));

    let balancer = m.find("Service", "balancer").expect("Service balancer");
    assert_eq!(balancer.value["spec"]["type"], "LoadBalancer");
    assert!(m.find("HorizontalPodAutoscaler", "app").is_some());
    assert!(m.secret("session-cluster").is_some());
}
