//! The manifest checker: every rule that ties one Kubernetes object to another (selectors,
//! Service ports, Secret references, the HPA's target, the kustomization's images) and the
//! baseline every pod must meet (non-root, resources). Per-container rules, which compare a
//! container with the binary it runs, are in `containers.rs`.
//!
//! `check` returns one plain sentence per problem, naming the file and object, so a failing CI
//! run says what to fix without reading this code.

use std::collections::BTreeMap;

use crate::{
    containers,
    helpers::Binary,
    manifest::{Doc, Manifests, string_map},
};

/// Every problem found in `files` (name → YAML text, `kustomization.yaml` included).
pub fn check(files: &BTreeMap<String, String>, binaries: &[Binary]) -> Vec<String> {
    let manifests = Manifests::parse(files);
    let mut problems = manifests.problems.clone();
    workload_selectors(&manifests, &mut problems);
    services(&manifests, &mut problems);
    selecting_objects(&manifests, &mut problems);
    secret_references(&manifests, &mut problems);
    autoscalers(&manifests, &mut problems);
    pod_baseline(&manifests, &mut problems);
    images(&manifests, &mut problems);
    containers::check(&manifests, binaries, &mut problems);
    problems
}

/// `spec.selector.matchLabels` must be non-empty and carried by the pod template, or the
/// API server rejects the Deployment (or, for a subset mistake, it manages no pods).
fn workload_selectors(m: &Manifests, problems: &mut Vec<String>) {
    for w in m.workloads() {
        let selector = &w.value["spec"]["selector"];
        if selector.get("matchExpressions").is_some() {
            problems.push(format!(
                "{}: use only spec.selector.matchLabels (this checker does not evaluate matchExpressions)",
                w.id()
            ));
        }
        let wanted = string_map(&selector["matchLabels"]);
        let labels = w.pod_labels();
        if wanted.is_empty() {
            problems.push(format!("{}: spec.selector.matchLabels is empty", w.id()));
        }
        for (key, value) in &wanted {
            if labels.get(key) != Some(value) {
                problems.push(format!(
                    "{}: selector {key}={value} does not match the pod template labels {labels:?}",
                    w.id()
                ));
            }
        }
    }
}

/// A Service must select pods of some workload here, and its targetPort must be a port those
/// pods declare; otherwise it has no endpoints and every connection to it fails.
fn services(m: &Manifests, problems: &mut Vec<String>) {
    for svc in m.of_kind("Service") {
        let selector = string_map(&svc.value["spec"]["selector"]);
        if selector.is_empty() {
            problems.push(format!("{}: has no selector", svc.id()));
            continue;
        }
        let selected = m.selected_by(&selector);
        if selected.is_empty() {
            problems.push(format!(
                "{}: selector {selector:?} matches no pod template in these manifests",
                svc.id()
            ));
        }
        let ports = svc.value["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ports.is_empty() {
            problems.push(format!("{}: declares no ports", svc.id()));
        }
        for port in &ports {
            let target = port.get("targetPort").unwrap_or(&port["port"]);
            for w in &selected {
                if !w
                    .containers()
                    .iter()
                    .any(|c| c.resolve_port(target).is_some())
                {
                    problems.push(format!(
                        "{}: targetPort {target} is not a containerPort (number or name) of {}",
                        svc.id(),
                        w.id()
                    ));
                }
            }
        }
    }
    for sts in m.of_kind("StatefulSet") {
        let governing = sts.value["spec"]["serviceName"].as_str().unwrap_or("");
        match m.find("Service", governing) {
            Some(svc) if is_headless(svc) => {}
            Some(_) => problems.push(format!(
                "{}: serviceName {governing} must be a headless Service (clusterIP: None)",
                sts.id()
            )),
            None => problems.push(format!(
                "{}: serviceName `{governing}` names no Service in these manifests",
                sts.id()
            )),
        }
    }
}

/// PodDisruptionBudgets select pods too; one that selects none protects nothing.
fn selecting_objects(m: &Manifests, problems: &mut Vec<String>) {
    for pdb in m.of_kind("PodDisruptionBudget") {
        let selector = string_map(&pdb.value["spec"]["selector"]["matchLabels"]);
        if selector.is_empty() || m.selected_by(&selector).is_empty() {
            problems.push(format!(
                "{}: selector {selector:?} matches no pod template in these manifests",
                pdb.id()
            ));
        }
    }
}

