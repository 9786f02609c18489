//! Ground-truth recovery on the built-in embryo process (known drift and
//! full-rank, state-dependent D), on a small configuration that trains in
//! seconds: `morphosde ablate --only drift-only,full,diagonal` at 400
//! embryos per bin, 12 epochs of 30 steps at learning rate 0.002 (the
//! default 0.0002 is meant for the default 80 epochs).
//!
//! The bounds below leave room for the rounding of other SIMD paths (the
//! training trajectory is deterministic on one machine, not across
//! kernels); the test prints its figures (`-- --nocapture`). The defaults at 1000 embryos per bin and
//! 80 epochs: the recovery section of docs/results.md.

use serde_json::Value;
use std::process::Command;

#[test]
fn diffusion_beats_drift_only_and_full_rank_beats_diagonal_on_known_truth() {
    let dir = std::env::temp_dir().join(format!("msde-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("ablation.md");
    let unknown = Command::new(env!("CARGO_BIN_EXE_morphosde"))
        .args(["ablate", "--only", "full,nonsense", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown variant 'nonsense'"));
    assert!(!out.exists());
    let status = Command::new(env!("CARGO_BIN_EXE_morphosde"))
        .args([
            "ablate",
            "--only",
            "drift-only,full,diagonal",
            "--per-bin",
            "400",
            "--epochs",
            "12",
            "--steps-per-epoch",
            "30",
            "--learning-rate",
            "0.002",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    let scores = |key: &str| -> &Value {
        &json["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["key"] == key)
            .unwrap_or_else(|| panic!("variant {key} missing"))["scores"]
    };
    let variant = |key: &str| -> (f64, f64, f64, Option<f64>) {
        let s = scores(key);
        (
            s["mean_energy_distance"].as_f64().unwrap(),
            s["mean_energy_distance_true_vs_true"].as_f64().unwrap(),
            s["mean_energy_distance_true_process_rollouts"]
                .as_f64()
                .unwrap(),
            s["d_relative_frobenius_error"].as_f64(),
        )
    };
    let (drift_only, floor, truth, none) = variant("drift-only");
    let (full, _, _, full_d) = variant("full");
    let (_, _, _, diagonal_d) = variant("diagonal");
    let (full_d, diagonal_d) = (full_d.unwrap(), diagonal_d.unwrap());
    let full_scores = scores("full");
    let swapped = |key: &str| full_scores[key].as_f64().unwrap();
    let true_drift = swapped("mean_energy_distance_true_drift_learned_noise");
    let true_noise = swapped("mean_energy_distance_learned_drift_true_noise");
    let drift_error = swapped("drift_relative_error");
    eprintln!(
        "energy distance: drift only {drift_only:.4}, full rank {full:.4} (true drift with its noise \
         {true_drift:.4}, its drift with the true noise {true_noise:.4}), floor {floor:.4}, \
         true process rollouts {truth:.4}; D error: full rank {full_d:.3}, diagonal {diagonal_d:.3}; \
         drift error {drift_error:.3}"
    );
    assert!(scores("drift-only")["mean_energy_distance_true_drift_learned_noise"].is_null());
    // Either half of the truth swapped in brings the rollouts closer: the
    // hybrids really take one half from each side. The drift is the larger
    // error here, so the true drift gains most; the learned noise is close
    // enough that the true noise gains only a little.
    assert!(true_drift < 0.9 * full, "{true_drift} vs {full}");
    assert!(true_noise < full, "{true_noise} vs {full}");
    assert!(
        drift_error > 0.02 && drift_error < 0.3,
        "drift error {drift_error}"
    );
    assert!(none.is_none(), "drift-only has no D");
    // The true process rolled out the same way scores near the floor and
    // better than any learned model: the protocol's own best.
    assert!(truth < 2.0 * floor, "true process {truth} vs floor {floor}");
    assert!(truth < full, "true process {truth} vs full rank {full}");
    // Learned noise reproduces the held-out spread; the drift alone cannot.
    assert!(full < 0.5 * drift_only, "{full} vs {drift_only}");
    assert!(full < 5.0 * floor, "{full} vs floor {floor}");
    // D recovered, and the anisotropic D needs the full-rank head.
    assert!(full_d < 0.55, "full-rank D error {full_d}");
    assert!(diagonal_d > full_d + 0.1, "{diagonal_d} vs {full_d}");
    std::fs::remove_dir_all(&dir).ok();
}
