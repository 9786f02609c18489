//! The SDE schemes' steps against closed forms and independent
//! computations, without sampling noise: on an SDE whose drift is affine
//! and whose factor is affine in `z`, one step of every scheme is affine
//! in `z` for fixed random inputs and polynomial (degree ≤ 2) in them, so
//! driving the real path functions with Gauss–Hermite nodes (and every
//! sign pattern) as their [`Noise`] gives the exact mean and second moment
//! of the scheme's law step by step. Checked: the weak order of each
//! scheme (log-log slopes over three step sizes) on the non-normal OU of
//! `core::synthetic` (additive noise; closed form by the matrix
//! exponential) and on a rotating linear SDE with non-commuting
//! multiplicative, time-dependent noise (moment equations by a fine RK4),
//! and the radius growth per step on a pure rotation with noise.
#![allow(clippy::needless_range_loop)] // index-heavy moment formulas read best as loops

#[path = "common/matrix_exp.rs"]
mod matrix_exp;

use matrix_exp::van_loan;
use morphosde_core::Float;
use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::platen::{platen_noise_len, platen_path, platen_path_workspace_len};
use morphosde_core::integrate::sde::{Noise, SdeConfig, em_path, em_path_workspace_len};
use morphosde_core::integrate::strang::{strang_path, strang_path_workspace_len};
use morphosde_core::synthetic::{GroundTruth, NonNormalOu};

/// Fixed random inputs of one path row: its normals, then its signs.
struct Fixed {
    normals: Vec<f64>,
    signs: Vec<f64>,
}