/// Every Secret a pod reads (env, envFrom, volumes) must exist here, with the key it reads:
/// a missing one leaves the pod in CreateContainerConfigError.
fn secret_references(m: &Manifests, problems: &mut Vec<String>) {
    let mut check = |owner: String, name: &str, key: Option<&str>, optional: bool| {
        if optional {
            return;
        }
        match (m.secret(name), key) {
            (None, _) => problems.push(format!(
                "{owner}: reads Secret `{name}`, which is not defined in these manifests"
            )),
            (Some(keys), Some(key)) if !keys.contains_key(key) => problems.push(format!(
                "{owner}: reads key `{key}` of Secret `{name}`, which has only {:?}",
                keys.keys().collect::<Vec<_>>()
            )),
            _ => {}
        }
    };
    for w in m.workloads() {
        for c in w.containers() {
            for env in c.env() {
                let r = &env["valueFrom"]["secretKeyRef"];
                if let Some(name) = r["name"].as_str() {
                    let owner = format!("{} env {}", c.id(), env["name"].as_str().unwrap_or("?"));
                    check(owner, name, r["key"].as_str(), r["optional"] == true);
                }
            }
            for from in c.value["envFrom"].as_array().cloned().unwrap_or_default() {
                if let Some(name) = from["secretRef"]["name"].as_str() {
                    check(c.id(), name, None, from["secretRef"]["optional"] == true);
                }
            }
        }
        for volume in w.pod_spec()["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let secret = &volume["secret"];
            if let Some(name) = secret["secretName"].as_str() {
                let owner = format!("{} volume {}", w.id(), volume["name"]);
                let optional = secret["optional"] == true;
                let items = secret["items"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    check(owner.clone(), name, None, optional);
                }
                for item in items {
                    check(owner.clone(), name, item["key"].as_str(), optional);
                }
            }
        }
    }
}

/// An HPA must target a workload defined here, and CPU utilisation is computed against the
/// containers' CPU requests: without them the HPA reports `<unknown>` and never scales.
fn autoscalers(m: &Manifests, problems: &mut Vec<String>) {
    for hpa in m.of_kind("HorizontalPodAutoscaler") {
        let target = &hpa.value["spec"]["scaleTargetRef"];
        let kind = target["kind"].as_str().unwrap_or("");
        let name = target["name"].as_str().unwrap_or("");
        let Some(workload) = m.find(kind, name) else {
            problems.push(format!(
                "{}: scaleTargetRef {kind}/{name} is not defined in these manifests",
                hpa.id()
            ));
            continue;
        };
        let metrics = hpa.value["spec"]["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let uses_cpu = metrics
            .iter()
            .any(|metric| metric["resource"]["name"] == "cpu");
        for c in workload.containers() {
            if uses_cpu && c.value["resources"]["requests"]["cpu"].is_null() {
                problems.push(format!(
                    "{}: scales on CPU but {} has no resources.requests.cpu",
                    hpa.id(),
                    c.id()
                ));
            }
        }
        if hpa.value["spec"]["minReplicas"].as_u64() > hpa.value["spec"]["maxReplicas"].as_u64() {
            problems.push(format!("{}: minReplicas is above maxReplicas", hpa.id()));
        }
    }
}

/// Every pod runs as non-root without privilege escalation, and every container has requests
/// (for scheduling) and a memory limit (so a leak kills one container, not the node).
fn pod_baseline(m: &Manifests, problems: &mut Vec<String>) {
    for w in m.workloads() {
        let pod_non_root = w.pod_spec()["securityContext"]["runAsNonRoot"] == true;
        for c in w.containers() {
            let sc = &c.value["securityContext"];
            if !pod_non_root && sc["runAsNonRoot"] != true {
                problems.push(format!("{}: runAsNonRoot: true is not set", c.id()));
            }
            if sc["allowPrivilegeEscalation"] != false {
                problems.push(format!(
                    "{}: securityContext.allowPrivilegeEscalation must be false",
                    c.id()
                ));
            }
            let resources = &c.value["resources"];
            for (field, path) in [
                ("requests.cpu", &resources["requests"]["cpu"]),
                ("requests.memory", &resources["requests"]["memory"]),
                ("limits.memory", &resources["limits"]["memory"]),
            ] {
                if path.is_null() {
                    problems.push(format!("{}: resources.{field} is not set", c.id()));
                }
            }
        }
    }
}

/// A kustomization `images` entry whose name matches no container silently changes nothing.
fn images(m: &Manifests, problems: &mut Vec<String>) {
    let used: Vec<&str> = m
        .workloads()
        .flat_map(Doc::containers)
        .map(|c| c.image_name())
        .collect();
    for entry in m.kustomization["images"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = entry["name"].as_str().unwrap_or("");
        if !used.contains(&name) {
            problems.push(format!(
                "kustomization.yaml: images entry `{name}` matches no container image ({used:?})"
            ));
        }
    }
}

pub fn is_headless(svc: &Doc) -> bool {
    svc.value["spec"]["clusterIP"] == "None"
}
