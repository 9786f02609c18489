//! Agreement of `core::metrics` with reference libraries on the fixtures of
//! `tests/fixtures/metrics/make_fixtures.py`: energy distance with
//! `dcor.energy_distance` (V-statistic), sliced Wasserstein with POT's
//! `ot.sliced_wasserstein_distance` given the same projections, the
//! spectrum of `D = L Lᵀ` with `numpy.linalg.eigh` (1e-5 relative in f32),
//! calibration quantiles with `numpy.quantile`.

use morphosde_core::error::ErrorKind;
use morphosde_core::metrics::{
    calibration_summary, calibration_workspace_len, diffusion_spectrum, energy_distance,
    random_directions, sliced_wasserstein, sliced_wasserstein_with,
    sliced_wasserstein_workspace_len,
};
use std::collections::HashMap;
use std::path::PathBuf;

/// Named arrays of a fixture file: name → (rows, cols, values).
fn load(file: &str) -> HashMap<String, (usize, usize, Vec<f64>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let mut arrays = HashMap::new();
    while let Some(header) = lines.next() {
        let h: Vec<&str> = header.split_whitespace().collect();
        let (rows, cols): (usize, usize) = (h[1].parse().unwrap(), h[2].parse().unwrap());
        let mut values = Vec::with_capacity(rows * cols);
        for _ in 0..rows {
            values.extend(
                lines
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .map(|v| v.parse::<f64>().unwrap()),
            );
        }
        assert_eq!(values.len(), rows * cols);
        arrays.insert(h[0].to_string(), (rows, cols, values));
    }
    arrays
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn energy_distance_and_sliced_wasserstein_match_dcor_and_pot() {
    for case in ["unequal", "equal_2d"] {
        let f = load(&format!("clouds_{case}.txt"));
        let (n, d, x) = &f["x"];
        let (m, _, y) = &f["y"];
        let (_, _, dirs) = &f["directions"];
        let energy = f["energy_distance"].2[0];
        let sw = f["sliced_wasserstein"].2[0];
        let mut ws = vec![0.0f64; n + m];
        let got = energy_distance(x, y, *d).unwrap();
        assert!(
            (got - energy).abs() < 1e-12 * energy,
            "{case}: energy {got} vs dcor {energy}"
        );
        let got = sliced_wasserstein_with(x, y, *d, dirs, &mut ws).unwrap();
        assert!(
            (got - sw).abs() < 1e-12 * sw,
            "{case}: sw {got} vs POT {sw}"
        );
        // The shipping type: f32 inputs, within single-precision rounding.
        let (x32, y32, dirs32) = (f32s(x), f32s(y), f32s(dirs));
        let mut ws32 = vec![0.0f32; n + m];
        let got = energy_distance(&x32, &y32, *d).unwrap() as f64;
        assert!(
            (got - energy).abs() < 1e-5 * energy,
            "{case}: f32 energy {got}"
        );
        let got = sliced_wasserstein_with(&x32, &y32, *d, &dirs32, &mut ws32).unwrap() as f64;
        assert!((got - sw).abs() < 1e-5 * sw, "{case}: f32 sw {got}");
    }
}

#[test]
fn seeded_sliced_wasserstein_uses_its_own_unit_directions() {
    let f = load("clouds_unequal.txt");
    let (n, d, x) = &f["x"];
    let (m, _, y) = &f["y"];
    let l = 200;
    let mut ws = vec![0.0f64; sliced_wasserstein_workspace_len(*n, *m, *d, l)];
    let seeded = sliced_wasserstein(x, y, *d, l, 17, &mut ws).unwrap();
    let mut dirs = vec![0.0f64; l * d];
    random_directions(*d, 17, &mut dirs).unwrap();
    for row in dirs.chunks_exact(*d) {
        assert!((row.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
    }
    let mut rest = vec![0.0f64; n + m];
    assert_eq!(
        seeded,
        sliced_wasserstein_with(x, y, *d, &dirs, &mut rest).unwrap()
    );
    assert_eq!(
        seeded,
        sliced_wasserstein(x, y, *d, l, 17, &mut ws).unwrap()
    );
    assert_ne!(
        seeded,
        sliced_wasserstein(x, y, *d, l, 18, &mut ws).unwrap()
    );
    // Identical clouds are at distance zero.
    assert_eq!(sliced_wasserstein(x, x, *d, 5, 1, &mut ws).unwrap(), 0.0);
    assert!(energy_distance(x, x, *d).unwrap().abs() < 1e-12);
}

#[test]
fn diffusion_spectrum_matches_numpy_eigh() {
    for case in ["full6", "lowrank16", "full64"] {
        let f = load(&format!("spectrum_{case}.txt"));
        let (d, q, l) = &f["l"];
        let (_, _, w_ref) = &f["eigenvalues"];
        let (_, _, v_ref) = &f["eigenvectors"];
        let (_, _, distinct) = &f["distinct"];
        let top = w_ref[0];
        // f64 tightly, f32 within 1e-5 of the largest eigenvalue.
        let mut w = vec![0.0f64; *d];
        let mut v = vec![0.0f64; d * d];
        let mut scratch = vec![0.0f64; d * d];
        diffusion_spectrum(l, *d, *q, &mut w, &mut v, &mut scratch).unwrap();
        let l32 = f32s(l);
        let mut w32 = vec![0.0f32; *d];
        let mut v32 = vec![0.0f32; d * d];
        let mut scratch32 = vec![0.0f32; d * d];
        diffusion_spectrum(&l32, *d, *q, &mut w32, &mut v32, &mut scratch32).unwrap();
        for k in 0..*d {
            assert!(
                (w[k] - w_ref[k]).abs() < 1e-12 * top,
                "{case}: λ{k} {} vs {}",
                w[k],
                w_ref[k]
            );
            assert!(
                (w32[k] as f64 - w_ref[k]).abs() < 1e-5 * top,
                "{case}: f32 λ{k}"
            );
            if distinct[k] == 1.0 {
                // Eigenvector error scales as rounding / relative gap.
                let gap = (if k > 0 {
                    w_ref[k - 1] - w_ref[k]
                } else {
                    f64::INFINITY
                })
                .min(if k + 1 < *d {
                    w_ref[k] - w_ref[k + 1]
                } else {
                    f64::INFINITY
                });
                for i in 0..*d {
                    let (a, b) = (v[i * d + k], v_ref[i * d + k]);
                    assert!((a - b).abs() < 1e-10 * top / gap, "{case}: v[{i},{k}]");
                    let a32 = v32[i * d + k] as f64;
                    assert!(
                        (a32 - b).abs() < 1e-5 * top / gap,
                        "{case}: f32 v[{i},{k}] {a32} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn calibration_summary_matches_numpy_quantiles() {
    let f = load("calibration.txt");
    let (b, dd, d_pred) = &f["d_pred"];
    let (_, _, d_hat) = &f["d_hat"];
    let (_, _, levels) = &f["levels"];
    let (_, _, abs_ref) = &f["abs_quantiles"];
    let (_, _, rel_ref) = &f["rel_quantiles"];
    let means = &f["means"].2;
    let d = (*dd as f64).sqrt() as usize;
    let mut qa = vec![0.0; levels.len()];
    let mut qr = vec![0.0; levels.len()];
    let mut ws = vec![0.0; calibration_workspace_len(*b)];
    let s = calibration_summary(d_pred, d_hat, d, levels, &mut qa, &mut qr, &mut ws).unwrap();
    for i in 0..levels.len() {
        assert!((qa[i] - abs_ref[i]).abs() < 1e-12, "abs q{}", levels[i]);
        assert!((qr[i] - rel_ref[i]).abs() < 1e-12, "rel q{}", levels[i]);
    }
    assert!((s.mean_abs - means[0]).abs() < 1e-12 && (s.mean_rel - means[1]).abs() < 1e-12);
    // A zero target and a level outside [0, 1] are errors.
    let mut zero = d_hat.clone();
    zero[dd * 3..dd * 4].fill(0.0);
    let e = calibration_summary(d_pred, &zero, d, levels, &mut qa, &mut qr, &mut ws).unwrap_err();
    assert_eq!(
        (e.arg, e.detail),
        ("d_hat", morphosde_core::error::Detail::Index(3))
    );
    let bad = [0.5, 1.5];
    let e = calibration_summary(d_pred, d_hat, d, &bad, &mut qa[..2], &mut qr[..2], &mut ws)
        .unwrap_err();
    assert_eq!(e.arg, "levels");
}

#[test]
fn metrics_reject_bad_input() {
    let x = [0.0, 1.0, 2.0, 3.0];
    let mut ws = [0.0; 64];
    assert_eq!(
        energy_distance(&x, &[f64::NAN, 0.0], 2).unwrap_err().arg,
        "y"
    );
    assert_eq!(energy_distance(&x, &[], 2).unwrap_err().arg, "y");
    assert_eq!(energy_distance(&x, &x[..3], 2).unwrap_err().arg, "y");
    assert_eq!(energy_distance(&x, &x, 0).unwrap_err().arg, "d");
    assert_eq!(
        sliced_wasserstein(&x, &x, 2, 0, 1, &mut ws)
            .unwrap_err()
            .arg,
        "projections"
    );
    let e = sliced_wasserstein(&x, &x, 2, 40, 1, &mut ws).unwrap_err();
    assert_eq!((e.kind, e.arg), (ErrorKind::BufferTooSmall, "workspace"));
    assert_eq!(
        sliced_wasserstein_with(&x, &x, 2, &[], &mut ws)
            .unwrap_err()
            .arg,
        "directions"
    );
    assert_eq!(
        sliced_wasserstein_with(&x, &x, 2, &[1.0, f64::INFINITY], &mut ws)
            .unwrap_err()
            .arg,
        "directions"
    );
    let l = vec![1.0f64; 65];
    let (mut w, mut v, mut s) = (vec![0.0; 65], vec![0.0; 65 * 65], vec![0.0; 65 * 65]);
    assert_eq!(
        diffusion_spectrum(&l, 65, 1, &mut w, &mut v, &mut s)
            .unwrap_err()
            .kind,
        ErrorKind::BadDimension
    );
    assert_eq!(
        diffusion_spectrum(&l[..4], 2, 2, &mut w[..2], &mut v[..4], &mut s[..3])
            .unwrap_err()
            .arg,
        "scratch"
    );
    assert_eq!(
        diffusion_spectrum(&[f64::NAN; 4], 2, 2, &mut w[..2], &mut v[..4], &mut s)
            .unwrap_err()
            .arg,
        "l"
    );
}
