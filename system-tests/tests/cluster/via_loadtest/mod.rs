//! The loadtest against real replicas: it passes on shared sessions, catches per-replica
//! sessions and lost updates, and sends exactly what it was asked.

mod consistency;
mod parallel;
mod throughput;
