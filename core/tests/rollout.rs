//! Euler–Maruyama and rollouts against closed forms, determinism across
//! runs, block sizes and thread counts, blow-ups and bad input.
#![allow(clippy::needless_range_loop)] // index-heavy moment formulas read best as loops

use morphosde_core::dynamics::Dynamics;
use morphosde_core::error::ErrorKind;
use morphosde_core::integrate::ode::Dopri5Config;
use morphosde_core::integrate::rollout::{
    Method, RolloutConfig, RolloutReport, Start, rollout, rollout_workspace_len,
};
use morphosde_core::integrate::sde::{SdeConfig, em_path, em_path_workspace_len};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::synthetic::EmbryoProcess;

/// 3-D Ornstein–Uhlenbeck `dz = −A z dt + L dW` with `A = diag(RATES)` and a
/// constant lower-triangular `L`, so `D = L Lᵀ` is full and non-diagonal.
struct Ou;

const RATES: [f64; 3] = [1.0, 2.0, 0.5];
const FACTOR: [f64; 9] = [0.5, 0.0, 0.0, 0.3, 0.4, 0.0, -0.2, 0.25, 0.3];
const OU_START: [f64; 3] = [2.0, -2.0, 3.0];

impl Dynamics<f64> for Ou {
    fn dim(&self) -> usize {
        3
    }
    fn noise_dim(&self) -> usize {
        3
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
        for r in 0..t.len() {
            for i in 0..3 {
                f[3 * r + i] = -RATES[i] * z[3 * r + i];
            }
        }
    }
    fn drift_and_factor(&self, z: &[f64], t: &[f64], f: &mut [f64], l: &mut [f64], ws: &mut [f64]) {
        self.drift(z, t, f, ws);
        for r in 0..t.len() {
            l[9 * r..9 * r + 9].copy_from_slice(&FACTOR);
        }
    }
}

fn diffusion() -> [f64; 9] {
    let mut d = [0.0; 9];
    for i in 0..3 {
        for j in 0..3 {
            d[3 * i + j] = (0..3).map(|k| FACTOR[3 * i + k] * FACTOR[3 * j + k]).sum();
        }
    }
    d
}

/// Exact mean and covariance at time `t`: of the SDE (`h = None`), or of
/// Euler–Maruyama with step `h` (`z_{n+1} = (I − hA) z_n + √h L Z`, so
/// `Σ_ij = h D_ij (1 − (m_i m_j)^n) / (1 − m_i m_j)` with `m = 1 − h a`).
fn ou_moments(t: f64, h: Option<f64>) -> ([f64; 3], [f64; 9]) {
    let d = diffusion();
    let mut mean = [0.0; 3];
    let mut cov = [0.0; 9];
    for i in 0..3 {
        match h {
            None => mean[i] = (-RATES[i] * t).exp() * OU_START[i],
            Some(h) => {
                let n = (t / h).round() as i32;
                mean[i] = (1.0 - h * RATES[i]).powi(n) * OU_START[i];
            }
        }
        for j in 0..3 {
            cov[3 * i + j] = match h {
                None => {
                    let s = RATES[i] + RATES[j];
                    d[3 * i + j] * (1.0 - (-s * t).exp()) / s
                }
                Some(h) => {
                    let n = (t / h).round() as i32;
                    let m = (1.0 - h * RATES[i]) * (1.0 - h * RATES[j]);
                    h * d[3 * i + j] * (1.0 - m.powi(n)) / (1.0 - m)
                }
            };
        }
    }
    (mean, cov)
}

/// Sample mean and covariance (divisor n − 1) of the final states.
fn sample_moments(out: &[f64], n: usize, big_k: usize) -> ([f64; 3], [f64; 9]) {
    let last = |r: usize| &out[(r * big_k + big_k - 1) * 3..][..3];
    let mut mean = [0.0; 3];
    for r in 0..n {
        for i in 0..3 {
            mean[i] += last(r)[i] / n as f64;
        }
    }
    let mut cov = [0.0; 9];
    for r in 0..n {
        let z = last(r);
        for i in 0..3 {
            for j in 0..3 {
                cov[3 * i + j] += (z[i] - mean[i]) * (z[j] - mean[j]) / (n - 1) as f64;
            }
        }
    }
    (mean, cov)
}

