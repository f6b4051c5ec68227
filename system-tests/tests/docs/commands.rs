//! Every `cargo run … -p loadtest -- <flags>` and `cargo run … -p app -- <flags>` the docs
//! show parses with that binary's own `Config`: a renamed or removed flag, or a value the
//! binary would refuse, fails here instead of in a reader's terminal.

use clap::Parser;

use crate::helpers::all_docs;
use crate::markdown::{code_spans, fenced_lines};

/// The flags after `--` of a `cargo run` of `package` on `line`, split on whitespace, up to a
/// `#` comment; `None` when the line runs something else, or shows a placeholder (`<port>`,
/// `…`, `$VAR`) rather than a value.
fn invocation(line: &str, package: &str) -> Option<Vec<String>> {
    let code = line.split(" #").next()?;
    if !code.contains("cargo run") {
        return None;
    }
    let words: Vec<&str> = code.split_whitespace().collect();
    let selects = words
        .windows(2)
        .any(|pair| pair[0] == "-p" && pair[1] == package);
    if !selects {
        return None;
    }
    let flags: Vec<String> = match words.iter().position(|word| *word == "--") {
        Some(dash) => words[dash + 1..].iter().map(|w| (*w).to_owned()).collect(),
        None => Vec::new(),
    };
    let placeholder = flags.iter().any(|flag| flag.contains(['<', '…', '$', '[']));
    (!placeholder).then_some(flags)
}

/// Every documented invocation of `package`, with the document that shows it.
fn invocations(package: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for doc in all_docs() {
        let lines = fenced_lines(&doc.text)
            .into_iter()
            .chain(code_spans(&doc.text));
        for line in lines {
            if let Some(flags) = invocation(&line, package) {
                found.push((doc.path.display().to_string(), flags));
            }
        }
    }
    found
}

fn refused<C: Parser>(package: &str) -> Vec<String> {
    invocations(package)
        .into_iter()
        .filter_map(|(doc, flags)| {
            let args = std::iter::once(package.to_owned()).chain(flags.iter().cloned());
            C::try_parse_from(args)
                .err()
                .map(|err| format!("{doc}: `{package} {}`: {err}", flags.join(" ")))
        })
        .collect()
}

#[test]
fn the_loadtest_commands_in_the_docs_parse() {
    assert!(
        !invocations("loadtest").is_empty(),
        "the docs show no `cargo run … -p loadtest` at all"
    );
    let refused = refused::<loadtest::Config>("loadtest");
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

#[test]
fn the_app_commands_in_the_docs_parse() {
    let refused = refused::<app::Config>("app");
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

#[test]
fn an_invocation_is_read_up_to_its_comment() {
    assert_eq!(
        invocation(
            "cargo run --release -p loadtest -- --parallel 16   # one session",
            "loadtest"
        ),
        Some(vec!["--parallel".to_owned(), "16".to_owned()])
    );
    assert_eq!(
        invocation("cargo run --release -p loadtest", "loadtest"),
        Some(vec![])
    );
    assert_eq!(
        invocation(
            "cargo run -p loadtest -- --target http://127.0.0.1:<port>",
            "loadtest"
        ),
        None
    );
    assert_eq!(invocation("cargo test -p loadtest", "loadtest"), None);
}
