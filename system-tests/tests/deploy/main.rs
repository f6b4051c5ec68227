//! Offline validation of the Kubernetes manifests in `deploy/k8s` (no cluster, no kubectl).
//!
//! The manifests are parsed as `kubectl apply -k` reads them and cross-checked against each
//! other and against the binaries themselves: env var names and values go through the app's and
//! the balancer's own clap definitions, probe paths are requested from a real replica and a real
//! balancer. A mismatch fails with one sentence per problem naming file, object and field.
//!
//! Run with: `cargo test -p system-tests --test deploy`

mod helpers;

mod broken;
mod checks;
mod compose;
mod containers;
mod manifest;
mod routes;
mod shipped;
