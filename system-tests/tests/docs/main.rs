//! Keeps the docs true: each crate README's configuration table is that crate's clap
//! configuration (names and defaults, both ways), every repository path a README or a
//! document in `docs/` names exists, and every `cargo run` of the app or the loadtest they
//! show parses with the binary's own flags.
//!
//! Run with: `cargo test -p system-tests --test docs`

mod commands;
mod config_tables;
mod helpers;
mod markdown;
mod paths;
