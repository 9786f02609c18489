//! A noise-driven pitchfork: [`Pitchfork`] in `d ≥ 2` dimensions.
//!
//! - `z₀` is progression at constant speed `v = 1`.
//! - `z₁` is bistable: `f₁ = κ z₁ (b² − z₁²)/(b² + z₁²)`, `κ = 2.5`,
//!   `b = 1`: unstable at 0 (slope `κ`), stable at `±b` (slope `−κ`), and
//!   restoring like `−κ z₁` far out. At the frame gap 0.2, `hκ = 0.5`.
//!   Embryos start near the unstable point, slightly to its upper side
//!   (`z₁ ~ N(0.06, 0.03²)`): without noise about 2% would take the lower
//!   branch; the noise near 0 (sd about 0.23 per unit time along `z₁`)
//!   sends about a quarter there. The branch share is set by the noise, so
//!   a drift-only model gets it wrong.
//! - `z₂ … z_{d−1}` are slaved to a curved manifold of the first two:
//!   `f_k = −λ_k (z_k − g_k)`, `g_k = α_k z₁² + β_k z₀ z₁`, `λ_k = 1.5, 2,
//!   2.5, …`, so the branches bend as progression goes on.
//! - The noise is state-dependent, rotated and anisotropic: on `(z₀, z₁)`
//!   the factor is `s(z₁) R(θ(z₁)) diag(0.3, 0.1)` with `θ = 0.8 + 0.4
//!   tanh(z₁/b)` (a different principal direction on each branch) and
//!   `s = 1 − ½ z₁²/(b² + z₁²)` (quieter on the branches); every other
//!   coordinate has its own noise 0.1 and shares of the first two's. The
//!   whole factor is scaled by [`Pitchfork::noise`] (1 for the suite).
//!
//! Time-homogeneous: drift and `D` depend on the state only.

use super::GroundTruth;
use crate::MAX_DIM;
use crate::float::Float;
use crate::rng::Rng;

/// Progression speed along `z₀`.
pub const PITCHFORK_SPEED: f64 = 1.0;
/// Rate `κ` and branch state `b` of the bistable axis.
pub const PITCHFORK_KAPPA: f64 = 2.5;
pub const PITCHFORK_BRANCH: f64 = 1.0;
/// Initial mean and sd of `z₁` (just above the unstable point).
pub const PITCHFORK_START: f64 = 0.06;
pub const PITCHFORK_START_SD: f64 = 0.03;
/// Noise scales along and across the principal direction on `(z₀, z₁)`.
pub const PITCHFORK_SIGMA_ALONG: f64 = 0.3;
pub const PITCHFORK_SIGMA_ACROSS: f64 = 0.1;
/// Own noise of `z₂…` and their shares of `z₀`'s and `z₁`'s.
pub const PITCHFORK_SIGMA_OTHER: f64 = 0.1;
pub const PITCHFORK_SIGMA_SHARED: f64 = 0.05;

/// The noise-driven pitchfork (see the module docs) in `d ≥ 2` dimensions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pitchfork {
    pub d: usize,
    /// Factor scaling the whole noise (`D` scales by its square).
    pub noise: f64,
}

impl Pitchfork {
    /// The suite's pitchfork (noise scale 1).
    pub fn new(d: usize) -> Self {
        Pitchfork { d, noise: 1.0 }
    }

    /// Relaxation rate `λ_k` and manifold coefficients `(α_k, β_k)` of
    /// coordinate `k ≥ 2`.
    fn slaved(k: usize) -> (f64, f64, f64) {
        let lambda = 1.5 + 0.5 * ((k - 2) % 3) as f64;
        let alpha = if k.is_multiple_of(2) { 0.6 } else { -0.4 };
        let beta = if k % 4 < 2 { 0.4 } else { -0.5 };
        (lambda, alpha, beta)
    }
}

impl GroundTruth for Pitchfork {
    fn d(&self) -> usize {
        self.d
    }

    fn autonomous(&self) -> bool {
        true
    }

