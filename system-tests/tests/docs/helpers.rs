//! The repository's documents and the crates' configurations, read the way the checks need
//! them.

use std::path::{Path, PathBuf};

/// The repository root (this crate's parent directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("system-tests sits in the workspace root")
        .to_path_buf()
}

/// One Markdown document: its path relative to the root, and its text.
pub struct Doc {
    pub path: PathBuf,
    pub text: String,
}

impl Doc {
    /// The directory its relative links start from, relative to the root.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }
}

/// Reads `relative` (to the root).
pub fn doc(relative: &str) -> Doc {
    let path = PathBuf::from(relative);
    let text = std::fs::read_to_string(root().join(&path))
        .unwrap_or_else(|err| panic!("{relative}: {err}"));
    Doc { path, text }
}

/// Every README the repository has (the root's, each top-level directory's, each of
/// `deploy/*/`) and every document in `docs/`.
pub fn all_docs() -> Vec<Doc> {
    let root = root();
    let mut paths = vec![PathBuf::from("README.md")];
    let mut push_readmes_below = |dir: &Path| {
        for entry in std::fs::read_dir(root.join(dir)).expect("list a directory") {
            let name = entry.expect("directory entry").file_name();
            let readme = dir.join(&name).join("README.md");
            if root.join(&readme).is_file() {
                paths.push(readme);
            }
        }
    };
    push_readmes_below(Path::new(""));
    push_readmes_below(Path::new("deploy"));
    for entry in std::fs::read_dir(root.join("docs")).expect("list docs/") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            let name = path.file_name().expect("a file name");
            paths.push(Path::new("docs").join(name));
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(root.join(&path))
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            Doc { path, text }
        })
        .collect()
}

/// One setting a binary reads from the environment, as its clap definition states it.
#[derive(Debug)]
pub struct Setting {
    /// The environment variable.
    pub env: String,
    /// The default clap fills in, its values joined with `,`; `None` when there is none.
    pub default: Option<String>,
}

/// Every argument of `command` and its subcommands that reads an environment variable.
pub fn settings(command: &clap::Command) -> Vec<Setting> {
    let mut settings: Vec<Setting> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let default = (!defaults.is_empty()).then(|| defaults.join(","));
            Some(Setting { env, default })
        })
        .collect();
    for sub in command.get_subcommands() {
        settings.extend(self::settings(sub));
    }
    settings
}