fn em(h_max: f64, seed: u64) -> RolloutConfig<f64> {
    RolloutConfig {
        method: Method::EulerMaruyama(SdeConfig {
            h_max,
            trace_clip: None,
        }),
        seed,
        block_rows: 64,
    }
}

/// Runs a rollout with `workers` workers' workspace; returns outputs, stop
/// times and the report.
fn run<S: Dynamics<f64> + Sync>(
    dynamics: &S,
    start: Start<'_, f64>,
    n: usize,
    times: &[f64],
    config: &RolloutConfig<f64>,
    workers: usize,
) -> (Vec<f64>, Vec<f64>, RolloutReport<f64>) {
    let d = dynamics.dim();
    let mut out = vec![0.0; n * times.len() * d];
    let mut stop = vec![0.0; n];
    let mut ws = vec![f64::NAN; rollout_workspace_len(dynamics, config, workers)];
    let report = rollout(
        dynamics, start, 0.0, times, config, &mut out, &mut stop, &mut ws,
    )
    .unwrap();
    (out, stop, report)
}

const N: usize = 20_000;

#[test]
fn em_ou_moments_match_closed_form_within_sampling_bands() {
    let times = [0.5, 1.0];
    let h = 0.01;
    let (out, stop, report) = run(&Ou, Start::Point(&OU_START), N, &times, &em(h, 11), 2);
    assert!(stop.iter().all(|&s| s == f64::INFINITY));
    assert_eq!(report.stats.accepted, (N * 100) as u64);
    let (mean, cov) = sample_moments(&out, N, times.len());
    let (true_mean, true_cov) = ou_moments(1.0, None);
    let (em_mean, em_cov) = ou_moments(1.0, Some(h));
    let n = N as f64;
    // Band: 5 standard errors of the estimator for Gaussian z (mean:
    // Σ_ii/n; covariance: (Σ_ii Σ_jj + Σ_ij²)/n) plus the scheme's own
    // O(h) bias, known exactly from the discrete law.
    for i in 0..3 {
        let se = (true_cov[4 * i] / n).sqrt();
        let band = 5.0 * se + (em_mean[i] - true_mean[i]).abs();
        assert!(
            (mean[i] - true_mean[i]).abs() < band,
            "mean {i}: {} vs {}",
            mean[i],
            true_mean[i]
        );
        for j in 0..3 {
            let c = 3 * i + j;
            let se = ((true_cov[4 * i] * true_cov[4 * j] + true_cov[c] * true_cov[c]) / n).sqrt();
            let band = 5.0 * se + (em_cov[c] - true_cov[c]).abs();
            assert!(
                (cov[c] - true_cov[c]).abs() < band,
                "cov {i}{j}: {} vs {}",
                cov[c],
                true_cov[c]
            );
        }
    }
    // The output at t = 0.5 is the same trajectories' earlier state.
    let (m_half, _) = {
        let first: Vec<f64> = (0..N)
            .flat_map(|r| out[r * 6..r * 6 + 3].to_vec())
            .collect();
        sample_moments(&first, N, 1)
    };
    let (true_half, half_cov) = ou_moments(0.5, None);
    for i in 0..3 {
        assert!((m_half[i] - true_half[i]).abs() < 5.0 * (half_cov[4 * i] / n).sqrt() + 0.01);
    }
}