    fn drift_at<F: Float>(&self, z: &[F], _t: F, f: &mut [F]) {
        let b2 = F::from_f64(PITCHFORK_BRANCH * PITCHFORK_BRANCH);
        let (z0, z1) = (z[0], z[1]);
        let u = z1 * z1;
        f[0] = F::from_f64(PITCHFORK_SPEED);
        f[1] = F::from_f64(PITCHFORK_KAPPA) * z1 * (b2 - u) / (b2 + u);
        for k in 2..self.d {
            let (lambda, alpha, beta) = Self::slaved(k);
            let g = F::from_f64(alpha) * u + F::from_f64(beta) * z0 * z1;
            f[k] = -F::from_f64(lambda) * (z[k] - g);
        }
    }

    fn drift_jacobian_at<F: Float>(&self, z: &[F], _t: F, jac: &mut [F]) {
        let d = self.d;
        jac[..d * d].fill(F::ZERO);
        let b2 = F::from_f64(PITCHFORK_BRANCH * PITCHFORK_BRANCH);
        let (z0, z1) = (z[0], z[1]);
        let u = z1 * z1;
        let den = b2 + u;
        // d/dz₁ of z₁(b² − u)/(b² + u) = (b² − u)/(b² + u) − 4b²u/(b² + u)².
        jac[d + 1] = F::from_f64(PITCHFORK_KAPPA)
            * ((b2 - u) / den - F::from_f64(4.0) * b2 * u / (den * den));
        for k in 2..d {
            let (lambda, alpha, beta) = Self::slaved(k);
            let lambda = F::from_f64(lambda);
            jac[k * d] = lambda * F::from_f64(beta) * z1;
            jac[k * d + 1] = lambda * (F::TWO * F::from_f64(alpha) * z1 + F::from_f64(beta) * z0);
            jac[k * d + k] = -lambda;
        }
    }

    fn factor_at<F: Float>(&self, z: &[F], _t: F, l: &mut [F]) {
        let d = self.d;
        l[..d * d].fill(F::ZERO);
        let b = F::from_f64(PITCHFORK_BRANCH);
        let z1 = z[1];
        let u = z1 * z1;
        let scale = F::from_f64(self.noise);
        let s = scale * (F::ONE - F::HALF * u / (b * b + u));
        let theta = F::from_f64(0.8) + F::from_f64(0.4) * (z1 / b).tanh();
        let (sin, cos) = (theta.sin(), theta.cos());
        let (sa, sb) = (
            F::from_f64(PITCHFORK_SIGMA_ALONG),
            F::from_f64(PITCHFORK_SIGMA_ACROSS),
        );
        // s R(θ) diag(σa, σb), R = [[cos, −sin], [sin, cos]].
        l[0] = s * cos * sa;
        l[1] = -s * sin * sb;
        l[d] = s * sin * sa;
        l[d + 1] = s * cos * sb;
        let shared = scale * F::from_f64(PITCHFORK_SIGMA_SHARED);
        for k in 2..d {
            l[k * d] = shared;
            l[k * d + 1] = if k.is_multiple_of(2) { shared } else { -shared };
            l[k * d + k] = scale * F::from_f64(PITCHFORK_SIGMA_OTHER);
        }
    }

