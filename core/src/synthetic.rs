//! Ground-truth processes with known drift and diffusion: the built-in
//! embryo-like dataset of the demo, the tests and the C example.
//!
//! [`EmbryoProcess`] in `d ≥ 2` dimensions (time in developmental hours/10,
//! say; any unit, the numbers below are in it):
//! - `z₀` is developmental progress: it advances at speed `v₀ = 1`.
//! - `z₁` is the branch axis. Before the split time `t_s = 0.5` it has no
//!   drift; the split switches on (over `τ = 0.08`) a bistable drift
//!   `κ z₁ (b − z₁)(z₁ − c) / (c (b − c))` with stable states `0` (the wild
//!   type backbone) and `b = 1.5` (the branch) and the threshold `c = 0.75`.
//!   Initially 70% of embryos sit near `0` and 30% near `0.95`, above the
//!   threshold, so a branch splits from the backbone after `t_s`. The
//!   drift's slope is `−2κ` at both stable states and `κ` at the threshold:
//!   with `κ = 1.2` and a frame gap of 0.2, `h·|∂f/∂z₁| ≈ 0.5`, the regime
//!   of real imaging where the naive moment target is biased (DESIGN.md).
//! - `z₂ … z_{d−1}` relax towards a multiple of `z₁`:
//!   `f_k = −λ_k (z_k − β_k z₁)` (the branch also changes other features).
//! - The noise is full-rank, anisotropic and state-dependent: on `(z₀, z₁)`
//!   the factor is `s(z) R(θ(z)) diag(σ_a, σ_b)`; both its size `s` and its
//!   principal direction `θ` change between backbone and branch
//!   (`s: 1 → 2`, `θ: 0 → 0.6 rad`); every other coordinate has its own
//!   noise plus a share of the developmental axis's, so `D` is dense.
//!
//! The rows of the factor `L` (d×d) are the coordinates; `D = L Lᵀ`.

use crate::float::Float;
use crate::integrate::Dynamics;
use crate::propagate::DriftJacobian;

/// Developmental speed along `z₀`.
pub const EMBRYO_SPEED: f64 = 1.0;
/// Split time and its switching width.
pub const EMBRYO_SPLIT_TIME: f64 = 0.5;
pub const EMBRYO_SPLIT_WIDTH: f64 = 0.08;
/// Bistable drift on `z₁`: rate, threshold and branch state.
pub const EMBRYO_KAPPA: f64 = 1.2;
pub const EMBRYO_THRESHOLD: f64 = 0.75;
pub const EMBRYO_BRANCH: f64 = 1.5;
/// Noise scales along and across the principal direction on `(z₀, z₁)`.
pub const EMBRYO_SIGMA_ALONG: f64 = 0.25;
pub const EMBRYO_SIGMA_ACROSS: f64 = 0.08;
/// Own noise of `z₂…` and their share of `z₀`'s noise.
pub const EMBRYO_SIGMA_OTHER: f64 = 0.12;
pub const EMBRYO_SIGMA_SHARED: f64 = 0.05;
/// Fraction of embryos starting on the branch side of the threshold.
pub const EMBRYO_BRANCH_FRACTION: f64 = 0.3;

/// The embryo-like process (see the module docs), in `d ≥ 2` dimensions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbryoProcess {
    pub d: usize,
}

/// How far `z` is along the branch (0 on the backbone, 1 on the branch).
fn branch_weight<F: Float>(z1: F) -> F {
    ((z1 - F::from_f64(EMBRYO_THRESHOLD)) / F::from_f64(0.08)).sigmoid()
}

impl EmbryoProcess {
    /// Relaxation rate and coupling of coordinate `k ≥ 2`.
    fn relaxation(k: usize) -> (f64, f64) {
        let lambda = 1.0 + 0.5 * ((k - 2) % 5) as f64;
        let beta = if k.is_multiple_of(2) { 0.4 } else { -0.3 };
        (lambda, beta)
    }

    /// Drift at one state `z` (length d) and time `t`, into `f`.
    pub fn drift_at<F: Float>(&self, z: &[F], t: F, f: &mut [F]) {
        let c = F::from_f64(EMBRYO_THRESHOLD);
        let b = F::from_f64(EMBRYO_BRANCH);
        let on = ((t - F::from_f64(EMBRYO_SPLIT_TIME)) / F::from_f64(EMBRYO_SPLIT_WIDTH)).sigmoid();
        let z1 = z[1];
        f[0] = F::from_f64(EMBRYO_SPEED);
        f[1] = on * F::from_f64(EMBRYO_KAPPA) * z1 * (b - z1) * (z1 - c) / (c * (b - c));
        for k in 2..self.d {
            let (lambda, beta) = Self::relaxation(k);
            f[k] = -F::from_f64(lambda) * (z[k] - F::from_f64(beta) * z1);
        }
    }

    /// Diffusion factor `L` (d×d row-major) at one state, into `l`.
    pub fn factor_at<F: Float>(&self, z: &[F], l: &mut [F]) {
        let d = self.d;
        for x in l[..d * d].iter_mut() {
            *x = F::ZERO;
        }
        let w = branch_weight(z[1]);
        let s = F::ONE + w;
        let theta = F::from_f64(0.6) * w;
        let (sin, cos) = (theta.sin(), theta.cos());
        let (sa, sb) = (
            F::from_f64(EMBRYO_SIGMA_ALONG),
            F::from_f64(EMBRYO_SIGMA_ACROSS),
        );
        // s R(θ) diag(σa, σb), R = [[cos, −sin], [sin, cos]].
        l[0] = s * cos * sa;
        l[1] = -s * sin * sb;
        l[d] = s * sin * sa;
        l[d + 1] = s * cos * sb;
        for k in 2..d {
            l[k * d] = F::from_f64(EMBRYO_SIGMA_SHARED);
            l[k * d + k] = F::from_f64(EMBRYO_SIGMA_OTHER);
        }
    }

