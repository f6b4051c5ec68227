//! Browser tests: Debian's `chromium`, driven through `chromedriver` (WebDriver) with fantoccini,
//! clicks through the page a person sees at the balancer's port, and watches the balancer's
//! dashboard at its admin port (always on an in-process cluster: the test stops and starts
//! replicas).
//!
//! Run with:
//!   cargo test -p system-tests --test browser                                      # in-process cluster
//!   BROWSER_TARGET=http://127.0.0.1:8080 cargo test -p system-tests --test browser # a running cluster (compose, local.sh)
//!
//! Without `BROWSER_TARGET` it starts its own cluster: a real `redis-server`, three replicas and
//! the real balancer on loopback ports. It needs `chromium` and `chromium-driver`
//! (`apt-get install -y chromium chromium-driver`) and fails, not skips, without them.
//! The screenshots go to `test-output/` at the workspace root (`browser-visit-again.png`,
//! `dashboard-*.png`).

mod dashboard;
mod helpers;
mod visit_again;