    /// `z₀ ~ N(0, 0.1²)`, `z₁ ~ N(0.06, 0.03²)`, `z_k ~ N(g_k(z₀, z₁),
    /// 0.05²)`: d normals.
    fn initial_state<F: Float>(&self, rng: &mut Rng, z: &mut [F]) {
        let d = self.d;
        let mut noise = [F::ZERO; MAX_DIM];
        rng.fill_normal(&mut noise[..d]);
        let (z0, z1) = (
            F::from_f64(0.1) * noise[0],
            F::from_f64(PITCHFORK_START) + F::from_f64(PITCHFORK_START_SD) * noise[1],
        );
        z[0] = z0;
        z[1] = z1;
        for k in 2..d {
            let (_, alpha, beta) = Self::slaved(k);
            let g = F::from_f64(alpha) * z1 * z1 + F::from_f64(beta) * z0 * z1;
            z[k] = g + F::from_f64(0.05) * noise[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamics::Dynamics;
    use crate::integrate::rollout::{
        MAX_BLOCK_ROWS, Method, RolloutConfig, Start, rollout, rollout_workspace_len,
    };
    use crate::integrate::sde::SdeConfig;
    use crate::rng::Family;
    use crate::synthetic::tests::check_jacobian;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn jacobian_matches_finite_differences() {
        for d in [2, 4, 8] {
            check_jacobian(&Pitchfork::new(d));
            check_jacobian(&Pitchfork { d, noise: 0.5 });
        }
    }

    #[test]
    fn bistable_axis_has_its_fixed_points_and_slopes() {
        let p = Pitchfork::new(3);
        let (mut f, mut jac) = ([0.0f64; 3], [0.0f64; 9]);
        for (z1, slope) in [
            (0.0, PITCHFORK_KAPPA),
            (1.0, -PITCHFORK_KAPPA),
            (-1.0, -PITCHFORK_KAPPA),
        ] {
            let z = [0.3, z1, 0.0];
            p.drift_at(&z, 0.0, &mut f);
            p.drift_jacobian_at(&z, 0.0, &mut jac);
            assert!(
                f[1].abs() < 1e-15 && (jac[4] - slope).abs() < 1e-12,
                "z1 = {z1}"
            );
        }
    }

    /// Shares of `n` embryos on the lower branch (`z₁ < 0`) and off the
    /// unstable point (`|z₁| > b/2`) at `t = 1.5`, Euler–Maruyama at step
    /// 0.002.
    fn shares(p: &Pitchfork, n: usize) -> (f64, f64) {
        let d = p.d;
        let mut start = vec![0.0f64; n * d];
        for (i, row) in start.chunks_exact_mut(d).enumerate() {
            p.initial_state(&mut Rng::stream(4, Family::Data, i as u64), row);
        }
        let cfg = RolloutConfig {
            method: Method::EulerMaruyama(SdeConfig {
                h_max: 0.002,
                trace_clip: None,
            }),
            seed: 4,
            block_rows: MAX_BLOCK_ROWS,
        };
        let (mut out, mut stops) = (vec![0.0; n * d], vec![0.0; n]);
        let mut ws = vec![0.0; rollout_workspace_len(p, &cfg, 1)];
        rollout(
            p,
            Start::Cloud(&start),
            0.0,
            &[1.5],
            &cfg,
            &mut out,
            &mut stops,
            &mut ws,
        )
        .unwrap();
        assert_eq!(Dynamics::<f64>::noise_dim(p), d);
        let share = |keep: &dyn Fn(f64) -> bool| {
            out.chunks_exact(d).filter(|z| keep(z[1])).count() as f64 / n as f64
        };
        (
            share(&|z1| z1 < 0.0),
            share(&|z1| z1.abs() > 0.5 * PITCHFORK_BRANCH),
        )
    }

    #[test]
    fn branch_share_is_set_by_the_noise() {
        let n = 2000;
        // Without noise only the initial states below 0 take the lower
        // branch: Φ(−0.06/0.03) = 2.3%.
        let (shares, settled): (Vec<f64>, Vec<f64>) = [0.0, 0.5, 1.0]
            .iter()
            .map(|&noise| shares(&Pitchfork { d: 2, noise }, n))
            .unzip();
        let sd = |p: f64| (p * (1.0 - p) / n as f64).sqrt();
        assert!((shares[0] - 0.0228).abs() < 4.0 * sd(0.0228), "{shares:?}");
        // Linearised at 0 (growth κ, noise variance σ₁² ≈ 0.051 per unit
        // time along z₁): the lower share is about
        // Φ(−0.06 / √(0.03² + noise²·σ₁²/(2κ))): 15% at half the noise, 28%
        // at the full noise. The nonlinearity moves it a little.
        assert!(shares[1] > 0.10 && shares[1] < 0.20, "{shares:?}");
        assert!(shares[2] > 0.22 && shares[2] < 0.34, "{shares:?}");
        // By t = 1.5 most embryos have left the unstable point for a branch
        // (measured 86-93%).
        assert!(settled.iter().all(|&s| s > 0.8), "{settled:?}");
    }
}