    /// `D = L Lᵀ` (d×d) at one state, into `dm`; `l` is d×d scratch.
    pub fn diffusion_at<F: Float>(&self, z: &[F], l: &mut [F], dm: &mut [F]) {
        let d = self.d;
        self.factor_at(z, l);
        for i in 0..d {
            for j in 0..d {
                let mut s = F::ZERO;
                for k in 0..d {
                    s += l[i * d + k] * l[j * d + k];
                }
                dm[i * d + j] = s;
            }
        }
    }

    /// Initial state of embryo number `index` given two standard normals
    /// per coordinate source: `u` uniform in [0,1) picks the side of the
    /// threshold, `noise` (length d) spreads the cloud.
    pub fn initial_state<F: Float>(&self, u: f64, noise: &[F], z: &mut [F]) {
        let centre = if u < EMBRYO_BRANCH_FRACTION {
            0.95
        } else {
            0.0
        };
        z[0] = F::from_f64(0.1) * noise[0];
        z[1] = F::from_f64(centre) + F::from_f64(0.05) * noise[1];
        for k in 2..self.d {
            z[k] = F::from_f64(0.1) * noise[k];
        }
    }
}

impl<F: Float> Dynamics<F> for EmbryoProcess {
    fn dim(&self) -> usize {
        self.d
    }
    fn noise_dim(&self) -> usize {
        self.d
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[F], t: &[F], f: &mut [F], _workspace: &mut [F]) {
        let d = self.d;
        for (r, &tr) in t.iter().enumerate() {
            self.drift_at(&z[r * d..(r + 1) * d], tr, &mut f[r * d..(r + 1) * d]);
        }
    }
    fn drift_and_factor(&self, z: &[F], t: &[F], f: &mut [F], l: &mut [F], workspace: &mut [F]) {
        let d = self.d;
        self.drift(z, t, f, workspace);
        for r in 0..t.len() {
            self.factor_at(&z[r * d..(r + 1) * d], &mut l[r * d * d..(r + 1) * d * d]);
        }
    }
}

impl<F: Float> DriftJacobian<F> for EmbryoProcess {
    fn jacobian_workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift_jacobian(&self, z: &[F], t: &[F], f: &mut [F], jac: &mut [F], workspace: &mut [F]) {
        let d = self.d;
        self.drift(z, t, f, workspace);
        let c = F::from_f64(EMBRYO_THRESHOLD);
        let b = F::from_f64(EMBRYO_BRANCH);
        for (r, &tr) in t.iter().enumerate() {
            let j = &mut jac[r * d * d..(r + 1) * d * d];
            j.fill(F::ZERO);
            let on =
                ((tr - F::from_f64(EMBRYO_SPLIT_TIME)) / F::from_f64(EMBRYO_SPLIT_WIDTH)).sigmoid();
            let z1 = z[r * d + 1];
            // d/dz₁ of z₁(b − z₁)(z₁ − c) = −3z₁² + 2(b + c)z₁ − bc.
            let slope = -F::from_f64(3.0) * z1 * z1 + F::TWO * (b + c) * z1 - b * c;
            j[d + 1] = on * F::from_f64(EMBRYO_KAPPA) * slope / (c * (b - c));
            for k in 2..d {
                let (lambda, beta) = Self::relaxation(k);
                j[k * d + k] = -F::from_f64(lambda);
                j[k * d + 1] = F::from_f64(lambda * beta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bistable_drift_has_the_documented_fixed_points() {
        let p = EmbryoProcess { d: 3 };
        let mut f = [0.0f64; 3];
        for (z1, sign) in [(-0.1, 1.0), (0.5, -1.0), (1.0, 1.0), (1.8, -1.0)] {
            p.drift_at(&[0.0, z1, 0.0], 2.0, &mut f);
            assert_eq!(f[1].signum(), sign, "z1 = {z1}");
        }
        for z1 in [0.0, EMBRYO_THRESHOLD, EMBRYO_BRANCH] {
            p.drift_at(&[0.0, z1, 0.0], 2.0, &mut f);
            assert!(f[1].abs() < 1e-12);
        }
        // Before the split z1 has (almost) no drift.
        p.drift_at(&[0.0, 1.0, 0.0], 0.0, &mut f);
        assert!(f[1].abs() < 0.01);
    }

    #[test]
    fn diffusion_is_full_rank_anisotropic_and_state_dependent() {
        let p = EmbryoProcess { d: 4 };
        let (mut l, mut dm) = ([0.0f64; 16], [0.0f64; 16]);
        let mut eig = |z1: f64| {
            p.diffusion_at(&[0.0, z1, 0.0, 0.0], &mut l, &mut dm);
            let mut a = dm;
            let (mut w, mut v) = ([0.0; 4], [0.0; 16]);
            crate::linalg::sym_eigen(&mut a, 4, &mut w, &mut v).unwrap();
            (w, dm)
        };
        let (w_backbone, d_backbone) = eig(0.0);
        let (w_branch, d_branch) = eig(EMBRYO_BRANCH);
        assert!(w_backbone[3] > 1e-4, "full rank: {w_backbone:?}");
        assert!(w_backbone[0] / w_backbone[3] > 5.0, "anisotropic");
        assert!(w_branch[0] > 3.0 * w_backbone[0], "noisier on the branch");
        // Off-diagonal coupling of (z0, z1) appears on the branch.
        assert!(d_backbone[1].abs() < 1e-3 && d_branch[1].abs() > 0.02);
    }
}
