//! The binary itself: a bad value stops it with the variable's name and exit code 2,
//! before anything binds.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs the binary with one variable set to `value`; returns its exit code and stderr.
/// A binary that is still running after 10 s (it accepted the value) is killed and fails.
fn run_with_env(name: &str, value: &str) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_app"))
        // Safe defaults first, so that a value that were accepted would fail fast
        // elsewhere rather than serve; then the variable under test overrides its default.
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env(name, value)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the app binary runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}={value} was accepted: the app kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), stderr)
}

#[test]
fn bad_environment_values_exit_2_naming_the_variable() {
    for (name, value) in [
        ("SESSION_TTL", "an hour"),
        ("LISTEN_ADDR", "everywhere"),
        ("REDIS_URL", "mysql://db"),
        ("SESSION_SECRET", "too-short"),
        ("SESSION_STORE", "disk"),
        ("SESSION_LOCK", "sometimes"),
        ("REDIS_TIMEOUT", "0ms"),
        ("SHUTDOWN_DELAY", "-1"),
        ("SHUTDOWN_DELAY", "2"),
        ("SESSION_LOCK_LEASE", "2000"),
        ("SESSION_KEY_PREFIX", ""),
        ("SESSION_KEY_PREFIX", "sessions:{x}"),
        ("SESSION_KEY_PREFIX", "my sessions:"),
        ("SESSION_CODEC", "yaml"),
    ] {
        let (code, stderr) = run_with_env(name, value);
        assert_eq!(code, Some(2), "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}

#[test]
fn a_renamed_variable_still_set_exits_2_naming_its_successor() {
    for (old, value, new) in [
        ("SESSION_LOCK_LEASE_MS", "2000", "SESSION_LOCK_LEASE=2000ms"),
        ("SESSION_LOCK_WAIT_MS", "5000", "SESSION_LOCK_WAIT=5000ms"),
        ("REDIS_TIMEOUT_MS", "500", "REDIS_TIMEOUT=500ms"),
    ] {
        let (code, stderr) = run_with_env(old, value);
        assert_eq!(code, Some(2), "{old}={value}: {stderr}");
        assert!(stderr.contains(old), "{old}={value}: {stderr}");
        assert!(stderr.contains(new), "{old}={value}: {stderr}");
    }
}

#[test]
fn a_duration_without_its_unit_exits_2_showing_the_fix() {
    let (code, stderr) = run_with_env("SESSION_TTL", "3600");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SESSION_TTL"), "{stderr}");
    assert!(stderr.contains("write 3600s"), "{stderr}");
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    // Arrange: the binary with its log on a pipe (as under `docker compose logs > file`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_app"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the app binary runs");

    // Act: let it log its start, then stop it.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Assert
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\x1b'), "{log:?}");
}
