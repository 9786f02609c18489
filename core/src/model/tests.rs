//! Gradient checks of the network and heads against central finite
//! differences in f64, and the structural promises of the layout.

use super::*;
use crate::rng::{Family, Rng};

const ROWS: usize = 5;

fn configs() -> [Config; 15] {
    let base = Config {
        d: 3,
        time_features: 2,
        depth: 2,
        width: 6,
        ..Config::default()
    };
    let on = |head: DiffusionHead| Config {
        head: Some(head),
        ..base
    };
    [
        base,
        Config { depth: 0, ..base },
        Config {
            depth: 1,
            time_features: 0,
            ..base
        },
        Config {
            d: 4,
            depth: 3,
            width: 5,
            time_features: 4,
            ..base
        },
        Config {
            drift_loss: DriftLoss::Nll,
            ..base
        },
        on(DiffusionHead::Full),
        on(DiffusionHead::LowRank { q: 2 }),
        on(DiffusionHead::Diagonal),
        Config {
            depth: 0,
            ..on(DiffusionHead::Full)
        },
        Config {
            d: 4,
            width: 7,
            ..on(DiffusionHead::Full)
        },
        Config {
            d: 4,
            ..on(DiffusionHead::LowRank { q: 1 })
        },
        Config {
            clip_trace: 1.34,
            ..on(DiffusionHead::Full)
        },
        Config {
            clip_trace: 0.83,
            ..on(DiffusionHead::LowRank { q: 2 })
        },
        Config {
            drift_loss: DriftLoss::Nll,
            time_features: 6,
            ..on(DiffusionHead::Diagonal)
        },
        Config {
            time_features: 4,
            time_scale: 2.7,
            ..on(DiffusionHead::Full)
        },
    ]
}

/// Initialised weights and random (non-zero) biases and log-variance, so
/// every path is exercised.
fn test_params(layout: &Layout, ci: usize, params: &mut [f64]) {
    layout.init(17 + ci as u64, params).unwrap();
    let mut rng = Rng::stream(5, Family::Data, ci as u64);
    for t in layout.tensors() {
        if t.rows == 1 {
            for v in &mut params[t.range()] {
                *v = 0.3 * rng.normal();
            }
        }
    }
}

/// Non-identity [`Inputs`] (means around ±1, scales 0.3–3, the time span
/// `[0.3, 1.5]`, which clamps some of a probe's times in `[0, 2]`).
fn test_inputs(d: usize, seed: u64) -> Inputs<f64> {
    let mut rng = Rng::stream(seed, Family::Data, 99);
    let mut inputs = Inputs::identity(d);
    for k in 0..d {
        inputs.mean[k] = rng.normal();
        inputs.scale[k] = 0.3 * libm::pow(10.0, rng.uniform());
    }
    inputs.time_span = [0.3, 1.5];
    inputs
}

struct Probe {
    z: [f64; ROWS * 4],
    t: [f64; ROWS],
    /// Coefficients of the linear functional J = Σ c_f f + Σ c_l L.
    c_f: [f64; ROWS * 4],
    c_l: [f64; ROWS * 16],
}

fn probe(seed: u64) -> Probe {
    let mut rng = Rng::stream(seed, Family::Data, 0);
    let mut p = Probe {
        z: [0.0; ROWS * 4],
        t: [0.0; ROWS],
        c_f: [0.0; ROWS * 4],
        c_l: [0.0; ROWS * 16],
    };
    rng.fill_normal(&mut p.z);
    for t in &mut p.t {
        *t = 2.0 * rng.uniform();
    }
    rng.fill_normal(&mut p.c_f);
    rng.fill_normal(&mut p.c_l);
    p
}

fn objective(layout: &Layout, params: &[f64], pr: &Probe, cache: &mut [f64]) -> f64 {
    let (d, dq) = (layout.d, layout.d * layout.q);
    layout
        .forward_train(params, &pr.z[..ROWS * d], &pr.t, cache)
        .unwrap();
    let f = layout.cached_drift(ROWS, cache);
    let l = layout.cached_factor(ROWS, cache);
    let jf: f64 = f.iter().zip(&pr.c_f).map(|(a, b)| a * b).sum();
    let jl: f64 = l.iter().zip(&pr.c_l[..ROWS * dq]).map(|(a, b)| a * b).sum();
    jf + jl
}

