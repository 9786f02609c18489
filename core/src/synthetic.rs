//! Ground-truth processes with known drift and diffusion: the built-in
//! embryo-like dataset of the demo, the tests and the C example, and the
//! snapshot sampler ([`snapshots`]) that observes any SDE the same way.
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

use crate::MAX_DIM;
use crate::error::{Arena, Detail, Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::integrate::Dynamics;
use crate::integrate::rollout::{
    MAX_BLOCK_ROWS, Method, RolloutConfig, Start, rollout, rollout_workspace_len,
};
use crate::integrate::sde::EmConfig;
use crate::propagate::DriftJacobian;
use crate::rng::{Family, Rng};
use crate::sampler::UNTRACKED;

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

/// How a snapshot dataset is observed: at the increasing times `bins`
/// (the first is the start), `per_bin` embryos per bin, of which `tracked`
/// are the same embryos in every bin (track ids `0..tracked`) and the rest
/// are fresh untracked embryos seen once.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotDesign<'a, F> {
    pub bins: &'a [F],
    pub per_bin: usize,
    pub tracked: usize,
    /// Seed of the initial states (`Family::Data`, one stream per embryo)
    /// and of the noise (`Family::Trajectory`, one stream per embryo).
    pub seed: u64,
    /// Largest Euler–Maruyama substep of the simulation (time units).
    pub h_max: F,
}

impl<F: Float> SnapshotDesign<'_, F> {
    /// Embryos simulated: the tracked ones and every bin's untracked ones.
    pub fn embryos(&self) -> usize {
        self.tracked + self.bins.len() * (self.per_bin - self.tracked.min(self.per_bin))
    }

    /// Observations written: `bins.len() × per_bin`.
    pub fn observations(&self) -> usize {
        self.bins.len() * self.per_bin
    }

    fn check(&self) -> Result<()> {
        if self.bins.len() < 2 {
            return Err(Error::bad_config(
                "bins",
                "needs at least two observation times",
            ));
        }
        check_finite(self.bins, "bins")?;
        if self.bins.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::bad_config("bins", "times must increase"));
        }
        if self.per_bin == 0 || self.tracked > self.per_bin {
            return Err(Error::bad_config(
                "tracked",
                "need 1 ≤ per_bin and tracked ≤ per_bin",
            ));
        }
        Ok(())
    }

    fn rollout_config(&self) -> RolloutConfig<F> {
        RolloutConfig {
            method: Method::EulerMaruyama(EmConfig {
                h_max: self.h_max,
                trace_clip: None,
            }),
            seed: self.seed,
            block_rows: MAX_BLOCK_ROWS,
        }
    }
}

/// Workspace elements [`snapshots`] (and [`EmbryoProcess::snapshots`])
/// need for `dynamics` with `workers` rollout workers.
pub fn snapshots_workspace_len<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    design: &SnapshotDesign<'_, F>,
    workers: usize,
) -> usize {
    let (e, k, d) = (design.embryos(), design.bins.len(), dynamics.dim());
    e * d
        + e * k.saturating_sub(1) * d
        + e
        + rollout_workspace_len(dynamics, &design.rollout_config(), workers)
}

/// Samples a snapshot dataset of any SDE (see [`SnapshotDesign`]) by
/// Euler–Maruyama rollouts: `initial(embryo, rng, z)` writes embryo
/// `embryo`'s state at `bins[0]` into `z` (length d), drawing from its own
/// stream `Rng::stream(seed, Family::Data, embryo)`. Writes observations `z`
/// (`obs × d`), times `t` and track ids `track` ([`UNTRACKED`] for
/// untracked), bin by bin, each bin's tracked embryos first. The workspace
/// is at least [`snapshots_workspace_len`] long (its size sets the worker
/// count).
pub fn snapshots<F: Float, S: Dynamics<F> + Sync>(
    dynamics: &S,
    mut initial: impl FnMut(usize, &mut Rng, &mut [F]),
    design: &SnapshotDesign<'_, F>,
    z: &mut [F],
    t: &mut [F],
    track: &mut [u32],
    workspace: &mut [F],
) -> Result<()> {
    design.check()?;
    let (d, k) = (dynamics.dim(), design.bins.len());
    let (e, obs) = (design.embryos(), design.observations());
    check_len(z, checked_mul(obs, d, "z")?, "z")?;
    check_len(t, obs, "t")?;
    check_len(track, obs, "track")?;
    let mut arena = Arena::new(workspace);
    let start = arena.take(e * d)?;
    let paths = arena.take(e * (k - 1) * d)?;
    let stops = arena.take(e)?;
    let rollout_ws = arena.rest();
    for (i, row) in start.chunks_exact_mut(d).enumerate() {
        initial(
            i,
            &mut Rng::stream(design.seed, Family::Data, i as u64),
            row,
        );
    }
    rollout(
        dynamics,
        Start::Cloud(start),
        design.bins[0],
        &design.bins[1..],
        &design.rollout_config(),
        paths,
        stops,
        rollout_ws,
    )?;
    let fresh = design.per_bin - design.tracked;
    let mut row = 0;
    for (b, &tb) in design.bins.iter().enumerate() {
        let untracked = design.tracked + b * fresh..design.tracked + (b + 1) * fresh;
        for embryo in (0..design.tracked).chain(untracked) {
            let state = match b {
                0 => &start[embryo * d..(embryo + 1) * d],
                _ => &paths[((embryo * (k - 1)) + b - 1) * d..][..d],
            };
            z[row * d..(row + 1) * d].copy_from_slice(state);
            t[row] = tb;
            track[row] = if embryo < design.tracked {
                embryo as u32
            } else {
                UNTRACKED
            };
            row += 1;
        }
    }
    Ok(())
}

