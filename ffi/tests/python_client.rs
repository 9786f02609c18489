//! The Python ctypes client's tests (standard library only) pass against
//! the shared library of this build.

mod common;
use common::*;
use std::process::Command;

#[test]
fn python_ctypes_tests_pass() {
    let so = library_dir().join("libmorphosde.so");
    assert!(so.exists(), "{} not built", so.display());
    let out = Command::new("python3")
        .arg(root().join("tests/python/test_ffi.py"))
        .arg("-v")
        .env("MORPHOSDE_LIB", &so)
        .output()
        .expect("python3 is required for the ctypes client tests");
    assert!(
        out.status.success(),
        "python tests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
