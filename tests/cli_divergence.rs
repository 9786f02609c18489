//! A fit that diverges never passes as a model: `morphosde train` at a
//! learning rate that must diverge exits non-zero with a message that says
//! what diverged and what to try, and leaves an existing model file and the
//! summary path alone; a healthy fit reports the guard's counts and the
//! rollout check in its summary.

#[path = "common/cli.rs"]
mod cli;

use cli::{morphosde, s as path, temp_dir};
use std::path::{Path, PathBuf};

/// The built-in dataset at 60 embryos per bin, written by a short demo.
fn dataset(dir: &Path) -> PathBuf {
    let o = morphosde(&[
        "demo",
        "--per-bin",
        "60",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--width",
        "8",
        "--quiet",
        "--out",
        path(dir),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir.join("train.csv")
}

const SHORT: [&str; 10] = [
    "--epochs",
    "12",
    "--steps-per-epoch",
    "8",
    "--batch",
    "32",
    "--width",
    "16",
    "--quiet",
    "--learn_diffusion=true",
];

#[test]
fn a_fit_that_must_diverge_exits_non_zero_and_writes_nothing() {
    let dir = temp_dir("lr");
    let data = dataset(&dir);
    let model = dir.join("model.msde");
    let summary = dir.join("summary.json");
    std::fs::write(&model, b"an existing model").unwrap();
    let mut args = vec![
        "train",
        "--data",
        path(&data),
        "--id-column",
        "id",
        "--learning-rate",
        "10",
        "--patience",
        "100",
        "--out",
        path(&model),
        "--summary",
        path(&summary),
    ];
    args.extend(SHORT);
    let o = morphosde(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("training diverged"), "{err}");
    assert!(err.contains("--learning-rate"), "says what to try: {err}");
    assert_eq!(std::fs::read(&model).unwrap(), b"an existing model");
    assert!(!summary.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_healthy_fit_reports_the_guard_and_the_rollout_check() {
    let dir = temp_dir("ok");
    let data = dataset(&dir);
    let (model, summary) = (dir.join("model.msde"), dir.join("summary.json"));
    let mut args = vec![
        "train",
        "--data",
        path(&data),
        "--id-column",
        "id",
        "--out",
        path(&model),
        "--summary",
        path(&summary),
    ];
    args.extend(SHORT);
    let o = morphosde(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["rollbacks"], 0);
    let check = &json["rollout_check"];
    // 8 bins of 60 rows: 7 one-gap rollouts and 7 continued ones.
    assert_eq!(check["end_points"], 14 * 60);
    assert_eq!(check["outside"], 0);
    for epoch in json["history"].as_array().unwrap() {
        assert_eq!(epoch["rollbacks"], 0);
        assert_eq!(epoch["learning_rate_factor"], 1.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