impl EmbryoProcess {
    /// The built-in dataset: [`snapshots`] of this process from
    /// [`EmbryoProcess::initial_state`] (a uniform, then d normals from each
    /// embryo's stream).
    pub fn snapshots<F: Float>(
        &self,
        design: &SnapshotDesign<'_, F>,
        z: &mut [F],
        t: &mut [F],
        track: &mut [u32],
        workspace: &mut [F],
    ) -> Result<()> {
        let d = self.d;
        if d > MAX_DIM {
            return Err(Error::bad_dim("d", "above MAX_DIM").with(Detail::Index(d)));
        }
        let mut noise = [F::ZERO; MAX_DIM];
        let initial = |_: usize, rng: &mut Rng, row: &mut [F]| {
            let u = rng.uniform();
            rng.fill_normal(&mut noise[..d]);
            self.initial_state(u, &noise[..d], row);
        };
        snapshots(self, initial, design, z, t, track, workspace)
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
    fn snapshots_follow_the_design_and_the_known_mean_motion() {
        let p = EmbryoProcess { d: 3 };
        let bins = [0.0, 0.4, 0.8, 1.2];
        let design = SnapshotDesign {
            bins: &bins,
            per_bin: 400,
            tracked: 100,
            seed: 5,
            h_max: 0.02,
        };
        let obs = design.observations();
        let (mut z, mut t, mut track) = (vec![0.0f64; obs * 3], vec![0.0; obs], vec![0; obs]);
        let mut ws = vec![0.0; snapshots_workspace_len(&p, &design, 1)];
        p.snapshots(&design, &mut z, &mut t, &mut track, &mut ws)
            .unwrap();
        for (b, &tb) in bins.iter().enumerate() {
            let rows = b * 400..(b + 1) * 400;
            assert!(t[rows.clone()].iter().all(|&x| x == tb));
            let ids: Vec<u32> = track[rows.clone()].to_vec();
            assert!(ids[..100].iter().enumerate().all(|(i, &id)| id == i as u32));
            assert!(ids[100..].iter().all(|&id| id == UNTRACKED));
            // z₀ moves at unit speed from mean 0: E z₀(t) = t. Its variance
            // is at most 0.01 + t·max D₀₀ (max D₀₀ = (2·0.25)² = 0.25).
            let mean = rows.clone().map(|r| z[r * 3]).sum::<f64>() / 400.0;
            let sd = ((0.01 + 0.25 * tb) / 400.0).sqrt();
            assert!((mean - tb).abs() < 4.0 * sd, "bin {b}: {mean} vs {tb}");
        }
        // 30% start above the threshold.
        let above = (0..400)
            .filter(|&r| z[r * 3 + 1] > EMBRYO_THRESHOLD)
            .count() as f64;
        let sd = (400.0 * 0.3 * 0.7f64).sqrt();
        assert!((above - 120.0).abs() < 4.0 * sd, "{above}");
        // Same seed, same bits, whatever the worker count.
        let (mut z2, mut t2, mut tr2) = (vec![0.0f64; obs * 3], vec![0.0; obs], vec![0; obs]);
        let mut ws2 = vec![0.0; snapshots_workspace_len(&p, &design, 3)];
        p.snapshots(&design, &mut z2, &mut t2, &mut tr2, &mut ws2)
            .unwrap();
        assert_eq!((z, t, track), (z2, t2, tr2));
        // Bad designs are errors.
        let bad = SnapshotDesign {
            tracked: 500,
            ..design
        };
        assert!(
            p.snapshots(&bad, &mut [], &mut [], &mut [], &mut [])
                .is_err()
        );
        let flat = [0.0, 0.0];
        let bad = SnapshotDesign {
            bins: &flat,
            ..design
        };
        assert!(
            p.snapshots(&bad, &mut [], &mut [], &mut [], &mut [])
                .is_err()
        );
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
