//! One batch of the training loop: sample (bin b → b+1, one cluster) →
//! gather → UOT (+ self-edge bound on tracked pairs) → [`Minibatch`]
//! (teachers, masses, plan) → the learner's step or evaluation, in the
//! loop's per-batch scratch. A learner that trains a batch from its tracked
//! pairs alone ([`Learner::uses_plan`]) gets it without the UOT solve, which
//! is most of a step's cost.

use super::fit_config::FitConfig;
use super::learner::{Learner, Losses, Minibatch};
use crate::error::{Arena, Detail, ErrorKind, Result};
use crate::float::Float;
use crate::linalg::gather_rows;
use crate::minibatch::{MinibatchConfig, MinibatchIndex};
use crate::size::Size;
use crate::uot::{
    TrackBound, Tracks, UotConfig, UotMode, UotOutput, UotProblem, median_sq_distance,
    median_sq_distance_workspace_len, solve_uot, uot_workspace_len,
};

/// Smallest bridge ε ([`FitConfig::bridge_epsilon`]) as a fraction of the
/// batch's median squared distance (the Sinkhorn solver's comfortable range).
pub const BRIDGE_EPSILON_FLOOR: f64 = 0.01;

/// Per-batch float scratch: gathered clouds, UOT outputs, solver, median
/// and learner workspaces.
pub(super) fn batch_floats(b: usize, d: usize, learner_len: usize) -> Size {
    let gathered = Size(b) * d * 2;
    let uot_out = Size(b) * (6 + d) + Size(b) * b;
    gathered
        + uot_out
        + uot_workspace_len(b, b, d, UotMode::Dense)
        + median_sq_distance_workspace_len(b, b)
        + learner_len
}

/// What a batch is for: a training step, or a validation batch drawn from
/// a given source bin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    Train,
    Validate { bin: usize },
}

/// What became of one batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Outcome<F> {
    /// The learner stepped (or evaluated) with these losses; whether the
    /// batch fell back to whole bins.
    Done(Losses<F>, bool),
    /// No usable plan (UOT did not converge, or degenerate distances):
    /// the learner did not see the batch.
    NoPlan,
    /// The learner failed on a non-finite loss or gradient and changed
    /// nothing.
    NonFinite,
}

/// Sample → gather → UOT → learner, with the per-batch scratch.
pub(super) struct BatchStepper<'w, 'c, F> {
    pub(super) cfg: &'c FitConfig<F>,
    pub(super) d: usize,
    pub(super) scratch: &'w mut [F],
    pub(super) ints: &'w mut [u32],
    /// `σ² = tr(D_θ)/d` for the bridge ε (`None`: `epsilon_relative`).
    pub(super) noise_variance: Option<F>,
}

impl<F: Float> BatchStepper<'_, '_, F> {
    /// The learner's `tr(D)/d` averaged over `min(batch, n_train)` training
    /// rows evenly spaced in the training block (`zs`, `ts`); `None` when
    /// the learner reports none or it is not finite and positive.
    pub(super) fn learned_noise<L: Learner<F>>(
        &mut self,
        learner: &L,
        zs: &[F],
        ts: &[F],
        n_train: usize,
    ) -> Result<Option<F>> {
        let (d, rows) = (self.d, self.cfg.batch.min(n_train));
        let mut arena = Arena::new(&mut *self.scratch);
        let z = arena.take(rows * d)?;
        let t = arena.take(rows)?;
        for i in 0..rows {
            let r = i * n_train / rows;
            z[i * d..(i + 1) * d].copy_from_slice(&zs[r * d..(r + 1) * d]);
            t[i] = ts[r];
        }
        let ws = arena.take(learner.noise_variance_workspace_len(rows))?;
        Ok(learner
            .noise_variance(z, t, ws)?
            .filter(|&s| s.is_finite() && s > F::ZERO))
    }

