//! `morphosde field --estimate`: the naive, flow-residual and propagated
//! estimates of `D` side by side, on tracked pairs of a 2-d Ornstein–Uhlenbeck
//! process with a non-normal, rotating drift at a real frame gap
//! (`h‖A‖₂ ≈ 0.8`), with a model file that holds the exact drift (no hidden
//! layer, no time features: `f = A z` exactly) and the true constant factor.
//!
//! Truth: `D = L Lᵀ`; the flow residual's second moment per unit time is
//! `Σ_h/h` with `Σ_h = ∫₀ʰ e^{As} D e^{Aᵀs} ds` (Van Loan's closed form,
//! `core/tests/common/matrix_exp.rs`). The naive estimate carries the
//! drift's curvature over the gap, the flow estimate the propagation of the
//! noise; the propagated one must recover `D` to sampling error.
//!
//! `cargo test --release --test cli_field_estimate -- --nocapture` prints
//! the errors.

#[path = "common/cli.rs"]
mod cli;

use cli::temp_dir;

#[path = "../core/tests/common/matrix_exp.rs"]
mod matrix_exp;

use matrix_exp::{matmul, van_loan};
use morphosde_core::codec;
use morphosde_core::model::{Config, DiffusionHead, Inputs, Layout};
use morphosde_core::rng::{Family, Rng};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

const A: [f64; 4] = [-2.0, 3.0, -1.0, -2.5];
const L: [f64; 4] = [0.3, 0.0, 0.1, 0.2];
const GAP: f64 = 0.2;
/// Tracked embryos, fine Euler–Maruyama steps per gap, pairs per point.
const EMBRYOS: usize = 40_000;
const FINE: usize = 200;
const K: usize = 2000;

fn true_d() -> [f64; 4] {
    let lt = [L[0], L[2], L[1], L[3]];
    let d = matmul(&L, &lt, 2);
    std::array::from_fn(|i| d[i])
}

/// `Σ_h / h`, with `Σ_h` in closed form.
fn flow_residual_rate() -> [f64; 4] {
    let sigma = van_loan(&A, &true_d(), 2, GAP).covariance;
    std::array::from_fn(|i| sigma[i] / GAP)
}

/// The model file: depth 0, no time features, `f = A z`, `L` constant.
fn exact_model() -> Vec<u8> {
    let config = Config {
        d: 2,
        depth: 0,
        time_features: 0,
        head: Some(DiffusionHead::Full),
        ..Config::default()
    };
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout
        .set_inputs(&mut params, &Inputs::identity(2))
        .unwrap();
    // f = z W with W (2×2, in × out): W[b][a] = A[a][b].
    for a in 0..2 {
        for b in 0..2 {
            params[layout.drift_w.offset + b * 2 + a] = A[a * 2 + b] as f32;
        }
    }
    // Full head: raw = [L00, L10, L11] with softplus (+ ε) on the diagonal.
    let eps = config.diffusion_epsilon;
    let inv_softplus = |y: f64| ((y - eps).exp() - 1.0).ln();
    let raw = [inv_softplus(L[0]), L[2], inv_softplus(L[3])];
    for (i, r) in raw.iter().enumerate() {
        params[layout.diff_b.offset + i] = *r as f32;
    }
    let mut bytes = vec![0u8; codec::model_bytes_len::<f32>(&config).unwrap()];
    codec::save(&config, &params, &mut bytes).unwrap();
    bytes
}

