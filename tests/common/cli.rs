//! What the command-line tests share: a fresh directory per test and the
//! built `morphosde` binary.
//!
//! Use from an integration test binary:
//! `#[path = "common/cli.rs"] mod cli;` then `use cli::*;`.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An empty directory `<tmp>/msde-<test binary>-<name>-<pid>` (emptied if
/// an earlier run of this process id left it behind).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "msde-{}-{name}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `morphosde args…` to completion.
pub fn morphosde(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_morphosde"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `morphosde subcommand args…` to completion.
pub fn subcommand(subcommand: &str, args: &[&str]) -> Output {
    morphosde(&[&[subcommand], args].concat())
}

/// A run's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A path as a command-line argument (the test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