/// Worst per-tensor relative error ‖g − g_fd‖ / ‖g_fd‖ of the manual
/// gradient of J over every tensor of every config.
#[test]
fn backward_matches_finite_differences_in_f64() {
    let mut worst: f64 = 0.0;
    for (ci, config) in configs().iter().enumerate() {
        let layout = Layout::new(config).unwrap();
        let mut params = [0.0f64; 2048];
        let params = &mut params[..layout.len];
        test_params(&layout, ci, params);
        // The network's pass does not read μ and s; the span clamps times.
        if ci % 2 == 1 {
            let inputs = test_inputs(layout.d, ci as u64);
            layout.set_inputs(params, &inputs).unwrap();
        }
        let pr = probe(ci as u64);
        let mut cache = [0.0f64; 4096];
        let _ = objective(&layout, params, &pr, &mut cache);
        let (d, dq) = (layout.d, layout.d * layout.q);
        let mut grad = [0.0f64; 2048];
        let mut ws = [f64::NAN; 4096];
        layout
            .backward(
                params,
                ROWS,
                &cache,
                &pr.c_f[..ROWS * d],
                &pr.c_l[..ROWS * dq],
                &mut grad[..layout.len],
                &mut ws,
            )
            .unwrap();
        assert!(grad[layout.input_block.range()].iter().all(|&g| g == 0.0));
        for t in layout.tensors() {
            if Some(t) == layout.log_var {
                assert!(grad[t.range()].iter().all(|&g| g == 0.0));
                continue;
            }
            let (mut num, mut den) = (0.0, 0.0);
            for i in t.range() {
                let step = 1e-5;
                let keep = params[i];
                params[i] = keep + step;
                let up = objective(&layout, params, &pr, &mut cache);
                params[i] = keep - step;
                let down = objective(&layout, params, &pr, &mut cache);
                params[i] = keep;
                let fd = (up - down) / (2.0 * step);
                num += (grad[i] - fd) * (grad[i] - fd);
                den += fd * fd;
            }
            assert!(den > 0.0, "config {ci}: tensor {t:?} has no gradient");
            let rel = libm::sqrt(num / den);
            worst = worst.max(rel);
            assert!(rel <= 1e-6, "config {ci} tensor {t:?}: rel err {rel:e}");
        }
    }
    std::println!("worst relative gradient error over 15 configs: {worst:e}");
}

/// The state gradient of [`Layout::backward_to_state`] against central
/// differences of J in every coordinate of every row, over every config
/// (with and without hidden layers, time features and each head).
#[test]
fn state_gradient_matches_finite_differences_in_f64() {
    for (ci, config) in configs().iter().enumerate() {
        let layout = Layout::new(config).unwrap();
        let mut params = [0.0f64; 2048];
        let params = &mut params[..layout.len];
        test_params(&layout, ci, params);
        let mut pr = probe(100 + ci as u64);
        let mut cache = [0.0f64; 4096];
        let _ = objective(&layout, params, &pr, &mut cache);
        let (d, dq) = (layout.d, layout.d * layout.q);
        let mut grad = [0.0f64; 2048];
        let mut d_z = [0.0f64; ROWS * 4];
        let mut ws = [f64::NAN; 4096];
        layout
            .backward_to_state(
                params,
                ROWS,
                &cache,
                &pr.c_f[..ROWS * d],
                &pr.c_l[..ROWS * dq],
                &mut grad[..layout.len],
                &mut d_z[..ROWS * d],
                &mut ws,
            )
            .unwrap();
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &g) in d_z[..ROWS * d].iter().enumerate() {
            let step = 1e-5;
            let keep = pr.z[i];
            pr.z[i] = keep + step;
            let up = objective(&layout, params, &pr, &mut cache);
            pr.z[i] = keep - step;
            let down = objective(&layout, params, &pr, &mut cache);
            pr.z[i] = keep;
            let fd = (up - down) / (2.0 * step);
            num += (g - fd) * (g - fd);
            den += fd * fd;
        }
        assert!(den > 0.0, "config {ci}: no state gradient");
        let rel = libm::sqrt(num / den);
        assert!(rel <= 1e-6, "config {ci}: state gradient rel err {rel:e}");
    }
}

