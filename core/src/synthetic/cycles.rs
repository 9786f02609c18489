//! Limit cycles with noise along the motion: [`LimitCycles`] in `d ≥ 2`
//! dimensions.
//!
//! - One rotating plane `(z₀, z₁)` for `d < 4`, two (`(z₀, z₁)`, `(z₂, z₃)`)
//!   for `d ≥ 4`. In plane `p` (coordinates `x`, radius `r = ‖x‖`):
//!   `f = α (1 − r²/ρ_p²) x + ω_p J x`, `J x = (−x₁, x₀)`: a stable circle
//!   of radius `ρ = 1, 0.7` (radial slope `−2α`, `α = 1`) turning at
//!   `ω = 3.7, 3.5` rad per time unit (periods 1.70 and 1.80). At the frame
//!   gap 0.2 the embryos turn by 0.74 rad between bins; on the circle
//!   `h‖∂f/∂z‖ ≈ 0.95` (the rotation and the radial slope together).
//! - The other coordinates (`d ≥ 5`, or `z₂` at `d = 3`) relax weakly
//!   towards 0: `f_k = −λ_k z_k`, `λ_k = 0.3, 0.4, 0.5, …`, from `±0.5`.
//! - The noise in each plane is mostly along the motion and grows with
//!   time: `L = a(t) (σ_r I + (σ_t − σ_r) u uᵀ)`, `u = J x / √(r² + ε²)`
//!   (the direction of motion, `ε = 0.1 ρ`), `σ_t = 0.25`, `σ_r = 0.06`,
//!   `a(t) = e^{0.6 t}`; the other coordinates have noise 0.1. `D` is
//!   state-dependent (it turns with the phase) and time-dependent.
//! - Each plane starts as an arc: phase `φ_p + N(0, 0.3²)` (`φ = 0, 1`),
//!   radius `ρ_p (1 + N(0, 0.03²))`, so the cloud turns visibly.
//!
//! Not time-homogeneous (the noise grows with `t`); the drift is.

use super::GroundTruth;
use crate::MAX_DIM;
use crate::float::Float;
use crate::rng::Rng;

/// Radial rate `α` of every plane.
pub const CYCLES_ALPHA: f64 = 1.0;
/// Radius `ρ`, angular speed `ω` and initial phase of each plane.
pub const CYCLES_RADIUS: [f64; 2] = [1.0, 0.7];
pub const CYCLES_OMEGA: [f64; 2] = [3.7, 3.5];
pub const CYCLES_PHASE: [f64; 2] = [0.0, 1.0];
/// Noise along and across the motion, and its growth rate `γ` in
/// `a(t) = e^{γt}`.
pub const CYCLES_SIGMA_ALONG: f64 = 0.25;
pub const CYCLES_SIGMA_ACROSS: f64 = 0.06;
pub const CYCLES_NOISE_GROWTH: f64 = 0.6;
/// Noise of the relaxing coordinates.
pub const CYCLES_SIGMA_OTHER: f64 = 0.1;

/// The limit cycles (see the module docs) in `d ≥ 2` dimensions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitCycles {
    pub d: usize,
}

impl LimitCycles {
    /// Rotating planes: 1 for `d < 4`, else 2.
    pub fn planes(&self) -> usize {
        if self.d < 4 { 1 } else { 2 }
    }

    /// Relaxation rate `λ_k` of a coordinate `k ≥ 2·planes`.
    fn rate(&self, k: usize) -> f64 {
        0.3 + 0.1 * ((k - 2 * self.planes()) % 3) as f64
    }
}

impl GroundTruth for LimitCycles {
    fn d(&self) -> usize {
        self.d
    }

    fn autonomous(&self) -> bool {
        false
    }

    fn drift_at<F: Float>(&self, z: &[F], _t: F, f: &mut [F]) {
        let alpha = F::from_f64(CYCLES_ALPHA);
        for p in 0..self.planes() {
            let (x0, x1) = (z[2 * p], z[2 * p + 1]);
            let rho = F::from_f64(CYCLES_RADIUS[p]);
            let radial = alpha * (F::ONE - (x0 * x0 + x1 * x1) / (rho * rho));
            let omega = F::from_f64(CYCLES_OMEGA[p]);
            f[2 * p] = radial * x0 - omega * x1;
            f[2 * p + 1] = radial * x1 + omega * x0;
        }
        for k in 2 * self.planes()..self.d {
            f[k] = -F::from_f64(self.rate(k)) * z[k];
        }
    }

    fn drift_jacobian_at<F: Float>(&self, z: &[F], _t: F, jac: &mut [F]) {
        let d = self.d;
        jac[..d * d].fill(F::ZERO);
        let alpha = F::from_f64(CYCLES_ALPHA);
        for p in 0..self.planes() {
            let (i, j) = (2 * p, 2 * p + 1);
            let (x0, x1) = (z[i], z[j]);
            let rho2 = F::from_f64(CYCLES_RADIUS[p] * CYCLES_RADIUS[p]);
            let radial = alpha * (F::ONE - (x0 * x0 + x1 * x1) / rho2);
            // ∂/∂x of α(1 − r²/ρ²) x is α(1 − r²/ρ²) I − 2α x xᵀ/ρ².
            let c = F::TWO * alpha / rho2;
            let omega = F::from_f64(CYCLES_OMEGA[p]);
            jac[i * d + i] = radial - c * x0 * x0;
            jac[i * d + j] = -c * x0 * x1 - omega;
            jac[j * d + i] = -c * x1 * x0 + omega;
            jac[j * d + j] = radial - c * x1 * x1;
        }
        for k in 2 * self.planes()..d {
            jac[k * d + k] = -F::from_f64(self.rate(k));
        }
    }

