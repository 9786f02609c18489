//! Paths shared by the C ABI's integration tests.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Directory holding the libraries cargo built for this test run: the
/// test binary's own directory (`target/<profile>/deps`).
pub fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

pub mod guarded;