    /// One batch of `pass` (see [`Outcome`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run<L: Learner<F>>(
        &mut self,
        index: &MinibatchIndex<'_, F>,
        z: &[F],
        sample: &MinibatchConfig,
        step: u64,
        pass: Pass,
        learner: &mut L,
        epoch: usize,
    ) -> Result<Outcome<F>> {
        let (d, b) = (self.d, self.cfg.batch);
        let (source, rest) = self.ints.split_at_mut(b);
        let (target, pairs) = rest.split_at_mut(b);
        let sizes = match pass {
            Pass::Train => index.sample(sample, step, source, target, pairs)?,
            Pass::Validate { bin } => {
                index.sample_in_bin(sample, step, bin, source, target, pairs)?
            }
        };
        let train = pass == Pass::Train;
        let (n, m) = (sizes.sources, sizes.targets);
        let mut arena = Arena::new(&mut *self.scratch);
        let x = arena.take(n * d)?;
        let y = arena.take(m * d)?;
        gather_rows(z, d, &source[..n], x);
        gather_rows(z, d, &target[..m], y);
        let t = index.bin_time(sizes.bin);
        let h = index.bin_time(sizes.bin + 1) - t;
        let pair_list = &pairs[..2 * sizes.pairs];
        let key = if train { step } else { step | 1 << 63 };
        if !learner.uses_plan(sizes.pairs) {
            let batch = Minibatch {
                n,
                m,
                d,
                t,
                h,
                x,
                y,
                velocity: &[],
                weight: &[],
                plan: &[],
                pairs: pair_list,
                epsilon: F::from_f64(f64::NAN),
                key,
            };
            return apply(
                learner,
                &batch,
                epoch,
                train,
                step,
                sizes.whole_bins,
                arena.rest(),
            );
        }
        let a = arena.take(n)?;
        a.fill(F::ONE / F::from_usize(n));
        let bw = arena.take(m)?;
        bw.fill(F::ONE / F::from_usize(m));
        let median_ws = arena.take(median_sq_distance_workspace_len(n, m))?;
        let median = median_sq_distance(x, y, n, m, d, median_ws)?;
        if median.is_nan() || median <= F::ZERO {
            return Ok(Outcome::NoPlan);
        }
        let epsilon = match self.noise_variance {
            Some(s2) => (F::TWO * s2 * h).max(F::from_f64(BRIDGE_EPSILON_FLOOR) * median),
            None => self.cfg.epsilon_relative * median,
        };
        let mut ucfg = UotConfig::new(epsilon);
        let rho = self.cfg.rho_relative * median;
        ucfg.rho_source = rho;
        ucfg.rho_target = rho;
        ucfg.tol = self.cfg.uot_tol;
        ucfg.max_iter = self.cfg.uot_max_iter;
        ucfg.h = h;
        let problem = UotProblem {
            x,
            y,
            a,
            b: bw,
            n,
            m,
            d,
            tracks: (sizes.pairs > 0).then_some(Tracks {
                pairs: pair_list,
                bound: TrackBound::Fraction(self.cfg.track_bound),
            }),
        };
        let f = arena.take(n)?;
        let g = arena.take(m)?;
        let row_mass = arena.take(n)?;
        let col_mass = arena.take(m)?;
        let velocity = arena.take(n * d)?;
        let plan = arena.take(n * m)?;
        let uot_ws = arena.take(uot_workspace_len(n, m, d, UotMode::Dense))?;
        let report = solve_uot(
            &problem,
            &ucfg,
            &mut UotOutput {
                f,
                g,
                row_mass: &mut *row_mass,
                col_mass,
                velocity: Some(&mut *velocity),
                barycenter: None,
                plan: Some(&mut *plan),
            },
            uot_ws,
        )?;
        if !report.converged {
            return Ok(Outcome::NoPlan);
        }
        // Row mass relative to the source mass: the teacher's weight.
        let inv_a = F::from_usize(n);
        for r in row_mass.iter_mut() {
            *r *= inv_a;
        }
        let batch = Minibatch {
            n,
            m,
            d,
            t,
            h,
            x,
            y,
            velocity,
            weight: row_mass,
            plan,
            pairs: pair_list,
            epsilon: ucfg.epsilon,
            key,
        };
        apply(
            learner,
            &batch,
            epoch,
            train,
            step,
            sizes.whole_bins,
            arena.rest(),
        )
    }
}

/// A training step or an evaluation of `learner` on `batch`.
fn apply<F: Float, L: Learner<F>>(
    learner: &mut L,
    batch: &Minibatch<'_, F>,
    epoch: usize,
    train: bool,
    step: u64,
    whole_bins: bool,
    ws: &mut [F],
) -> Result<Outcome<F>> {
    let result = if train {
        learner.step(batch, epoch, ws)
    } else {
        learner.evaluate(batch, epoch, ws)
    };
    match result {
        Ok(l) => Ok(Outcome::Done(l, whole_bins)),
        Err(e) if e.kind == ErrorKind::NumericalFailure => Ok(Outcome::NonFinite),
        Err(e) => Err(e.with(Detail::Index(step as usize))),
    }
}