#[test]
fn em_weak_error_shrinks_linearly_in_h() {
    // Weak error of E[z_T] and E[(z − E z)(z − E z)ᵀ] at T = 1, summed in
    // absolute value, for h, h/2, h/4.
    let steps = [0.2, 0.1, 0.05];
    let (true_mean, true_cov) = ou_moments(1.0, None);
    let mut errors = [0.0; 3];
    let mut predicted = [0.0; 3];
    for (e, &h) in steps.iter().enumerate() {
        let (out, _, _) = run(&Ou, Start::Point(&OU_START), N, &[1.0], &em(h, 3), 1);
        let (mean, cov) = sample_moments(&out, N, 1);
        let (em_mean, em_cov) = ou_moments(1.0, Some(h));
        for i in 0..3 {
            errors[e] += (mean[i] - true_mean[i]).abs();
            predicted[e] += (em_mean[i] - true_mean[i]).abs();
        }
        for c in 0..9 {
            errors[e] += (cov[c] - true_cov[c]).abs();
            predicted[e] += (em_cov[c] - true_cov[c]).abs();
        }
    }
    // Sampling noise of the summed error: at most the sum of the standard
    // errors of its 12 terms (≈ 0.03 here); five times that bounds it.
    let n = N as f64;
    let mut noise = 0.0;
    for i in 0..3 {
        noise += (true_cov[4 * i] / n).sqrt();
        for j in 0..3 {
            noise += ((true_cov[4 * i] * true_cov[4 * j] + true_cov[3 * i + j].powi(2)) / n).sqrt();
        }
    }
    for e in 0..3 {
        assert!(
            (errors[e] - predicted[e]).abs() < 5.0 * noise,
            "{errors:?} vs {predicted:?}"
        );
    }
    let slope = (errors[0] / errors[2]).ln() / 4f64.ln();
    let predicted_slope = (predicted[0] / predicted[2]).ln() / 4f64.ln();
    assert!((predicted_slope - 1.0).abs() < 0.2, "{predicted_slope}");
    assert!(
        (slope - 1.0).abs() < 0.25,
        "observed weak order {slope}, errors {errors:?}"
    );
}

/// The SDE methods, each with the settings `c`.
fn sde_methods<F: Copy>(c: SdeConfig<F>) -> [Method<F>; 3] {
    [
        Method::EulerMaruyama(c),
        Method::StrangRk4(c),
        Method::PlatenWeak2(c),
    ]
}

/// The embryo-like process's rollout by SDE method `m` (an index into
/// [`sde_methods`]) as f32 bits.
fn embryo_bits(
    m: usize,
    block_rows: usize,
    workers: usize,
    seed: u64,
) -> (Vec<u32>, RolloutReport<f32>) {
    let p = EmbryoProcess { d: 4 };
    let n = 300;
    let cloud: Vec<f32> = (0..n * 4)
        .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.4)
        .collect();
    let times = [0.2f32, 0.45, 0.7, 1.0];
    let config = RolloutConfig {
        method: sde_methods(SdeConfig {
            h_max: 0.04f32,
            trace_clip: Some(0.5),
        })[m],
        seed,
        block_rows,
    };
    let mut out = vec![0.0f32; n * times.len() * 4];
    let mut stop = vec![0.0f32; n];
    let mut ws = vec![f32::NAN; rollout_workspace_len(&p, &config, workers)];
    let report = rollout(
        &p,
        Start::Cloud(&cloud),
        0.0,
        &times,
        &config,
        &mut out,
        &mut stop,
        &mut ws,
    )
    .unwrap();
    assert!(out.iter().all(|x| x.is_finite()));
    (out.iter().map(|x| x.to_bits()).collect(), report)
}

#[test]
fn rollouts_are_bit_identical_across_runs_blocks_and_threads() {
    for m in 0..3 {
        let (reference, report) = embryo_bits(m, 64, 1, 5);
        assert_eq!(report.workers, 1);
        assert_eq!(embryo_bits(m, 64, 1, 5).0, reference, "{m}: second run");
        assert_eq!(embryo_bits(m, 7, 1, 5).0, reference, "{m}: block of 7 rows");
        assert_ne!(embryo_bits(m, 64, 1, 6).0, reference, "{m}: another seed");
        #[cfg(feature = "std")]
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (bits, report) = pool.install(|| embryo_bits(m, 16, 2, 5));
            assert_eq!(report.workers, 2);
            assert_eq!(bits, reference, "{m}: {threads} threads");
        }
    }
    // The methods differ.
    assert_ne!(embryo_bits(0, 64, 1, 5).0, embryo_bits(1, 64, 1, 5).0);
    assert_ne!(embryo_bits(1, 64, 1, 5).0, embryo_bits(2, 64, 1, 5).0);
}

