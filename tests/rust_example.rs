//! The Rust example `examples/train_from_csv.rs` (which `cargo test` builds
//! beside the tests) runs on its built-in table, and its rollouts end up
//! much closer to the data than the start cloud left in place.

use std::path::PathBuf;
use std::process::Command;

/// The example's executable: `target/<profile>/examples/`, beside the
/// test binary's `target/<profile>/deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds it unless targets are filtered \
         (then run `cargo build --example {name}` with the same profile)",
        path.display()
    );
    path
}

#[test]
fn train_from_csv_rollouts_match_the_data() {
    let out = Command::new(example("train_from_csv")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Table rows: time, energy distance of the rollouts, of the start cloud.
    let rows: Vec<[f64; 3]> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("time"))
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2]]
        })
        .collect();
    assert_eq!(rows.len(), 7, "one row per later time:\n{stdout}");
    for [t, rolled, still] in rows {
        assert!(
            rolled >= 0.0 && rolled < 0.2 * still,
            "t = {t}: rollouts {rolled} vs start cloud {still}\n{stdout}"
        );
    }
}
