//! A non-normal Ornstein–Uhlenbeck process with constant, anisotropic,
//! full `D`: [`NonNormalOu`], `dz = A (z − m) dt + L dW` in `d ≥ 2`
//! dimensions.
//!
//! - `A` is upper bidiagonal: `A_kk = −λ_k` with `λ_k = 1, 1.5, 2, 1, …`
//!   and `A_{k,k+1} = 2` for even `k` (inside a pair of coordinates), 0.5
//!   for odd `k` (between pairs). Stable (eigenvalues `−λ_k`) and
//!   non-normal: the shear makes `‖A‖₂ ≈ 2.6`, so at the frame gap 0.2
//!   `h‖A‖₂ ≈ 0.5`, and the covariance grows transiently along the shear.
//! - `m_k = −0.3, 0.2, −0.3, …`; the initial cloud is `N(μ₀, 0.1² I)` with
//!   `μ₀ = (1, −0.5, 0.8, −0.3, 1, …)`, so the mean relaxes visibly over the
//!   observed span.
//! - `L = G diag(s)`, `s_k` geometric from 0.5 down to `0.5/√17` and `G` a
//!   chain of Givens rotations by 0.6 rad on the pairs `(k, k+1)`: `D = L Lᵀ
//!   = G diag(s²) Gᵀ` is dense, with condition number 17.
//!
//! Time-homogeneous. Its mean is `m + e^{At}(μ₀ − m)` and its covariance
//! solves `Σ' = AΣ + ΣAᵀ + D` from `0.01 I` (the sampler's test checks
//! both).

use super::GroundTruth;
use crate::float::Float;
use crate::rng::Rng;

/// Condition number of `D`.
pub const OU_CONDITION: f64 = 17.0;
/// Largest noise scale `s₀` (the others fall geometrically to
/// `s₀/√OU_CONDITION`).
pub const OU_SIGMA_MAX: f64 = 0.5;
/// Angle of each Givens rotation of the noise's principal axes.
pub const OU_ROTATION: f64 = 0.6;
/// Spread of the initial cloud around `μ₀`.
pub const OU_START_SD: f64 = 0.1;

/// The non-normal OU process (see the module docs) in `d ≥ 2` dimensions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonNormalOu {
    pub d: usize,
}

impl NonNormalOu {
    /// Relaxation rate `λ_k` (`A_kk = −λ_k`).
    pub fn rate(k: usize) -> f64 {
        1.0 + 0.5 * (k % 3) as f64
    }

    /// Shear `A_{k,k+1}` (`k + 1 < d`).
    pub fn shear(k: usize) -> f64 {
        if k.is_multiple_of(2) { 2.0 } else { 0.5 }
    }

    /// Equilibrium `m_k`.
    pub fn equilibrium(k: usize) -> f64 {
        if k.is_multiple_of(2) { -0.3 } else { 0.2 }
    }

    /// Mean `μ₀_k` of the initial cloud.
    pub fn start_mean(k: usize) -> f64 {
        [1.0, -0.5, 0.8, -0.3][k % 4]
    }

    /// Ratio `s_{k+1}/s_k` of the noise scales along the principal axes
    /// of `D` (`s₀ =` [`OU_SIGMA_MAX`]).
    pub fn sigma_ratio(&self) -> f64 {
        libm::pow(OU_CONDITION, -0.5 / (self.d - 1) as f64)
    }
}

impl GroundTruth for NonNormalOu {
    fn d(&self) -> usize {
        self.d
    }

    fn autonomous(&self) -> bool {
        true
    }

    fn drift_at<F: Float>(&self, z: &[F], _t: F, f: &mut [F]) {
        let d = self.d;
        let offset = |k: usize| z[k] - F::from_f64(Self::equilibrium(k));
        for (k, fk) in f[..d].iter_mut().enumerate() {
            *fk = -F::from_f64(Self::rate(k)) * offset(k);
            if k + 1 < d {
                *fk += F::from_f64(Self::shear(k)) * offset(k + 1);
            }
        }
    }

    fn drift_jacobian_at<F: Float>(&self, _z: &[F], _t: F, jac: &mut [F]) {
        let d = self.d;
        jac[..d * d].fill(F::ZERO);
        for k in 0..d {
            jac[k * d + k] = -F::from_f64(Self::rate(k));
            if k + 1 < d {
                jac[k * d + k + 1] = F::from_f64(Self::shear(k));
            }
        }
    }