#[test]
fn strang_and_platen_ou_moments_match_closed_form_within_sampling_bands() {
    // Several substeps per output gap (the Strang path merges their half
    // flows) and two outputs: the schemes' own bias at h = 0.02 is far
    // below the sampling noise.
    let times = [0.5, 1.0];
    let config = SdeConfig {
        h_max: 0.02,
        trace_clip: None,
    };
    for method in &sde_methods(config)[1..] {
        let rc = RolloutConfig {
            method: *method,
            seed: 4,
            block_rows: 64,
        };
        let (out, stop, report) = run(&Ou, Start::Point(&OU_START), N, &times, &rc, 2);
        assert!(stop.iter().all(|&s| s == f64::INFINITY));
        assert_eq!(report.stats.accepted, (N * 50) as u64);
        let (mean, cov) = sample_moments(&out, N, times.len());
        let (true_mean, true_cov) = ou_moments(1.0, None);
        let n = N as f64;
        for i in 0..3 {
            let se = (true_cov[4 * i] / n).sqrt();
            assert!(
                (mean[i] - true_mean[i]).abs() < 5.0 * se,
                "{method:?} mean {i}"
            );
            for j in 0..3 {
                let c = 3 * i + j;
                let se =
                    ((true_cov[4 * i] * true_cov[4 * j] + true_cov[c] * true_cov[c]) / n).sqrt();
                assert!(
                    (cov[c] - true_cov[c]).abs() < 5.0 * se,
                    "{method:?} cov {i}{j}"
                );
            }
        }
    }
}

#[test]
fn trajectory_i_uses_stream_i() {
    // Trajectory 150 of a 200-trajectory rollout equals a one-row path with
    // `Rng::stream(seed, Trajectory, 150)`.
    let times = [0.3, 1.0];
    let (out, _, _) = run(&Ou, Start::Point(&OU_START), 200, &times, &em(0.05, 9), 2);
    let mut rngs = [Rng::stream(9, Family::Trajectory, 150)];
    let mut one = [0.0; 6];
    let mut stop = [0.0];
    let mut ws = vec![0.0; em_path_workspace_len(&Ou, 1)];
    let config = SdeConfig {
        h_max: 0.05,
        trace_clip: None,
    };
    em_path(
        &Ou, &OU_START, 0.0, &times, &config, &mut rngs, &mut one, &mut stop, &mut ws,
    )
    .unwrap();
    assert_eq!(one[..], out[150 * 6..151 * 6]);
}

/// `dz = (1 + z²) dt + 0.05 dW` in one dimension: blows up near
/// `t = π/2 − atan z₀`.
struct Riccati;

impl Dynamics<f64> for Riccati {
    fn dim(&self) -> usize {
        1
    }
    fn noise_dim(&self) -> usize {
        1
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[f64], _t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
        for (f, z) in f.iter_mut().zip(z) {
            *f = 1.0 + z * z;
        }
    }
    fn drift_and_factor(&self, z: &[f64], t: &[f64], f: &mut [f64], l: &mut [f64], ws: &mut [f64]) {
        self.drift(z, t, f, ws);
        l.fill(0.05);
    }
}

#[test]
fn blown_up_trajectory_stops_with_time_and_index_and_others_go_on() {
    // Trajectories 0 and 2 start at −10 (pole near t = 3.04), 1 at 0 (pole near π/2).
    let cloud = [-10.0, 0.0, -10.0];
    let times = [1.0, 2.0];
    let config = SdeConfig {
        h_max: 0.001,
        trace_clip: None,
    };
    for method in sde_methods(config) {
        let rc = RolloutConfig {
            method,
            seed: 1,
            block_rows: 64,
        };
        let (out, stop, report) = run(&Riccati, Start::Cloud(&cloud), 3, &times, &rc, 1);
        assert_eq!(report.stats.stopped, 1, "{method:?}");
        let (index, time) = report.first_stopped.unwrap();
        assert_eq!(index, 1);
        assert!(time > 1.4 && time < 1.7, "{method:?} stopped at {time}");
        assert_eq!(stop[1], time);
        assert!(out[2].is_finite() && out[3].is_nan());
        for r in [0, 2] {
            assert_eq!(stop[r], f64::INFINITY);
            let exact = (2.0 + (-10f64).atan()).tan();
            assert!((out[2 * r + 1] - exact).abs() < 0.3, "{}", out[2 * r + 1]);
        }
    }
}

