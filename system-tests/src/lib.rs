//! Nothing to link: this member holds the tests that span crates, in `tests/`.
//!
//! - `browser`: headless Chromium clicks through the page at the balancer's port.
//! - `deploy`: the Kubernetes manifests checked against the binaries' own configuration.
//! - `cluster`: the balancer and the loadtest against real app replicas on a real Redis.
//!
//! Run with: `cargo test -p system-tests` (the `cluster` tests run the `loadtest` binary:
//! `cargo test --workspace` builds it, or `cargo build -p loadtest` first).
