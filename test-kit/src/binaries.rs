//! The workspace's binaries as built by cargo, for tests in a package that does not own them
//! (cargo sets `CARGO_BIN_EXE_<name>` only for the package's own binaries).

use std::path::PathBuf;

/// The path of the workspace binary `name` in the profile directory of the running test
/// (`target/debug/<name>` for `cargo test`). `cargo test --workspace` builds it before any
/// test runs; when it is missing, the panic says how to build it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash>: the binaries sit in target/<profile>.
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test --workspace` (it builds every binary), or \
         `cargo build -p {name}` before `cargo test -p system-tests`",
        path.display()
    );
    path
}