#[test]
fn diffusion_off_is_the_drift_only_prefix() {
    let drift_only = Config {
        d: 4,
        time_features: 8,
        ..Config::default()
    };
    let with = Config {
        head: Some(DiffusionHead::Full),
        ..drift_only
    };
    let off = Layout::new(&drift_only).unwrap();
    let on = Layout::new(&with).unwrap();
    // Input block 2·4 + 2, then 4+8 → 128 → 128 → 128 → 4.
    assert_eq!(
        off.len,
        10 + 12 * 128 + 128 + 2 * (128 * 128 + 128) + 128 * 4 + 4
    );
    assert_eq!(on.len, off.len + 128 * 10 + 10);
    let mut a = std::vec![0.0f32; off.len];
    let mut b = std::vec![0.0f32; on.len];
    off.init(9, &mut a).unwrap();
    on.init(9, &mut b).unwrap();
    assert_eq!(a[..], b[..off.len]);
    assert!(b[off.len..].iter().any(|&v| v != 0.0));
}

#[test]
fn heads_give_positive_definite_factors_of_the_right_shape() {
    for (ci, config) in configs().iter().enumerate().skip(5) {
        let layout = Layout::new(config).unwrap();
        let mut params = [0.0f64; 2048];
        test_params(&layout, ci, &mut params[..layout.len]);
        let pr = probe(ci as u64);
        let (d, q) = (layout.d, layout.q);
        let mut clipped = 0;
        let mut f = [0.0f64; ROWS * 4];
        let mut l = [0.0f64; ROWS * 16];
        let mut ws = [0.0f64; 1024];
        let learned = Learned::standardised(config, &params[..layout.len]).unwrap();
        learned.drift_and_factor(
            &pr.z[..ROWS * d],
            &pr.t,
            &mut f[..ROWS * d],
            &mut l[..ROWS * d * q],
            &mut ws,
        );
        let mut cache = [0.0f64; 4096];
        layout
            .forward_train(&params[..layout.len], &pr.z[..ROWS * d], &pr.t, &mut cache)
            .unwrap();
        // The network's inference and training forward agree exactly.
        assert_eq!(layout.cached_drift(ROWS, &cache), &f[..ROWS * d]);
        assert_eq!(layout.cached_factor(ROWS, &cache), &l[..ROWS * d * q]);
        for r in 0..ROWS {
            let lr = &l[r * d * q..(r + 1) * d * q];
            match layout.head.unwrap() {
                DiffusionHead::Full => {
                    for i in 0..d {
                        assert!(lr[i * d + i] > 0.0);
                        assert!(lr[i * d + i + 1..(i + 1) * d].iter().all(|&v| v == 0.0));
                    }
                }
                DiffusionHead::Diagonal => {
                    for i in 0..d {
                        for j in 0..d {
                            assert_eq!(lr[i * d + j] > 0.0, i == j);
                        }
                    }
                }
                DiffusionHead::LowRank { .. } => assert_eq!(lr.len(), d * q),
            }
            if config.clip_trace > 0.0 {
                let tr: f64 = lr.iter().map(|v| v * v).sum();
                assert!(tr <= config.clip_trace * (1.0 + 1e-12));
                clipped += usize::from(tr > config.clip_trace * (1.0 - 1e-12));
            }
        }
        // The cap is active on some rows and not on others of the finite
        // difference test's probe, so both branches are checked there.
        if config.clip_trace > 0.0 {
            assert!(clipped > 0 && clipped < ROWS, "clipped {clipped}");
        }
    }
}

