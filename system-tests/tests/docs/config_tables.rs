//! Each crate README's configuration table against the crate's clap `Config`: every variable
//! the table names exists with the default it states, and every variable the binary reads is
//! in the table.
//!
//! A configuration table is any pipe table whose header has a column titled `Variable` or
//! `Env` (or `Environment`, `Env var`) and one starting with `Default`. A row may name several
//! variables in its variable cell (`` `LOADTEST_PATH`, `LOADTEST_METHOD` ``); its default cell
//! then holds one default per variable, comma-separated, or one that applies to all. A default
//! matches when it is clap's default as written, the same boolean (`on`/`true`, `off`/`false`),
//! or the same duration (`10s` and `10 s`); a setting without a clap default must not show a
//! single literal value (`–`, `unset` or a phrase such as "the hostname" are fine).

use std::collections::BTreeMap;

use clap::CommandFactory;

use crate::helpers::{Setting, doc, settings};
use crate::markdown::{spans_of, tables};

/// One variable as a README's table states it.
struct Row {
    env: String,
    default: String,
}

/// The rows of every configuration table in `text` (the file `readme`); fails when there is
/// none.
fn documented(readme: &str, text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut found = false;
    for table in tables(text) {
        let env_col = table.column(|title| {
            matches!(
                title,
                "variable" | "env" | "environment" | "env var" | "environment variable"
            )
        });
        let default_col = table.column(|title| title.starts_with("default"));
        let (Some(env_col), Some(default_col)) = (env_col, default_col) else {
            continue;
        };
        found = true;
        for cells in &table.rows {
            let (Some(env_cell), Some(default_cell)) = (cells.get(env_col), cells.get(default_col))
            else {
                panic!("{readme}: a configuration row with missing cells: {cells:?}");
            };
            let envs: Vec<String> = spans_of(env_cell)
                .into_iter()
                .filter(|name| is_env_name(name))
                .collect();
            assert!(
                !envs.is_empty(),
                "{readme}: a configuration row names no variable in backticks: {cells:?}"
            );
            let defaults: Vec<&str> = default_cell.split(", ").collect();
            for (i, env) in envs.iter().enumerate() {
                let default = if defaults.len() == envs.len() {
                    defaults[i]
                } else {
                    default_cell.as_str()
                };
                rows.push(Row {
                    env: env.clone(),
                    default: default.trim().to_owned(),
                });
            }
        }
    }
    assert!(
        found,
        "{readme} has no configuration table (a pipe table with a `Variable` or `Env` column and a `Default` column)"
    );
    rows
}

fn is_env_name(name: &str) -> bool {
    name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A default cell as a value: the text of a cell that is one code span, else the cell.
fn literal(cell: &str) -> Option<String> {
    let spans = spans_of(cell);
    let single_span = spans.len() == 1 && cell.trim() == format!("`{}`", spans[0]);
    single_span.then(|| spans[0].clone())
}

fn same_default(stated: &str, clap: &str) -> bool {
    let stated = literal(stated).unwrap_or_else(|| stated.to_owned());
    if stated == clap {
        return true;
    }
    let boolean = |v: &str| match v.to_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    };
    if let (Some(a), Some(b)) = (boolean(&stated), boolean(clap)) {
        return a == b;
    }
    match (
        humantime::parse_duration(&stated),
        humantime::parse_duration(clap),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Every mismatch between the table in `text` (the file `readme`) and `command`'s settings,
/// one line each.
fn mismatches(readme: &str, text: &str, command: &clap::Command) -> Vec<String> {
    let rows = documented(readme, text);
    let code: BTreeMap<String, Setting> = settings(command)
        .into_iter()
        .map(|setting| (setting.env.clone(), setting))
        .collect();
    let mut problems = Vec::new();
    for row in &rows {
        match code.get(&row.env) {
            None => problems.push(format!(
                "{readme} documents {}, which the {} binary does not read",
                row.env,
                command.get_name()
            )),
            Some(Setting {
                default: Some(default),
                ..
            }) if !same_default(&row.default, default) => problems.push(format!(
                "{readme}: {} defaults to `{default}`, the table says {}",
                row.env, row.default
            )),
            Some(Setting { default: None, .. }) if literal(&row.default).is_some() => problems
                .push(format!(
                    "{readme}: {} has no default in the code, the table says {}",
                    row.env, row.default
                )),
            Some(_) => {}
        }
    }
    for env in code.keys() {
        if !rows.iter().any(|row| &row.env == env) {
            problems.push(format!(
                "{readme} does not document {env}, which the {} binary reads",
                command.get_name()
            ));
        }
    }
    problems
}

#[test]
fn the_app_readme_table_is_the_apps_configuration() {
    let problems = mismatches(
        "app/README.md",
        &doc("app/README.md").text,
        &app::Config::command(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_balancer_readme_table_is_the_balancers_configuration() {
    let problems = mismatches(
        "balancer/README.md",
        &doc("balancer/README.md").text,
        &balancer::Config::command(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_loadtest_readme_table_is_the_loadtests_configuration() {
    let problems = mismatches(
        "loadtest/README.md",
        &doc("loadtest/README.md").text,
        &loadtest::Config::command(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn defaults_compare_as_values() {
    assert!(same_default("`1h`", "1h"));
    assert!(same_default("`on`", "true"));
    assert!(same_default("off", "false"));
    assert!(same_default("`10 s`", "10s"));
    assert!(same_default("50", "50"));
    assert!(!same_default("`3600`", "1h"));
    assert!(!same_default("`2s`", "5s"));
}

#[test]
fn a_wrong_default_an_unknown_and_a_missing_variable_are_all_reported() {
    // Arrange: a command reading two variables, and a table that gets one default wrong,
    // names a variable the command does not read, and leaves the other out.
    let command = clap::Command::new("demo")
        .arg(
            clap::Arg::new("ttl")
                .long("ttl")
                .env("DEMO_TTL")
                .default_value("1h"),
        )
        .arg(clap::Arg::new("port").long("port").env("DEMO_PORT"));
    let readme = "| Variable | Default | Meaning |\n|---|---|---|\n\
                  | `DEMO_TTL` | `2h` | expiry |\n| `DEMO_GONE` | `1` | removed |\n";

    // Act
    let problems = mismatches("demo/README.md", readme, &command);

    // Assert
    assert_eq!(
        problems,
        vec![
            "demo/README.md: DEMO_TTL defaults to `1h`, the table says `2h`",
            "demo/README.md documents DEMO_GONE, which the demo binary does not read",
            "demo/README.md does not document DEMO_PORT, which the demo binary reads",
        ]
    );
}