    /// `G diag(s)`: `diag(s)`, then the rotations by [`OU_ROTATION`] on
    /// the row pairs `(0,1), (1,2), …` applied from the left. O(d²).
    fn factor_at<F: Float>(&self, _z: &[F], _t: F, l: &mut [F]) {
        let d = self.d;
        l[..d * d].fill(F::ZERO);
        let (mut s, ratio) = (OU_SIGMA_MAX, self.sigma_ratio());
        for k in 0..d {
            l[k * d + k] = F::from_f64(s);
            s *= ratio;
        }
        let (sin, cos) = (
            F::from_f64(libm::sin(OU_ROTATION)),
            F::from_f64(libm::cos(OU_ROTATION)),
        );
        for k in 0..d - 1 {
            for c in 0..d {
                let (a, b) = (l[k * d + c], l[(k + 1) * d + c]);
                l[k * d + c] = cos * a - sin * b;
                l[(k + 1) * d + c] = sin * a + cos * b;
            }
        }
    }

    /// `N(μ₀, 0.1² I)`: d normals.
    fn initial_state<F: Float>(&self, rng: &mut Rng, z: &mut [F]) {
        rng.fill_normal(&mut z[..self.d]);
        for (k, x) in z[..self.d].iter_mut().enumerate() {
            *x = F::from_f64(Self::start_mean(k)) + F::from_f64(OU_START_SD) * *x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::tests::check_jacobian;
    use crate::synthetic::{SnapshotDesign, snapshots_workspace_len};
    use std::vec;
    use std::vec::Vec;

    /// Mean and covariance at time `t` by the moment equations
    /// `μ' = A(μ − m)`, `Σ' = AΣ + ΣAᵀ + D` from `(μ₀, 0.01 I)`, RK4 at 4000
    /// steps (error far below any sampling error).
    fn moments(p: &NonNormalOu, t: f64) -> (Vec<f64>, Vec<f64>) {
        let d = p.d;
        let mut a = vec![0.0; d * d];
        p.drift_jacobian_at(&vec![0.0; d], 0.0, &mut a);
        let (mut l, mut dm) = (vec![0.0; d * d], vec![0.0; d * d]);
        p.diffusion_at(&vec![0.0; d], 0.0, &mut l, &mut dm);
        let m: Vec<f64> = (0..d).map(NonNormalOu::equilibrium).collect();
        // State: the mean's offset from m, then Σ.
        let rate = |x: &[f64]| -> Vec<f64> {
            let (mu, s) = x.split_at(d);
            let mut out = vec![0.0; d + d * d];
            for i in 0..d {
                out[i] = (0..d).map(|k| a[i * d + k] * mu[k]).sum();
                for j in 0..d {
                    let as_: f64 = (0..d).map(|k| a[i * d + k] * s[k * d + j]).sum();
                    let sa: f64 = (0..d).map(|k| s[i * d + k] * a[j * d + k]).sum();
                    out[d + i * d + j] = as_ + sa + dm[i * d + j];
                }
            }
            out
        };
        let mut x = vec![0.0; d + d * d];
        for k in 0..d {
            x[k] = NonNormalOu::start_mean(k) - m[k];
            x[d + k * d + k] = OU_START_SD * OU_START_SD;
        }
        let steps = 4000;
        let h = t / steps as f64;
        let axpy = |x: &[f64], k: &[f64], c: f64| -> Vec<f64> {
            x.iter().zip(k).map(|(a, b)| a + c * b).collect()
        };
        for _ in 0..steps {
            let k1 = rate(&x);
            let k2 = rate(&axpy(&x, &k1, h / 2.0));
            let k3 = rate(&axpy(&x, &k2, h / 2.0));
            let k4 = rate(&axpy(&x, &k3, h));
            for i in 0..x.len() {
                x[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
            }
        }
        let mean = (0..d).map(|k| x[k] + m[k]).collect();
        (mean, x[d..].to_vec())
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        for d in [2, 4, 8] {
            check_jacobian(&NonNormalOu { d });
        }
    }

    #[test]
    fn drift_is_stable_non_normal_and_d_has_condition_17() {
        for d in [2, 4, 8] {
            let p = NonNormalOu { d };
            let (mut a, mut l, mut dm) = (vec![0.0; d * d], vec![0.0; d * d], vec![0.0; d * d]);
            let z = vec![0.0; d];
            p.drift_jacobian_at(&z, 0.0, &mut a);
            // Non-normal: A Aᵀ ≠ Aᵀ A.
            let gap: f64 = (0..d * d)
                .map(|c| {
                    let (i, j) = (c / d, c % d);
                    let aat: f64 = (0..d).map(|k| a[i * d + k] * a[j * d + k]).sum();
                    let ata: f64 = (0..d).map(|k| a[k * d + i] * a[k * d + j]).sum();
                    (aat - ata).abs()
                })
                .fold(0.0, f64::max);
            assert!(gap > 1.0, "d = {d}: A is (nearly) normal");
            // The drift vanishes at m.
            let m: Vec<f64> = (0..d).map(NonNormalOu::equilibrium).collect();
            let mut f = vec![1.0; d];
            p.drift_at(&m, 0.0, &mut f);
            assert!(f.iter().all(|x| x.abs() < 1e-15));
            p.diffusion_at(&z, 0.0, &mut l, &mut dm);
            let (mut w, mut v) = (vec![0.0; d], vec![0.0; d * d]);
            crate::linalg::sym_eigen(&mut dm.clone(), d, &mut w, &mut v).unwrap();
            assert!((w[0] / w[d - 1] - OU_CONDITION).abs() < 1e-9, "{w:?}");
            assert!((w[0] - OU_SIGMA_MAX * OU_SIGMA_MAX).abs() < 1e-12);
            // Dense: the rotations mix every neighbouring pair.
            assert!((0..d - 1).all(|k| dm[k * d + k + 1].abs() > 1e-3));
        }
    }

    #[test]
    fn snapshot_moments_match_the_closed_form() {
        let d = 4;
        let p = NonNormalOu { d };
        let bins = [0.0, 0.4, 1.0];
        let n = 4000;
        let design = SnapshotDesign {
            bins: &bins,
            per_bin: n,
            tracked: n,
            seed: 11,
            h_max: 0.002,
        };
        let obs = design.observations();
        let (mut z, mut t, mut track) = (vec![0.0f64; obs * d], vec![0.0; obs], vec![0; obs]);
        let mut ws = vec![0.0; snapshots_workspace_len(&p, &design, 2)];
        p.snapshots(&design, &mut z, &mut t, &mut track, &mut ws)
            .unwrap();
        for (b, &tb) in bins.iter().enumerate() {
            let (mean, cov) = moments(&p, tb);
            let rows = &z[b * n * d..(b + 1) * n * d];
            let nf = n as f64;
            let sample_mean: Vec<f64> = (0..d)
                .map(|k| rows.chunks_exact(d).map(|r| r[k]).sum::<f64>() / nf)
                .collect();
            for k in 0..d {
                let sd = (cov[k * d + k] / nf).sqrt();
                assert!(
                    (sample_mean[k] - mean[k]).abs() < 4.0 * sd,
                    "t = {tb}, mean {k}: {} vs {}",
                    sample_mean[k],
                    mean[k]
                );
            }
            let mut sample_cov = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    let s = rows
                        .chunks_exact(d)
                        .map(|r| (r[i] - sample_mean[i]) * (r[j] - sample_mean[j]))
                        .sum::<f64>()
                        / (nf - 1.0);
                    let (cii, cjj, cij) = (cov[i * d + i], cov[j * d + j], cov[i * d + j]);
                    // Sd of a Gaussian sample covariance.
                    let sd = ((cii * cjj + cij * cij) / nf).sqrt();
                    assert!(
                        (s - cij).abs() < 4.0 * sd,
                        "t = {tb}, cov {i}{j}: {s} vs {cij} (sd {sd})"
                    );
                    sample_cov[i * d + j] = s;
                }
            }
            // All entries at once: tr(Σ⁻¹ S) has mean d and sd √(2d/(n−1))
            // for Gaussian samples (a 10% error in D moves it by ~7 sd).
            let mut whitened = 0.0;
            for j in 0..d {
                let mut column: Vec<f64> = (0..d).map(|i| sample_cov[i * d + j]).collect();
                crate::linalg::solve_in_place(&mut cov.clone(), d, &mut column).unwrap();
                whitened += column[j];
            }
            let sd = (2.0 * d as f64 / (nf - 1.0)).sqrt();
            assert!(
                (whitened - d as f64).abs() < 4.0 * sd,
                "t = {tb}: tr(Σ⁻¹S) = {whitened} vs {d} (sd {sd})"
            );
        }
    }
}
