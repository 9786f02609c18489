//! The embryo-like process of the demo, the tests and the C example:
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
//! The rows of the factor `L` (d×d) are the coordinates; `D = L Lᵀ`. Not
//! time-homogeneous: the split switches on at `t_s`.

use super::GroundTruth;
use crate::MAX_DIM;
use crate::float::Float;
use crate::rng::Rng;

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

    /// How far the split has switched on at time `t` (0 before, 1 after).
    fn split_on<F: Float>(t: F) -> F {
        ((t - F::from_f64(EMBRYO_SPLIT_TIME)) / F::from_f64(EMBRYO_SPLIT_WIDTH)).sigmoid()
    }
}

impl GroundTruth for EmbryoProcess {
    fn d(&self) -> usize {
        self.d
    }

    fn autonomous(&self) -> bool {
        false
    }

    fn drift_at<F: Float>(&self, z: &[F], t: F, f: &mut [F]) {
        let c = F::from_f64(EMBRYO_THRESHOLD);
        let b = F::from_f64(EMBRYO_BRANCH);
        let on = Self::split_on(t);
        let z1 = z[1];
        f[0] = F::from_f64(EMBRYO_SPEED);
        f[1] = on * F::from_f64(EMBRYO_KAPPA) * z1 * (b - z1) * (z1 - c) / (c * (b - c));
        for k in 2..self.d {
            let (lambda, beta) = Self::relaxation(k);
            f[k] = -F::from_f64(lambda) * (z[k] - F::from_f64(beta) * z1);
        }
    }

    fn drift_jacobian_at<F: Float>(&self, z: &[F], t: F, jac: &mut [F]) {
        let d = self.d;
        let c = F::from_f64(EMBRYO_THRESHOLD);
        let b = F::from_f64(EMBRYO_BRANCH);
        jac[..d * d].fill(F::ZERO);
        let on = Self::split_on(t);
        let z1 = z[1];
        // d/dz₁ of z₁(b − z₁)(z₁ − c) = −3z₁² + 2(b + c)z₁ − bc.
        let slope = -F::from_f64(3.0) * z1 * z1 + F::TWO * (b + c) * z1 - b * c;
        jac[d + 1] = on * F::from_f64(EMBRYO_KAPPA) * slope / (c * (b - c));
        for k in 2..d {
            let (lambda, beta) = Self::relaxation(k);
            jac[k * d + k] = -F::from_f64(lambda);
            jac[k * d + 1] = F::from_f64(lambda * beta);
        }
    }

    /// `s(z) R(θ(z)) diag(σ_a, σ_b)` on `(z₀, z₁)` (see the module docs);
    /// independent of `t`.
    fn factor_at<F: Float>(&self, z: &[F], _t: F, l: &mut [F]) {
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

    /// A uniform picks the side of the threshold (the branch side with
    /// probability [`EMBRYO_BRANCH_FRACTION`]), then d normals spread the
    /// cloud: sd 0.1 on `z₀` and `z₂…`, 0.05 on `z₁` around 0 or 0.95.
    fn initial_state<F: Float>(&self, rng: &mut Rng, z: &mut [F]) {
        let u = rng.uniform();
        let mut noise = [F::ZERO; MAX_DIM];
        rng.fill_normal(&mut noise[..self.d]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::tests::check_jacobian;

    #[test]
    fn jacobian_matches_finite_differences() {
        for d in [2, 4, 8] {
            check_jacobian(&EmbryoProcess { d });
        }
    }

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
            p.diffusion_at(&[0.0, z1, 0.0, 0.0], 0.0, &mut l, &mut dm);
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
