//! Integration tests of the loadtest against real app replicas on a real redis-server (all
//! in-process, on 127.0.0.1:0), plus a deliberately broken counter server for faults a healthy
//! cluster never shows. Every load is bounded in count, and every run in time. The HTML report
//! is opened in headless Chromium (`chromium` and `chromium-driver` must be installed).

mod browser;
mod fakes;
mod helpers;

mod audit;
mod broken;
mod consistency;
mod exit_codes;
mod judged;
mod parallel;
mod report;
mod throughput;
