//! Reading `deploy/k8s` as `kubectl apply -k` would: the kustomization's `resources`, each file
//! split into its YAML documents, each document kept as a JSON value plus the file it came from.
//!
//! Only the parts the checks need get typed views (pod templates, containers, ports, Secrets);
//! everything else stays a `serde_json::Value`, so a manifest field we do not check never makes
//! the parser fail.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The kustomization file; the only file that is not itself a resource.
pub const KUSTOMIZATION: &str = "kustomization.yaml";

/// Workload kinds whose `spec.template` is a pod template.
const WORKLOADS: [&str; 5] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

/// One YAML document of one manifest file.
#[derive(Debug)]
pub struct Doc {
    /// File name inside `deploy/k8s`, for messages.
    pub file: String,
    /// The document.
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    /// `file: Kind/name`, how every message names a document.
    pub fn id(&self) -> String {
        format!("{}: {}/{}", self.file, self.kind(), self.name())
    }

    pub fn is_workload(&self) -> bool {
        WORKLOADS.contains(&self.kind())
    }

    /// The pod template's labels (workloads only).
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(&self.value["spec"]["template"]["metadata"]["labels"])
    }

    /// The pod spec (workloads only).
    pub fn pod_spec(&self) -> &Value {
        &self.value["spec"]["template"]["spec"]
    }

    /// Containers and init containers of the pod template.
    pub fn containers(&self) -> Vec<Container<'_>> {
        let spec = self.pod_spec();
        ["containers", "initContainers"]
            .iter()
            .filter_map(|field| spec[*field].as_array())
            .flatten()
            .map(|value| Container { doc: self, value })
            .collect()
    }
}

/// One container of a workload's pod template.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    pub doc: &'a Doc,
    pub value: &'a Value,
}

impl<'a> Container<'a> {
    pub fn name(&self) -> &'a str {
        self.value["name"].as_str().unwrap_or("")
    }

    /// `file: Kind/name container c`, how messages name a container.
    pub fn id(&self) -> String {
        format!("{} container {}", self.doc.id(), self.name())
    }

    /// The image without tag or digest: `session-cluster/app:1.2` → `session-cluster/app`.
    pub fn image_name(&self) -> &'a str {
        let image = self.value["image"].as_str().unwrap_or("");
        let image = image.split('@').next().unwrap_or(image);
        match image.rfind(':') {
            Some(colon) if !image[colon..].contains('/') => &image[..colon],
            _ => image,
        }
    }

    /// The `env` list, in order (order matters for `$(VAR)` expansion).
    pub fn env(&self) -> &'a [Value] {
        self.value["env"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// `(name, containerPort)` of every declared port.
    pub fn ports(&self) -> Vec<(Option<&'a str>, u64)> {
        self.value["ports"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|p| Some((p["name"].as_str(), p["containerPort"].as_u64()?)))
            .collect()
    }

    /// A probe's or Service's port (a number or a port name) as a number, if it resolves.
    pub fn resolve_port(&self, port: &Value) -> Option<u64> {
        match port {
            Value::Number(n) => n.as_u64(),
            Value::String(name) => self
                .ports()
                .into_iter()
                .find(|(n, _)| *n == Some(name.as_str()))
                .map(|(_, number)| number),
            _ => None,
        }
    }
}

/// Every document of the kustomization's resources, plus what went wrong reading them.
#[derive(Debug, Default)]
pub struct Manifests {
    pub docs: Vec<Doc>,
    /// The kustomization itself (not a resource).
    pub kustomization: Value,
    pub problems: Vec<String>,
}

impl Manifests {
    /// Parses `files` (name → text) the way `kubectl apply -k` reads the directory: only the
    /// files `kustomization.yaml` lists are applied, so a manifest it does not list is reported
    /// (it would be silently left out), and so is a listed file that does not exist.
    pub fn parse(files: &BTreeMap<String, String>) -> Manifests {
        let mut out = Manifests::default();
        let Some(text) = files.get(KUSTOMIZATION) else {
            out.problems.push(format!("{KUSTOMIZATION} is missing"));
            return out;
        };
        match parse_documents(text) {
            Ok(mut docs) if docs.len() == 1 => out.kustomization = docs.remove(0),
            Ok(_) => out.problems.push(format!(
                "{KUSTOMIZATION}: expected exactly one YAML document"
            )),
            Err(err) => out.problems.push(format!("{KUSTOMIZATION}: {err}")),
        }
        let resources: Vec<String> = out.kustomization["resources"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        for name in files.keys().filter(|n| *n != KUSTOMIZATION) {
            if !resources.contains(name) {
                out.problems.push(format!(
                    "{name} is not listed in {KUSTOMIZATION} `resources`, so `kubectl apply -k` skips it"
                ));
            }
        }
        for name in &resources {
            let Some(text) = files.get(name) else {
                out.problems.push(format!(
                    "{KUSTOMIZATION} lists `{name}`, which does not exist"
                ));
                continue;
            };
            match parse_documents(text) {
                Ok(docs) => out.docs.extend(docs.into_iter().map(|value| Doc {
                    file: name.clone(),
                    value,
                })),
                Err(err) => out.problems.push(format!("{name}: {err}")),
            }
        }
        for doc in &out.docs {
            if doc.kind().is_empty() || doc.name().is_empty() {
                out.problems.push(format!(
                    "{}: a document without kind or metadata.name",
                    doc.file
                ));
            }
        }
        out
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Doc> + 'a {
        self.docs.iter().filter(move |d| d.kind() == kind)
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Doc> {
        self.docs
            .iter()
            .find(|d| d.kind() == kind && d.name() == name)
    }

    pub fn workloads(&self) -> impl Iterator<Item = &Doc> {
        self.docs.iter().filter(|d| d.is_workload())
    }

    /// Workloads whose pod labels carry every label of `selector`.
    pub fn selected_by(&self, selector: &BTreeMap<String, String>) -> Vec<&Doc> {
        self.workloads()
            .filter(|w| is_subset(selector, &w.pod_labels()))
            .collect()
    }

    /// A Secret's keys and values (`stringData` as is, `data` base64-decoded).
    pub fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let doc = self.find("Secret", name)?;
        let mut keys = string_map(&doc.value["stringData"]);
        for (key, encoded) in string_map(&doc.value["data"]) {
            let decoded = decode_base64(&encoded)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            keys.entry(key).or_insert(decoded);
        }
        Some(keys)
    }
}

/// Every non-empty document of a multi-document YAML text.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// A YAML mapping of strings (labels, selectors, Secret data) as a sorted map.
pub fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// True when every entry of `small` is in `big`.
pub fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// Standard base64 (Secret `data`), padding optional. `None` on any invalid character.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[test]
fn base64_of_secret_data_decodes() {
    assert_eq!(decode_base64("c2VjcmV0").as_deref(), Some(&b"secret"[..]));
    assert_eq!(decode_base64("YQ==").as_deref(), Some(&b"a"[..]));
    assert_eq!(decode_base64("!!"), None);
}