/// In the user's units the model is `s ⊙ g((z − μ)/s, t)` with
/// `L = diag(s) L_g`, the network's outputs at the standardised states;
/// times outside the span give the model at its nearest end (the network
/// is clamped there, nothing else changes).
#[test]
fn user_units_are_the_scaled_network_and_time_is_clamped_to_the_span() {
    for (ci, config) in configs().iter().enumerate() {
        let layout = Layout::new(config).unwrap();
        let (d, q) = (layout.d, layout.q);
        let mut params = std::vec![0.0f64; layout.len];
        test_params(&layout, ci, &mut params);
        let inputs = test_inputs(d, ci as u64);
        layout.set_inputs(&mut params, &inputs).unwrap();
        let pr = probe(70 + ci as u64);
        let z = &pr.z[..ROWS * d];
        let mut ws = std::vec![f64::NAN; layout.infer_workspace_len(ROWS)];
        let run = |learned: Learned<'_, f64>, z: &[f64], t: &[f64], ws: &mut [f64]| {
            let mut f = std::vec![0.0; ROWS * d];
            let mut l = std::vec![0.0; ROWS * d * q];
            learned.drift_and_factor(z, t, &mut f, &mut l, ws);
            (f, l)
        };
        let user = Learned::new(config, &params).unwrap();
        let network = Learned::standardised(config, &params).unwrap();
        let (f, l) = run(user, z, &pr.t, &mut ws);
        let mut zs = z.to_vec();
        inputs.standardise(&mut zs);
        let (g, lg) = run(network, &zs, &pr.t, &mut ws);
        for r in 0..ROWS {
            for a in 0..d {
                let s = inputs.scale[a];
                let want = s * g[r * d + a];
                assert!((f[r * d + a] - want).abs() <= 1e-14 * want.abs().max(1.0));
                for j in 0..q {
                    let k = r * d * q + a * q + j;
                    assert!((l[k] - s * lg[k]).abs() <= 1e-14 * lg[k].abs().max(1.0));
                }
            }
        }
        // The drift-only call gives the same drift.
        let mut f_only = std::vec![0.0; ROWS * d];
        user.drift(z, &pr.t, &mut f_only, &mut ws);
        assert_eq!(f_only, f);
        if config.time_features == 0 {
            continue;
        }
        // Clamped time: past t_max (and before t_min) the model is the end's.
        let (lo, hi) = (inputs.time_span[0], inputs.time_span[1]);
        let past = [hi + 0.01, hi + 0.5, hi + 7.0, lo - 0.2, lo - 3.0];
        let ends = [hi, hi, hi, lo, lo];
        assert_eq!(run(user, z, &past, &mut ws), run(user, z, &ends, &mut ws));
        let inside = [lo + 0.1, lo + 0.4, hi - 0.1, 0.9, 1.2];
        let shifted = inside.map(|t| t + 0.05);
        assert_ne!(
            run(user, z, &inside, &mut ws),
            run(user, z, &shifted, &mut ws)
        );
    }
}

#[test]
fn learned_refuses_wrong_parameters() {
    let config = Config {
        d: 2,
        depth: 1,
        width: 4,
        ..Config::default()
    };
    let layout = Layout::new(&config).unwrap();
    let short = [0.0f32; 3];
    assert_eq!(Learned::new(&config, &short).unwrap_err().arg, "params");
    let mut p = std::vec![0.0f32; layout.len];
    layout.init(1, &mut p).unwrap();
    Learned::new(&config, &p).unwrap();
    // A zero scale (and a reversed span) in the input block.
    for (at, v) in [(2, [0.0f32, 1.0]), (4, [1.0, 0.0])] {
        let mut bad = p.clone();
        bad[at..at + 2].copy_from_slice(&v);
        let e = Learned::new(&config, &bad).unwrap_err();
        assert_eq!((e.arg, e.kind), ("params", crate::ErrorKind::BadConfig));
    }
    p[0] = f32::NAN;
    assert_eq!(Learned::new(&config, &p).unwrap_err().arg, "params");
}