#[test]
fn ode_methods_roll_out_a_cloud() {
    // Without noise the OU mean path is the closed form for every start.
    let cloud = [1.0, 2.0, -1.0, 0.5, 0.0, 3.0];
    let times = [0.25, 1.5];
    for method in [
        Method::Rk4 { h: 0.01 },
        Method::Dopri5(Dopri5Config::new(1e-9, 1e-9)),
    ] {
        let config = RolloutConfig {
            method,
            seed: 0,
            block_rows: 1,
        };
        let (out, _, report) = run(&Ou, Start::Cloud(&cloud), 2, &times, &config, 2);
        assert_eq!(report.workers, 2);
        for r in 0..2 {
            for (k, &t) in times.iter().enumerate() {
                for i in 0..3 {
                    let exact = cloud[3 * r + i] * (-RATES[i] * t).exp();
                    assert!((out[(r * 2 + k) * 3 + i] - exact).abs() < 1e-8);
                }
            }
        }
    }
}

#[test]
fn rollout_bad_input_is_an_error() {
    struct NoNoise;
    impl Dynamics<f64> for NoNoise {
        fn dim(&self) -> usize {
            1
        }
        fn noise_dim(&self) -> usize {
            0
        }
        fn workspace_len(&self, _rows: usize) -> usize {
            0
        }
        fn drift(&self, _z: &[f64], _t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
            f.fill(0.0);
        }
        fn drift_and_factor(
            &self,
            _: &[f64],
            _: &[f64],
            _: &mut [f64],
            _: &mut [f64],
            _: &mut [f64],
        ) {
            unreachable!("no diffusion")
        }
    }
    let mut out = [0.0; 2];
    let mut stop = [0.0; 2];
    let mut ws = [0.0; 4096];
    let config = em(0.1, 0);
    for (h_max, trace_clip, dynamics_has_noise, arg) in [
        (0.1, None, false, "dynamics"),
        (-1.0, None, true, "h_max"),
        (f64::NAN, None, true, "h_max"),
        (0.1, Some(0.0), true, "trace_clip"),
    ] {
        for method in sde_methods(SdeConfig { h_max, trace_clip }) {
            let rc = RolloutConfig { method, ..config };
            let e = if dynamics_has_noise {
                let p = Start::Point(&[0.0]);
                rollout(&Riccati, p, 0.0, &[1.0], &rc, &mut out, &mut stop, &mut ws)
            } else {
                let p = Start::Point(&[0.0]);
                rollout(&NoNoise, p, 0.0, &[1.0], &rc, &mut out, &mut stop, &mut ws)
            }
            .unwrap_err();
            assert_eq!((e.kind, e.arg), (ErrorKind::BadConfig, arg), "{method:?}");
        }
    }
    let e = rollout(
        &Riccati,
        Start::Point(&[0.0]),
        0.0,
        &[1.0],
        &config,
        &mut [],
        &mut [],
        &mut ws,
    )
    .unwrap_err();
    assert_eq!(e.arg, "stop_times");
    let e = rollout(
        &Riccati,
        Start::Point(&[f64::NAN]),
        0.0,
        &[1.0],
        &config,
        &mut out,
        &mut stop,
        &mut ws,
    )
    .unwrap_err();
    assert_eq!((e.kind, e.arg), (ErrorKind::NonFinite, "start"));
    let e = rollout(
        &Riccati,
        Start::Cloud(&[0.0]),
        0.0,
        &[1.0],
        &config,
        &mut out,
        &mut stop,
        &mut ws,
    )
    .unwrap_err();
    assert_eq!(e.arg, "start");
    let mut out4 = [0.0; 4];
    let e = rollout(
        &Riccati,
        Start::Point(&[0.0]),
        0.0,
        &[1.0, 0.5],
        &config,
        &mut out4,
        &mut stop,
        &mut ws,
    )
    .unwrap_err();
    assert_eq!(e.arg, "times");
    let bad_block = RolloutConfig {
        block_rows: 65,
        ..config
    };
    let e = rollout(
        &Riccati,
        Start::Point(&[0.0]),
        0.0,
        &[1.0],
        &bad_block,
        &mut out,
        &mut stop,
        &mut ws,
    )
    .unwrap_err();
    assert_eq!(e.arg, "block_rows");
    let e = rollout(
        &Riccati,
        Start::Point(&[0.0]),
        0.0,
        &[1.0],
        &config,
        &mut out,
        &mut stop,
        &mut ws[..1],
    )
    .unwrap_err();
    assert_eq!((e.kind, e.arg), (ErrorKind::BufferTooSmall, "workspace"));
}
