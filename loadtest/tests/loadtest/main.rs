//! Integration tests of the loadtest against a deliberately broken counter server (in-process,
//! on 127.0.0.1:0) for faults a healthy cluster never shows, of its binary's exit codes and JSON,
//! and of its HTML report, opened in headless Chromium (`chromium` and `chromium-driver` must be
//! installed). Runs against real app replicas on a real redis-server are in
//! `system-tests/tests/cluster/via_loadtest`. Every load is bounded in count, and every run in
//! time.

mod fakes;
mod helpers;

mod audit;
mod broken;
mod exit_codes;
mod judged;
mod parallel;
mod report;
mod throughput;