/// Drift and factor of `config` at `(z, t)` in float type `F`.
fn evaluate<F: Float>(config: &Config, params: &[F], z: &[F], t: &[F]) -> std::vec::Vec<F> {
    let layout = Layout::new(config).unwrap();
    let rows = t.len();
    let mut out = std::vec![F::ZERO; rows * (layout.d + layout.d * layout.q)];
    let (f, l) = out.split_at_mut(rows * layout.d);
    let mut ws = std::vec![F::ZERO; layout.infer_workspace_len(rows)];
    Learned::new(config, params)
        .unwrap()
        .drift_and_factor(z, t, f, l, &mut ws);
    out
}

/// A model with `time_scale = s` evaluated at `t` is, bit for bit, the same
/// parameters with `time_scale = 1` evaluated at `s·t` (f64 and f32, the
/// training forward too); and with no hidden layer the drift is the affine
/// map of `[z, sin(2^k s t), cos(2^k s t)]` written out here.
#[test]
fn time_scale_only_rescales_the_time_fed_to_the_features() {
    for (ci, scaled) in [
        Config {
            time_features: 6,
            time_scale: 1.0 / 42.0,
            ..configs()[5]
        },
        Config {
            time_scale: 2.7,
            ..configs()[6]
        },
    ]
    .into_iter()
    .enumerate()
    {
        let unit = Config {
            time_scale: 1.0,
            ..scaled
        };
        let layout = Layout::new(&scaled).unwrap();
        let mut params = std::vec![0.0f64; layout.len];
        test_params(&layout, ci, &mut params);
        let pr = probe(40 + ci as u64);
        let z = &pr.z[..ROWS * layout.d];
        // Times in "hours": 0..42 spread over the rows.
        let t: [f64; ROWS] = core::array::from_fn(|r| 42.0 * pr.t[r] / 2.0);
        let st = t.map(|t| scaled.time_scale * t);
        let got = evaluate(&scaled, &params, z, &t);
        assert_eq!(got, evaluate(&unit, &params, z, &st));
        assert_ne!(got, evaluate(&unit, &params, z, &t));
        let mut cache = std::vec![0.0f64; layout.cache_len(ROWS)];
        Layout::new(&scaled)
            .unwrap()
            .forward_train(&params, z, &t, &mut cache)
            .unwrap();
        assert_eq!(layout.cached_drift(ROWS, &cache), &got[..ROWS * layout.d]);
        // f32: the scale is rounded to f32 once, then `s·t` in f32.
        let p32: std::vec::Vec<f32> = params.iter().map(|&v| v as f32).collect();
        let z32: std::vec::Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let t32 = t.map(|v| v as f32);
        let st32 = t32.map(|v| scaled.time_scale as f32 * v);
        assert_eq!(
            evaluate(&scaled, &p32, &z32, &t32),
            evaluate(&unit, &p32, &z32, &st32)
        );
    }
    // Closed form of an affine model (depth 0): f = u W_f + b_f.
    let config = Config {
        d: 2,
        depth: 0,
        time_features: 4,
        time_scale: 0.125,
        ..Config::default()
    };
    let layout = Layout::new(&config).unwrap();
    let mut params = std::vec![0.0f64; layout.len];
    test_params(&layout, 3, &mut params);
    let (z, t) = ([0.3, -1.2], [30.0]);
    let f = evaluate(&config, &params, &z, &t);
    let s = 0.125 * 30.0;
    let u = [
        z[0],
        z[1],
        libm::sin(s),
        libm::cos(s),
        libm::sin(2.0 * s),
        libm::cos(2.0 * s),
    ];
    let (w, b) = (
        &params[layout.drift_w.range()],
        &params[layout.drift_b.range()],
    );
    for a in 0..2 {
        let want: f64 = b[a] + (0..6).map(|i| u[i] * w[i * 2 + a]).sum::<f64>();
        assert!((f[a] - want).abs() <= 1e-14 * want.abs().max(1.0), "{a}");
    }
}
