//! The committed header is what cbindgen (pinned) generates now, its version
//! macros match Cargo's version and the loaded library's, and the shared
//! library exports exactly the functions the header declares, under a
//! SONAME.
//!
//! Regenerate the header on purpose: MSDE_BLESS_HEADER=1 cargo test -p
//! morphosde-ffi --test header

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    root().join("include/morphosde.h")
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(manifest_dir().join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_crate(manifest_dir())
        .with_config(config)
        .generate()
        .expect("cbindgen failed");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_fresh() {
    let generated = generate();
    let path = header_path();
    if std::env::var_os("MSDE_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/morphosde.h is stale: regenerate it with \
         MSDE_BLESS_HEADER=1 cargo test -p morphosde-ffi --test header, and commit it"
    );
}

fn header_macro(header: &str, name: &str) -> u32 {
    let prefix = format!("#define {name} ");
    header
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} missing from the header"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn version_macros_match_cargo_and_library() {
    let header = std::fs::read_to_string(header_path()).unwrap();
    let parts: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    let macros = [
        header_macro(&header, "MSDE_VERSION_MAJOR"),
        header_macro(&header, "MSDE_VERSION_MINOR"),
        header_macro(&header, "MSDE_VERSION_PATCH"),
    ];
    assert_eq!(macros[..], parts[..]);
    let v = morphosde::msde_version();
    assert_eq!([v >> 16, (v >> 8) & 0xff, v & 0xff], macros);
    assert_eq!(
        header_macro(&header, "MSDE_ABI_VERSION"),
        morphosde::msde_abi_version()
    );
}

fn tool_output(cmd: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(cmd)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (binutils): {e}"));
    assert!(out.status.success(), "{cmd} failed on {}", file.display());
    String::from_utf8(out.stdout).unwrap()
}

/// Names `msde_*` immediately followed by `(` on one line of the header.
fn declared_functions(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("msde_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with('(') {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn shared_library_exports_exactly_the_header_functions_and_has_a_soname() {
    let so = library_dir().join("libmorphosde.so");
    assert!(so.exists(), "{} not built", so.display());
    let exported: BTreeSet<String> = tool_output("nm", &["-D", "--defined-only"], &so)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with("msde_"))
        .map(String::from)
        .collect();
    let header = std::fs::read_to_string(header_path()).unwrap();
    let declared: BTreeSet<String> = header
        .lines()
        .filter(|l| !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .flat_map(declared_functions)
        .collect();
    assert!(!declared.is_empty());
    assert_eq!(exported, declared);
    let dynamic = tool_output("readelf", &["-d"], &so);
    let abi = morphosde::msde_abi_version();
    assert!(
        dynamic.contains(&format!("[libmorphosde.so.{abi}]")),
        "no SONAME libmorphosde.so.{abi} in:\n{dynamic}"
    );
}