    fn factor_at<F: Float>(&self, z: &[F], t: F, l: &mut [F]) {
        let d = self.d;
        l[..d * d].fill(F::ZERO);
        let a = (F::from_f64(CYCLES_NOISE_GROWTH) * t).exp();
        let (along, across) = (
            F::from_f64(CYCLES_SIGMA_ALONG),
            F::from_f64(CYCLES_SIGMA_ACROSS),
        );
        for (p, rho) in CYCLES_RADIUS.iter().take(self.planes()).enumerate() {
            let (i, j) = (2 * p, 2 * p + 1);
            let eps = F::from_f64(0.1 * rho);
            let norm = (z[i] * z[i] + z[j] * z[j] + eps * eps).sqrt();
            // u = J x / √(r² + ε²), the direction of motion.
            let (u0, u1) = (-z[j] / norm, z[i] / norm);
            let extra = along - across;
            l[i * d + i] = a * (across + extra * u0 * u0);
            l[i * d + j] = a * extra * u0 * u1;
            l[j * d + i] = a * extra * u1 * u0;
            l[j * d + j] = a * (across + extra * u1 * u1);
        }
        for k in 2 * self.planes()..d {
            l[k * d + k] = F::from_f64(CYCLES_SIGMA_OTHER);
        }
    }

    /// Per plane a phase and a radius (two normals), then one normal per
    /// relaxing coordinate.
    fn initial_state<F: Float>(&self, rng: &mut Rng, z: &mut [F]) {
        let d = self.d;
        let mut noise = [F::ZERO; MAX_DIM];
        rng.fill_normal(&mut noise[..d]);
        for p in 0..self.planes() {
            let phase = F::from_f64(CYCLES_PHASE[p]) + F::from_f64(0.3) * noise[2 * p];
            let radius =
                F::from_f64(CYCLES_RADIUS[p]) * (F::ONE + F::from_f64(0.03) * noise[2 * p + 1]);
            z[2 * p] = radius * phase.cos();
            z[2 * p + 1] = radius * phase.sin();
        }
        for k in 2 * self.planes()..d {
            let centre = if k.is_multiple_of(2) { 0.5 } else { -0.5 };
            z[k] = F::from_f64(centre) + F::from_f64(0.1) * noise[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::tests::check_jacobian;

    #[test]
    fn jacobian_matches_finite_differences() {
        for d in [2, 3, 4, 8] {
            check_jacobian(&LimitCycles { d });
        }
    }

    #[test]
    fn circles_are_invariant_and_noise_runs_along_the_motion_growing_in_time() {
        let p = LimitCycles { d: 8 };
        let (mut f, mut l, mut dm) = ([0.0f64; 8], [0.0f64; 64], [0.0f64; 64]);
        for (plane, phase) in [(0, 0.4), (1, 2.0)] {
            let rho = CYCLES_RADIUS[plane];
            let mut z = [0.0f64; 8];
            z[2 * plane] = rho * libm::cos(phase);
            z[2 * plane + 1] = rho * libm::sin(phase);
            p.drift_at(&z, 0.0, &mut f);
            // On the circle the drift is ω J x: tangent, speed ω ρ.
            let (x, v) = (&z[2 * plane..2 * plane + 2], &f[2 * plane..2 * plane + 2]);
            assert!((x[0] * v[0] + x[1] * v[1]).abs() < 1e-12);
            let speed = (v[0] * v[0] + v[1] * v[1]).sqrt();
            assert!((speed - CYCLES_OMEGA[plane] * rho).abs() < 1e-12);
            // D along the motion is a²(σ_r + (σ_t − σ_r)/(1 + 0.01))², across it a² σ_r².
            for t in [0.0, 1.0] {
                p.diffusion_at(&z, t, &mut l, &mut dm);
                let a2 = libm::exp(2.0 * CYCLES_NOISE_GROWTH * t);
                let (i, j) = (2 * plane, 2 * plane + 1);
                let quad = |w: [f64; 2]| {
                    w[0] * w[0] * dm[i * 8 + i]
                        + 2.0 * w[0] * w[1] * dm[i * 8 + j]
                        + w[1] * w[1] * dm[j * 8 + j]
                };
                let tangent = [-libm::sin(phase), libm::cos(phase)];
                let radial = [libm::cos(phase), libm::sin(phase)];
                let along =
                    CYCLES_SIGMA_ACROSS + (CYCLES_SIGMA_ALONG - CYCLES_SIGMA_ACROSS) / (1.0 + 0.01);
                assert!((quad(tangent) - a2 * along * along).abs() < 1e-12);
                assert!(
                    (quad(radial) - a2 * CYCLES_SIGMA_ACROSS * CYCLES_SIGMA_ACROSS).abs() < 1e-12
                );
            }
        }
        assert_eq!(LimitCycles { d: 2 }.planes(), 1);
        assert_eq!(p.planes(), 2);
    }
}
