//! Every repository path a README or a document in `docs/` names exists.
//!
//! What counts as naming a path:
//! - a link target (`[text](app/README.md)`), relative to the document's directory; web
//!   addresses and `#anchors` are not paths;
//! - a code span or a word in a code block that starts with a top-level entry of the
//!   repository (`app/src/writer/`, `deploy/local.sh`), relative to the root;
//! - a code span that is a bare file name with an extension this repository ships
//!   (`sentinel.sh`, `bounds.rs`): some file of the repository has that name.

use std::collections::BTreeSet;
use std::path::Path;

use crate::helpers::{Doc, all_docs, root};
use crate::markdown::{code_spans, fenced_lines, link_targets};

/// Extensions of the files a bare name in a code span is taken to be.
const FILE_EXTENSIONS: [&str; 8] = ["md", "yml", "yaml", "toml", "sh", "acl", "lock", "rs"];

/// Top-level entries that are not the repository's own (build output, test output).
const NOT_SOURCES: [&str; 3] = ["target", "test-output", ".git"];

/// The repository's top-level entries (`app`, `deploy`, `BENCHMARKS.md`, ...).
fn top_level() -> Vec<String> {
    std::fs::read_dir(root())
        .expect("list the root")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !NOT_SOURCES.contains(&name.as_str()))
        .collect()
}

/// The names of every file in the repository (build and test output left out).
fn file_names() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("list a directory") {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() {
                if !NOT_SOURCES.contains(&name.as_str()) {
                    walk(&path, names);
                }
            } else {
                names.insert(name);
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(&root(), &mut names);
    names
}

/// `word` as a repository path, if it looks like one: `name/name...`, optionally ending in
/// `/`, whose first part is a top-level entry or whose last part is a file name with an
/// extension this repository ships (`shared/REFERENCE.md`); build and test output aside.
fn repo_path<'a>(word: &'a str, top: &[String]) -> Option<&'a str> {
    let word = word
        .trim_matches(['"', '\'', '(', ')'])
        .trim_end_matches([',', ';', ':', '.']);
    let shaped = word.contains('/')
        && !word.starts_with('/')
        && !word.contains("//")
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    let first = word.split('/').next()?;
    let last = word.rsplit('/').next()?;
    let ours = top.iter().any(|entry| entry == first) || is_file_name(last);
    (shaped && ours && !NOT_SOURCES.contains(&first)).then_some(word)
}

/// Every path `doc` names that does not exist, one line each.
fn missing_in(doc: &Doc, top: &[String], files: &BTreeSet<String>) -> Vec<String> {
    let root = root();
    // A path is read from the document's directory, then from the root.
    let here = root.join(doc.dir());
    let gone = |relative_to: &Path, path: &str| {
        let found = relative_to.join(path).exists() || here.join(path).exists();
        (!found).then(|| format!("{} names {path}, which does not exist", doc.path.display()))
    };
    let mut missing = Vec::new();
    for target in link_targets(&doc.text) {
        let path = target.split('#').next().unwrap_or_default();
        let web = ["http://", "https://", "mailto:"]
            .iter()
            .any(|scheme| target.starts_with(scheme));
        if !web && !path.is_empty() {
            missing.extend(gone(&root.join(doc.dir()), path));
        }
    }
    for span in code_spans(&doc.text) {
        if let Some(path) = repo_path(&span, top) {
            missing.extend(gone(&root, path));
        } else if is_file_name(&span) && !files.contains(&span) {
            missing.push(format!(
                "{} names {span}, and no file of the repository has that name",
                doc.path.display()
            ));
        }
    }
    for line in fenced_lines(&doc.text) {
        let code = line.split(" #").next().unwrap_or_default();
        for word in code.split_whitespace() {
            // `VAR=path` (BIN_DIR=target/release) names the value.
            let word = word.rsplit('=').next().unwrap_or(word);
            if let Some(path) = repo_path(word, top) {
                missing.extend(gone(&root, path));
            }
        }
    }
    missing
}

fn is_file_name(span: &str) -> bool {
    let Some((stem, extension)) = span.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && FILE_EXTENSIONS.contains(&extension)
}

#[test]
fn every_path_the_docs_name_exists() {
    let top = top_level();
    let docs = all_docs();
    for expected in ["README.md", "app/README.md", "balancer/README.md"] {
        assert!(
            docs.iter().any(|doc| doc.path == Path::new(expected)),
            "{expected} is not among the documents checked"
        );
    }
    let files = file_names();
    let missing: Vec<String> = docs
        .iter()
        .flat_map(|doc| missing_in(doc, &top, &files))
        .collect();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn a_path_that_is_gone_is_reported() {
    let top = top_level();
    let files = file_names();
    let doc = Doc {
        path: "README.md".into(),
        text: "See [the app](app/README.md), `deploy/nowhere.sh`, `gone.rs`, `local.sh`, `shared/REFERENCE.md` and\n\
               ```sh\nBIN_DIR=deploy/gone deploy/local.sh 3\n```\n[a site](https://example.com)"
            .to_owned(),
    };
    assert_eq!(
        missing_in(&doc, &top, &files),
        vec![
            "README.md names deploy/nowhere.sh, which does not exist",
            "README.md names gone.rs, and no file of the repository has that name",
            "README.md names shared/REFERENCE.md, which does not exist",
            "README.md names deploy/gone, which does not exist",
        ]
    );
}

#[test]
fn words_that_only_look_like_paths_are_left_alone() {
    let top = top_level();
    for word in [
        "session:{<id>}",
        "redis-sentinel://h:26379",
        "/readyz",
        "http://127.0.0.1:8080/",
        "target/release",
    ] {
        assert_eq!(repo_path(word, &top), None, "{word}");
    }
    assert_eq!(repo_path("app/src/writer/", &top), Some("app/src/writer/"));
}
