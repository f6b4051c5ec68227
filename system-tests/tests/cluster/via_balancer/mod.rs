//! The balancer in front of real replicas: rotation, discovery, failover, exactly-once
//! replays, early answers and header limits as the app really answers.

mod admin;
mod discovery;
mod early_answers;
mod exactly_once;
mod failover;
mod rfc9112;
mod round_robin;