impl Noise for Fixed {
    fn normals<F: Float>(&mut self, out: &mut [F]) {
        assert_eq!(out.len(), self.normals.len(), "normals drawn");
        for (o, &x) in out.iter_mut().zip(&self.normals) {
            *o = F::from_f64(x);
        }
    }
    fn signs<F: Float>(&mut self, out: &mut [F]) {
        assert_eq!(out.len(), self.signs.len(), "signs drawn");
        for (o, &x) in out.iter_mut().zip(&self.signs) {
            *o = F::from_f64(x);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scheme {
    Em,
    Strang,
    Platen,
}

const SCHEMES: [Scheme; 3] = [Scheme::Em, Scheme::Strang, Scheme::Platen];

/// Nodes of a quadrature exact for polynomials of degree ≤ 5 in `q`
/// standard normals and any function of `pairs` random signs: the tensor
/// 3-point Gauss–Hermite rule times every sign pattern. Each node is
/// `(weight, normals, signs)`.
fn nodes(q: usize, pairs: usize) -> Vec<(f64, Vec<f64>, Vec<f64>)> {
    let gh = [
        (-3f64.sqrt(), 1.0 / 6.0),
        (0.0, 2.0 / 3.0),
        (3f64.sqrt(), 1.0 / 6.0),
    ];
    let mut out = Vec::new();
    for code in 0..3usize.pow(q as u32) {
        let (mut w, mut xs, mut c) = (1.0, Vec::new(), code);
        for _ in 0..q {
            let (x, wx) = gh[c % 3];
            xs.push(x);
            w *= wx;
            c /= 3;
        }
        for pattern in 0..1usize << pairs {
            let signs = (0..pairs)
                .map(|p| if (pattern >> p) & 1 == 1 { 1.0 } else { -1.0 })
                .collect();
            out.push((w / (1 << pairs) as f64, xs.clone(), signs));
        }
    }
    out
}

/// One substep of `scheme` from time `t` to `t + h` for every row of `z`
/// (`rows×d`), row `r` drawing `noise[r]`.
fn step<S: Dynamics<f64>>(
    scheme: Scheme,
    dynamics: &S,
    z: &[f64],
    t: f64,
    h: f64,
    noise: &mut [Fixed],
) -> Vec<f64> {
    let rows = noise.len();
    let config = SdeConfig {
        h_max: h,
        trace_clip: None,
    };
    let mut out = vec![0.0; z.len()];
    let mut stop = vec![0.0; rows];
    let times = [t + h];
    let stats = match scheme {
        Scheme::Em => {
            let mut ws = vec![f64::NAN; em_path_workspace_len(dynamics, rows)];
            em_path(
                dynamics, z, t, &times, &config, noise, &mut out, &mut stop, &mut ws,
            )
        }
        Scheme::Strang => {
            let mut ws = vec![f64::NAN; strang_path_workspace_len(dynamics, rows)];
            strang_path(
                dynamics, z, t, &times, &config, noise, &mut out, &mut stop, &mut ws,
            )
        }
        Scheme::Platen => {
            let mut ws = vec![f64::NAN; platen_path_workspace_len(dynamics, rows)];
            platen_path(
                dynamics, z, t, &times, &config, noise, &mut out, &mut stop, &mut ws,
            )
        }
    }
    .unwrap();
    assert_eq!(stats.accepted, rows as u64);
    assert!(stop.iter().all(|&s| s == f64::INFINITY));
    out
}

/// Exact mean `m` and second moment `s = E[z zᵀ]` after one step of
/// `scheme` from a law with mean `m` and second moment `s` at time `t`.
fn moment_step<S: Dynamics<f64>>(
    scheme: Scheme,
    dynamics: &S,
    t: f64,
    h: f64,
    m: &[f64],
    s: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (d, q) = (dynamics.dim(), dynamics.noise_dim());
    let pairs = if scheme == Scheme::Platen {
        platen_noise_len(q) - q
    } else {
        0
    };
    let quadrature = nodes(q, pairs);
    // Rows: for each node, z = 0 then z = e_i.
    let mut z = Vec::new();
    let mut noise = Vec::new();
    for (_, xs, signs) in &quadrature {
        for e in 0..=d {
            let mut row = vec![0.0; d];
            if e > 0 {
                row[e - 1] = 1.0;
            }
            z.extend(row);
            noise.push(Fixed {
                normals: xs.clone(),
                signs: signs.clone(),
            });
        }
    }
    let out = step(scheme, dynamics, &z, t, h, &mut noise);
    let (mut m1, mut s1) = (vec![0.0; d], vec![0.0; d * d]);
    for (n, (w, _, _)) in quadrature.iter().enumerate() {
        let base = n * (d + 1) * d;
        let c = &out[base..base + d];
        let mut big_m = vec![0.0; d * d];
        for i in 0..d {
            for k in 0..d {
                big_m[i * d + k] = out[base + (k + 1) * d + i] - c[i];
            }
        }
        // z' = M z + c: E z' = M m + c, E z'z'ᵀ = M s Mᵀ + M m cᵀ + c mᵀ Mᵀ + c cᵀ.
        let mm: Vec<f64> = (0..d)
            .map(|i| (0..d).map(|k| big_m[i * d + k] * m[k]).sum())
            .collect();
        for i in 0..d {
            m1[i] += w * (mm[i] + c[i]);
            for j in 0..d {
                let mut msm = 0.0;
                for k in 0..d {
                    for l in 0..d {
                        msm += big_m[i * d + k] * s[k * d + l] * big_m[j * d + l];
                    }
                }
                s1[i * d + j] += w * (msm + mm[i] * c[j] + c[i] * mm[j] + c[i] * c[j]);
            }
        }
    }
    (m1, s1)
}

/// The scheme's exact mean and second moment at `t_end` from the point
/// `z0` at 0, in steps of `h`.
fn scheme_moments<S: Dynamics<f64>>(
    scheme: Scheme,
    dynamics: &S,
    z0: &[f64],
    t_end: f64,
    h: f64,
) -> (Vec<f64>, Vec<f64>) {
    let d = z0.len();
    let mut m = z0.to_vec();
    let mut s: Vec<f64> = (0..d * d).map(|c| z0[c / d] * z0[c % d]).collect();
    let steps = (t_end / h).round() as usize;
    for n in 0..steps {
        (m, s) = moment_step(scheme, dynamics, n as f64 * h, h, &m, &s);
    }
    (m, s)
}

/// Largest absolute difference of the means and second moments.
fn moment_error(a: &(Vec<f64>, Vec<f64>), b: &(Vec<f64>, Vec<f64>)) -> f64 {
    a.0.iter()
        .zip(&b.0)
        .chain(a.1.iter().zip(&b.1))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Mean and second moment of the non-normal OU `dz = A(z − μ) dt + L dW`
/// at `t` from the point `z0`, in closed form: `μ + e^{At}(z0 − μ)` and
/// (Van Loan) the covariance `∫₀ᵗ e^{Au} D e^{Aᵀu} du` read off
/// `exp([[−A, D], [0, Aᵀ]] t)`.
fn ou_moments(p: &NonNormalOu, z0: &[f64], t: f64) -> (Vec<f64>, Vec<f64>) {
    let d = p.d;
    let origin = vec![0.0; d];
    let mut a = vec![0.0; d * d];
    p.drift_jacobian_at(&origin, 0.0, &mut a);
    let (mut l, mut dm) = (vec![0.0; d * d], vec![0.0; d * d]);
    p.diffusion_at(&origin, 0.0, &mut l, &mut dm);
    let mu: Vec<f64> = (0..d).map(NonNormalOu::equilibrium).collect();
    let closed = van_loan(&a, &dm, d, t);
    let eat = |i: usize, j: usize| closed.flow[i * d + j];
    let mean: Vec<f64> = (0..d)
        .map(|i| mu[i] + (0..d).map(|k| eat(i, k) * (z0[k] - mu[k])).sum::<f64>())
        .collect();
    let mut second = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            second[i * d + j] = closed.covariance[i * d + j] + mean[i] * mean[j];
        }
    }
    (mean, second)
}

/// `dz = A z dt + e^{γt} Σ_j (c_j + B_j z) dW_j` in 2-D with two noise
/// columns: a damped rotation with non-commuting multiplicative noise
/// growing in time.
struct Multiplicative;

const ROT: [f64; 4] = [-0.4, 2.0, -1.6, -0.3];
const C: [[f64; 2]; 2] = [[0.3, 0.1], [0.0, 0.2]];
const B: [[f64; 4]; 2] = [[0.3, 0.1, 0.0, 0.2], [0.0, -0.2, 0.25, 0.1]];
const GROWTH: f64 = 0.5;

impl Dynamics<f64> for Multiplicative {
    fn dim(&self) -> usize {
        2
    }
    fn noise_dim(&self) -> usize {
        2
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
        for r in 0..t.len() {
            for i in 0..2 {
                f[2 * r + i] = ROT[2 * i] * z[2 * r] + ROT[2 * i + 1] * z[2 * r + 1];
            }
        }
    }
    fn drift_and_factor(&self, z: &[f64], t: &[f64], f: &mut [f64], l: &mut [f64], ws: &mut [f64]) {
        self.drift(z, t, f, ws);
        for r in 0..t.len() {
            let a = (GROWTH * t[r]).exp();
            for i in 0..2 {
                for j in 0..2 {
                    let bz = B[j][2 * i] * z[2 * r] + B[j][2 * i + 1] * z[2 * r + 1];
                    l[4 * r + 2 * i + j] = a * (C[j][i] + bz);
                }
            }
        }
    }
}

/// Mean and second moment of [`Multiplicative`] at `t_end` from the point
/// `z0`: the moment equations `m' = A m`, `S' = A S + S Aᵀ + e^{2γt} Σ_j
/// (c_j c_jᵀ + c_j (B_j m)ᵀ + B_j m c_jᵀ + B_j S B_jᵀ)` by RK4 at 20,000
/// steps.
fn multiplicative_moments(z0: &[f64], t_end: f64) -> (Vec<f64>, Vec<f64>) {
    let rate = |t: f64, x: &[f64]| -> Vec<f64> {
        let (m, s) = x.split_at(2);
        let mut out = vec![0.0; 6];
        let g = (2.0 * GROWTH * t).exp();
        for i in 0..2 {
            out[i] = (0..2).map(|k| ROT[2 * i + k] * m[k]).sum();
            for j in 0..2 {
                let as_: f64 = (0..2).map(|k| ROT[2 * i + k] * s[2 * k + j]).sum();
                let sa: f64 = (0..2).map(|k| s[2 * i + k] * ROT[2 * j + k]).sum();
                let mut noise = 0.0;
                for col in 0..2 {
                    let bm = |i: usize| (0..2).map(|k| B[col][2 * i + k] * m[k]).sum::<f64>();
                    let bsb: f64 = (0..2)
                        .flat_map(|k| (0..2).map(move |l| (k, l)))
                        .map(|(k, l)| B[col][2 * i + k] * s[2 * k + l] * B[col][2 * j + l])
                        .sum();
                    noise += C[col][i] * C[col][j] + C[col][i] * bm(j) + bm(i) * C[col][j] + bsb;
                }
                out[2 + 2 * i + j] = as_ + sa + g * noise;
            }
        }
        out
    };
    let mut x = vec![
        z0[0],
        z0[1],
        z0[0] * z0[0],
        z0[0] * z0[1],
        z0[1] * z0[0],
        z0[1] * z0[1],
    ];
    let steps = 20_000;
    let h = t_end / steps as f64;
    let axpy = |x: &[f64], k: &[f64], c: f64| -> Vec<f64> {
        x.iter().zip(k).map(|(a, b)| a + c * b).collect()
    };
    for n in 0..steps {
        let t = n as f64 * h;
        let k1 = rate(t, &x);
        let k2 = rate(t + h / 2.0, &axpy(&x, &k1, h / 2.0));
        let k3 = rate(t + h / 2.0, &axpy(&x, &k2, h / 2.0));
        let k4 = rate(t + h, &axpy(&x, &k3, h));
        for i in 0..6 {
            x[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
    }
    (x[..2].to_vec(), x[2..].to_vec())
}

/// Weak errors at `t_end` for steps `h`, `h/2`, `h/4` and the two
/// log2-slopes between them.
fn orders<S: Dynamics<f64>>(
    scheme: Scheme,
    dynamics: &S,
    z0: &[f64],
    t_end: f64,
    truth: &(Vec<f64>, Vec<f64>),
) -> ([f64; 3], [f64; 2]) {
    let h = [0.1, 0.05, 0.025];
    let e = h.map(|h| moment_error(&scheme_moments(scheme, dynamics, z0, t_end, h), truth));
    (e, [(e[0] / e[1]).log2(), (e[1] / e[2]).log2()])
}

#[test]
fn weak_orders_on_the_non_normal_ou_match_the_theory() {
    // Additive noise: Euler–Maruyama order 1; Strang (midpoint kick) and
    // Platen order 2.
    let p = NonNormalOu { d: 2 };
    let z0 = [1.0, -0.5];
    let truth = ou_moments(&p, &z0, 1.0);
    for (scheme, order) in [
        (Scheme::Em, 1.0),
        (Scheme::Strang, 2.0),
        (Scheme::Platen, 2.0),
    ] {
        let (e, slopes) = orders(scheme, &p, &z0, 1.0, &truth);
        for s in slopes {
            assert!(
                (s - order).abs() < 0.2,
                "{scheme:?}: errors {e:?}, slopes {slopes:?}"
            );
        }
    }
}

#[test]
fn weak_orders_with_multiplicative_noise_match_the_theory() {
    // State- and time-dependent, non-commuting noise: Euler–Maruyama and
    // Strang (its kick is Euler–Maruyama of dz = L dW) order 1, Platen 2.
    let z0 = [1.0, 0.5];
    let truth = multiplicative_moments(&z0, 1.0);
    for (scheme, order) in [
        (Scheme::Em, 1.0),
        (Scheme::Strang, 1.0),
        (Scheme::Platen, 2.0),
    ] {
        let (e, slopes) = orders(scheme, &Multiplicative, &z0, 1.0, &truth);
        for s in slopes {
            assert!(
                (s - order).abs() < 0.25,
                "{scheme:?}: errors {e:?}, slopes {slopes:?}"
            );
        }
    }
}

/// `dz = ω J z dt + σ dW` in 2-D: a pure rotation with isotropic noise.
struct Rotation;

const OMEGA: f64 = 3.7;
const SIGMA: f64 = 0.25;

impl Dynamics<f64> for Rotation {
    fn dim(&self) -> usize {
        2
    }
    fn noise_dim(&self) -> usize {
        2
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
        for r in 0..t.len() {
            f[2 * r] = -OMEGA * z[2 * r + 1];
            f[2 * r + 1] = OMEGA * z[2 * r];
        }
    }
    fn drift_and_factor(&self, z: &[f64], t: &[f64], f: &mut [f64], l: &mut [f64], ws: &mut [f64]) {
        self.drift(z, t, f, ws);
        for r in 0..t.len() {
            l[4 * r..4 * r + 4].copy_from_slice(&[SIGMA, 0.0, 0.0, SIGMA]);
        }
    }
}

#[test]
fn radius_growth_per_step_on_a_rotation_matches_the_closed_forms() {
    // E|z'|² from |z| = 1 over one step h: exactly 1 + 2σ²h for the SDE.
    // Euler–Maruyama: (1 + ω²h²) + 2σ²h. Strang: ρ⁴ + 2σ²h ρ² with ρ² =
    // |p(iωh/2)|², p the RK4 polynomial. Platen: (1 + ω⁴h⁴/4) + 2σ²h (1 +
    // ω²h²/4).
    let h = 0.01;
    let exact = 1.0 + 2.0 * SIGMA * SIGMA * h;
    let theta = OMEGA * h / 2.0;
    let (re, im) = (
        1.0 - theta.powi(2) / 2.0 + theta.powi(4) / 24.0,
        theta - theta.powi(3) / 6.0,
    );
    let rho2 = re * re + im * im;
    let (wh, noise) = (OMEGA * h, 2.0 * SIGMA * SIGMA * h);
    let closed = [
        (Scheme::Em, 1.0 + wh * wh + noise),
        (Scheme::Strang, rho2 * rho2 + noise * rho2),
        (
            Scheme::Platen,
            1.0 + wh.powi(4) / 4.0 + noise * (1.0 + wh * wh / 4.0),
        ),
    ];
    let z0 = [0.6, 0.8];
    let s0: Vec<f64> = (0..4).map(|c| z0[c / 2] * z0[c % 2]).collect();
    let mut growth = Vec::new();
    for (scheme, expected) in closed {
        let (_, s) = moment_step(scheme, &Rotation, 0.0, h, &z0, &s0);
        let radius2 = s[0] + s[3];
        assert!(
            (radius2 - expected).abs() < 1e-13,
            "{scheme:?}: {radius2} vs {expected}"
        );
        growth.push((radius2 - exact).abs());
    }
    // Euler–Maruyama's excess is ω²h² ≈ 1.4e-3 per step (the radius grows
    // by half that), Platen's O(h⁴) a thousandth of it, Strang's O(h⁶)
    // a millionth.
    assert!((growth[0] - wh * wh).abs() < 1e-13);
    assert!(growth[0] > 1e3 * growth[2], "{growth:?}");
    assert!(growth[0] > 1e6 * growth[1], "{growth:?}");
}

#[test]
fn schemes_agree_on_a_drift_free_step_with_constant_noise() {
    // Without drift and with a constant factor every scheme is exactly
    // z + √h L ξ: the same numbers for the same inputs.
    struct Still;
    impl Dynamics<f64> for Still {
        fn dim(&self) -> usize {
            2
        }
        fn noise_dim(&self) -> usize {
            2
        }
        fn workspace_len(&self, _rows: usize) -> usize {
            0
        }
        fn drift(&self, _z: &[f64], _t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
            f.fill(0.0);
        }
        fn drift_and_factor(
            &self,
            _z: &[f64],
            t: &[f64],
            f: &mut [f64],
            l: &mut [f64],
            _: &mut [f64],
        ) {
            f.fill(0.0);
            for r in 0..t.len() {
                l[4 * r..4 * r + 4].copy_from_slice(&[0.5, 0.0, -0.2, 0.3]);
            }
        }
    }
    let (xi, h) = ([0.7, -1.3], 0.04);
    let expected = [1.0 + 0.2 * 0.5 * 0.7, 2.0 + 0.2 * (-0.2 * 0.7 + 0.3 * -1.3)];
    for scheme in SCHEMES {
        let mut noise = [Fixed {
            normals: xi.to_vec(),
            signs: vec![1.0; if scheme == Scheme::Platen { 1 } else { 0 }],
        }];
        let out = step(scheme, &Still, &[1.0, 2.0], 0.0, h, &mut noise);
        for i in 0..2 {
            assert!((out[i] - expected[i]).abs() < 1e-15, "{scheme:?}: {out:?}");
        }
    }
}