/// Snapshot table: `EMBRYOS` tracked embryos spread over [−1.5, 1.5]² at
/// t = 0, their state at t = GAP by fine Euler–Maruyama, untracked rows
/// (ignored by the estimate), and a third bin far away in time.
fn snapshots() -> String {
    let mut csv = String::from("t,id,z0,z1\n");
    let dt = GAP / FINE as f64;
    let sq = dt.sqrt();
    for e in 0..EMBRYOS {
        let mut rng = Rng::stream(7, Family::Data, e as u64);
        let x = [3.0 * rng.uniform() - 1.5, 3.0 * rng.uniform() - 1.5];
        let mut z = x;
        for _ in 0..FINE {
            let (w0, w1) = (rng.normal() * sq, rng.normal() * sq);
            z = [
                z[0] + (A[0] * z[0] + A[1] * z[1]) * dt + L[0] * w0 + L[1] * w1,
                z[1] + (A[2] * z[0] + A[3] * z[1]) * dt + L[2] * w0 + L[3] * w1,
            ];
        }
        writeln!(csv, "0,{e},{},{}", x[0], x[1]).unwrap();
        writeln!(csv, "{GAP},{e},{},{}", z[0], z[1]).unwrap();
        if e % 4 == 0 {
            writeln!(csv, "{GAP},-1,{},{}", z[1], z[0]).unwrap();
            writeln!(csv, "5,{e},40,40").unwrap();
        }
    }
    csv
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let e: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    (e / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
}

#[test]
fn propagated_estimate_recovers_d_where_the_naive_one_is_biased() {
    let dir = temp_dir("ou");
    let (model, data, points, out) = (
        dir.join("exact.msde"),
        dir.join("data.csv"),
        dir.join("points.csv"),
        dir.join("field.csv"),
    );
    std::fs::write(&model, exact_model()).unwrap();
    std::fs::write(&data, snapshots()).unwrap();
    // Query times near (not at) the first bin: the nearest source bin is used.
    std::fs::write(&points, "t,z0,z1\n0,0.8,0.6\n0.05,-0.7,0.9\n0,0.6,-0.9\n").unwrap();
    let arg = |p: &PathBuf| p.to_str().unwrap().to_string();
    let k = K.to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_morphosde"))
        .args(["field", "--model", &arg(&model), "--points", &arg(&points)])
        .args(["--estimate", &arg(&data), "--k", &k, "--out", &arg(&out)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (d, rate) = (true_d(), flow_residual_rate());
    let block = |row: &[f64], prefix: &str| -> Vec<f64> {
        ["D00", "D01", "D10", "D11"]
            .iter()
            .map(|e| row[col(&format!("{prefix}{e}"))])
            .collect()
    };
    let mut errors = [0.0f64; 3];
    let mut rows = 0;
    for line in lines {
        let row: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        rows += 1;
        assert_eq!(row[col("pairs")], K as f64);
        assert!((row[col("h")] - GAP).abs() < 1e-6);
        // The hand-built model's own D is the truth (f32 round-off).
        assert!(rel_err(&block(&row, ""), &d) < 1e-5);
        let naive = rel_err(&block(&row, "naive_"), &d);
        let flow = rel_err(&block(&row, "flow_"), &d);
        let propagated = rel_err(&block(&row, "propagated_"), &d);
        let flow_vs_rate = rel_err(&block(&row, "flow_"), &rate);
        println!(
            "point {rows}: D error naive {naive:.3}, flow {flow:.3}, propagated {propagated:.3}; flow vs Σ_h/h {flow_vs_rate:.3}"
        );
        // The flow moment is Σ_h/h up to sampling error (k = 2000: ~3%).
        assert!(flow_vs_rate < 0.08, "flow moment vs Σ_h/h: {flow_vs_rate}");
        for (e, v) in errors.iter_mut().zip([naive, flow, propagated]) {
            *e += v / 3.0;
        }
    }
    assert_eq!(rows, 3);
    let [naive, flow, propagated] = errors;
    println!(
        "mean D error over 3 points: naive {naive:.3}, flow {flow:.3}, propagated {propagated:.3}"
    );
    let bias = rel_err(&rate, &d);
    println!("exact flow-moment bias ‖Σ_h/h − D‖/‖D‖ = {bias:.3}");
    assert!(
        bias > 0.2,
        "the process is not in the biased regime: {bias}"
    );
    assert!(propagated < 0.06, "propagated: {propagated}");
    assert!(naive > 3.0 * propagated && flow > 3.0 * propagated);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn estimate_without_tracked_pairs_or_with_k_zero_is_refused() {
    let dir = temp_dir("bad");
    let (model, data, points) = (dir.join("m.msde"), dir.join("d.csv"), dir.join("p.csv"));
    std::fs::write(&model, exact_model()).unwrap();
    std::fs::write(&data, "t,id,z0,z1\n0,1,0,0\n0.2,2,0,0\n0.4,-1,0,0\n").unwrap();
    std::fs::write(&points, "t,z0,z1\n0,0,0\n").unwrap();
    let run = |extra: &[&str]| {
        let arg = |p: &PathBuf| p.to_str().unwrap().to_string();
        let o = Command::new(env!("CARGO_BIN_EXE_morphosde"))
            .args(["field", "--model", &arg(&model), "--points", &arg(&points)])
            .args(["--estimate", &arg(&data), "--out", &arg(&dir.join("o.csv"))])
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(run(&[]).contains("no tracked pairs"));
    std::fs::write(&data, "t,id,z0,z1\n0,1,0,0\n0.2,1,0,0\n").unwrap();
    assert!(run(&["--k", "0"]).contains("--k must be at least 1"));
    assert!(!dir.join("o.csv").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
