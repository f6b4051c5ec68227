//! The HTTP routes, grouped by who they are for.
//!
//! - [`page`]: the HTML page a person sees at the balancer's port.
//! - [`api`]: the seed-compatible `/session` and the JSON API for programs.
//! - [`health`]: liveness and readiness for balancers and orchestrators.

pub mod api;
pub mod health;
pub mod page;
