//! What the training loop trains: the [`Learner`] trait (the loop's view
//! of a model with its optimiser), the finished [`Minibatch`] it is handed
//! and the [`Losses`] it answers, and [`ModelLearner`], the model with Adam.

use super::step::{AdamState, Batch, StepPlan, batch_loss, train_step};
use crate::dynamics::Dynamics;
use crate::error::{Arena, Result, check_len, checked_mul};
use crate::float::Float;
use crate::model::{Inputs, Learned, TargetMode};
use crate::rng::{Family, Rng};
use crate::size::Size;

/// One finished minibatch, as the learner sees it. Shapes: `x` `n×d`
/// (sources, bin time `t`), `y` `m×d` (targets, time `t + h`), `velocity`
/// `n×d` (UOT teacher), `weight` `n` (row mass over source mass: 1 where
/// mass is conserved), `plan` `n×m` (`Π`), `pairs` tracked `(i, j)` pairs.
/// `velocity`, `weight` and `plan` are empty when the learner said it does
/// not use them ([`Learner::uses_plan`]): the UOT solve is then skipped.
#[derive(Clone, Copy, Debug)]
pub struct Minibatch<'a, F> {
    pub n: usize,
    pub m: usize,
    pub d: usize,
    pub t: F,
    pub h: F,
    pub x: &'a [F],
    pub y: &'a [F],
    pub velocity: &'a [F],
    pub weight: &'a [F],
    pub plan: &'a [F],
    pub pairs: &'a [u32],
    /// The ε the plan was solved with (its entropic blur); NaN when no plan
    /// was solved ([`Learner::uses_plan`]).
    pub epsilon: F,
    /// Identifies the batch for the learner's own random draws.
    pub key: u64,
}

/// Loss values of one batch (or their means over an epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses<F> {
    pub drift: F,
    /// The diffusion term before λ (0 when diffusion is off).
    pub diffusion: F,
    /// What is minimised: `drift + λ·diffusion`.
    pub total: F,
}

/// What the loop trains: a model with its optimiser.
pub trait Learner<F: Float> {
    /// The standardisation and time span of the data (see the module
    /// docs): every batch the learner gets is in these standardised units.
    /// Called once, before the first step; an error ends the fit.
    fn set_inputs(&mut self, inputs: &Inputs<F>) -> Result<()>;
    /// Workspace elements one step or evaluation needs for `n` sources and
    /// `m` targets.
    fn workspace_len(&self, n: usize, m: usize) -> usize;
    /// One optimiser step on the batch at `epoch` (for the λ warm-up). On
    /// error the parameters and optimiser state are unchanged.
    fn step(&mut self, batch: &Minibatch<'_, F>, epoch: usize, ws: &mut [F]) -> Result<Losses<F>>;
    /// The loss on the batch, without changing anything.
    fn evaluate(
        &mut self,
        batch: &Minibatch<'_, F>,
        epoch: usize,
        ws: &mut [F],
    ) -> Result<Losses<F>>;
    /// Whether a batch with `tracked_pairs` tracked pairs needs the UOT
    /// solve (teacher velocities, row masses, plan). When `false`, [`fit`](super::fit())
    /// skips it and the batch's `velocity`, `weight` and `plan` are empty.
    fn uses_plan(&self, tracked_pairs: usize) -> bool {
        let _ = tracked_pairs;
        true
    }
    /// First epoch whose validation loss is comparable with later ones
    /// (the end of a warm-up that changes the objective): earlier epochs
    /// are never kept as the best and do not count towards the patience.
    fn settled_from(&self) -> usize {
        0
    }
    /// Scale the learning rate by `factor ∈ (0, 1]` from now on (the
    /// schedule of [`FitConfig::final_learning_rate`](super::FitConfig::final_learning_rate)); learners without a
    /// learning rate ignore it.
    fn scale_learning_rate(&mut self, _factor: f64) {}
    /// Remember the current parameters as the best so far.
    fn keep_best(&mut self);
    /// Workspace elements [`Learner::noise_variance`] needs for `rows`
    /// states.
    fn noise_variance_workspace_len(&self, rows: usize) -> usize {
        let _ = rows;
        0
    }
    /// The learned noise's variance rate per axis, `tr(D)/d`, averaged over
    /// the states `z` (`rows×d`) at times `t`; `None` when nothing is
    /// learned about the noise (the default).
    fn noise_variance(&self, z: &[F], t: &[F], ws: &mut [F]) -> Result<Option<F>> {
        let _ = (z, t, ws);
        Ok(None)
    }
    /// Go back to the remembered parameters.
    fn restore_best(&mut self);
    /// Go back to the remembered parameters and restart the optimiser (its
    /// moments and step count): the divergence guard's roll-back. Learners
    /// without an optimiser state only restore.
    fn roll_back(&mut self) {
        self.restore_best();
    }
}

/// Tracked pairs a batch needs before [`ModelLearner`] builds its
/// pairwise diffusion targets from tracked pairs alone.
pub const TRACKED_ONLY_MIN: usize = 16;

/// The model with Adam as a [`Learner`]: parameters, the best parameters
/// seen, and Adam's moments, all in caller memory (laid out by the model's
/// [`Layout`](crate::model::Layout)).
///
/// Pairwise targets: with diffusion on and at least [`TRACKED_ONLY_MIN`]
/// (and `k_neighbours + 1`) tracked pairs in the batch, the step uses the
/// tracked sources only, each matched to its tracked partner, with the
/// observed displacement `(y − x)/h` as the drift teacher and unit weight
/// (the plan's barycentre blurs it towards the denser cloud nearby: on the
/// built-in data it bent the branch's drift towards the backbone). Otherwise
/// every source is used, matched to its partner or to a target drawn from
/// its plan row (`j ~ Π_i· / r_i`, stream `(seed, Minibatch, 2⁴⁰ + key)`),
/// which keeps the spread that barycentric targets would average away but
/// makes `D̂` read the plan's entropic spread (about `ε/(2h)·I` in place of
/// `D` when the cloud is wide against the noise, see [`crate::targets`]).
/// Drift-only training always uses every source and the plan's teachers.
pub struct ModelLearner<'a, F> {
    /// The plan the steps run on; its learning rate is the one the
    /// schedule of [`fit`](super::fit()) sets.
    pub plan: StepPlan,
    /// The learning rate the schedule scales (the plan's at first).
    pub base_learning_rate: f64,
    pub params: &'a mut [F],
    pub best: &'a mut [F],
    pub adam: AdamState<'a, F>,
}

impl<'a, F: Float> ModelLearner<'a, F> {
    /// Checks the buffers against the plan's layout and starts with
    /// `best = params`.
    pub fn new(
        plan: &StepPlan,
        params: &'a mut [F],
        best: &'a mut [F],
        adam: AdamState<'a, F>,
    ) -> Result<Self> {
        let layout = plan.layout();
        check_len(params, layout.len, "params")?;
        check_len(best, layout.len, "best")?;
        check_len(adam.m, layout.len, "adam_m")?;
        check_len(adam.v, layout.len, "adam_v")?;
        best.copy_from_slice(params);
        Ok(ModelLearner {
            plan: *plan,
            base_learning_rate: plan.config().learning_rate,
            params,
            best,
            adam,
        })
    }

    /// Whether a batch with `tracked` tracked pairs trains on them alone
    /// (see the type's docs): pairwise targets, diffusion on and enough
    /// pairs. An untracked match drawn from the plan would carry its
    /// entropic spread, about `ε/(2h)·I`, into `D̂`.
    fn tracked_only(&self, tracked: usize) -> bool {
        let config = self.plan.config();
        config.target_mode == TargetMode::Pairwise
            && self.plan.layout().head.is_some()
            && tracked >= TRACKED_ONLY_MIN.max(config.k_neighbours + 1)
    }

    /// The step's [`Batch`] in the workspace's head; returns it and the rest.
    fn prepare<'w>(
        &self,
        batch: &Minibatch<'w, F>,
        ws: &'w mut [F],
    ) -> Result<(Batch<'w, F>, &'w mut [F])> {
        let (n, m, d) = (batch.n, batch.m, batch.d);
        let mut arena = Arena::new(ws);
        let pairwise = self.plan.config().target_mode == TargetMode::Pairwise;
        let tracked = batch.pairs.len() / 2;
        let tracked_only = self.tracked_only(tracked);
        let rows = if tracked_only { tracked } else { n };
        let x = arena.take(rows * d)?;
        let v = arena.take(rows * d)?;
        let w = arena.take(rows)?;
        let matched = arena.take(if pairwise { rows * d } else { 0 })?;
        let mut rng = Rng::stream(
            self.plan.config().seed,
            Family::Minibatch,
            (1 << 40) + batch.key,
        );
        let mut partner_of = |i: usize| {
            let partner = batch
                .pairs
                .chunks_exact(2)
                .find(|p| p[0] as usize == i)
                .map(|p| p[1] as usize);
            partner.unwrap_or_else(|| {
                let row = &batch.plan[i * m..(i + 1) * m];
                let total: F = row.iter().fold(F::ZERO, |a, &p| a + p);
                let mut u = F::from_f64(rng.uniform()) * total;
                row.iter()
                    .position(|&p| {
                        u -= p;
                        u < F::ZERO
                    })
                    .unwrap_or(m - 1)
            })
        };
        for r in 0..rows {
            let i = if tracked_only {
                batch.pairs[2 * r] as usize
            } else {
                r
            };
            let xi = &batch.x[i * d..(i + 1) * d];
            x[r * d..(r + 1) * d].copy_from_slice(xi);
            if tracked_only {
                // The observed displacement is the teacher: the plan's
                // barycentre blurs it towards the denser cloud nearby.
                let j = batch.pairs[2 * r + 1] as usize;
                let inv_h = F::ONE / batch.h;
                for ((o, &y), &x0) in v[r * d..(r + 1) * d]
                    .iter_mut()
                    .zip(&batch.y[j * d..(j + 1) * d])
                    .zip(xi)
                {
                    *o = (y - x0) * inv_h;
                }
                w[r] = F::ONE;
            } else {
                v[r * d..(r + 1) * d].copy_from_slice(&batch.velocity[i * d..(i + 1) * d]);
                w[r] = batch.weight[i];
            }
            if pairwise {
                let j = partner_of(i);
                matched[r * d..(r + 1) * d].copy_from_slice(&batch.y[j * d..(j + 1) * d]);
            }
        }
        let t = arena.take(rows)?;
        t.fill(batch.t);
        let h = arena.take(rows)?;
        h.fill(batch.h);
        let b = Batch {
            x,
            t,
            h,
            v_hat: v,
            mass: w,
            y: if pairwise { matched } else { batch.y },
            plan: if pairwise { &[] } else { batch.plan },
        };
        Ok((b, arena.rest()))
    }
}

impl<F: Float> Learner<F> for ModelLearner<'_, F> {
    /// Stores the inputs in the parameters and the best parameters (the
    /// model then answers in the data's units).
    fn set_inputs(&mut self, inputs: &Inputs<F>) -> Result<()> {
        let layout = self.plan.layout();
        layout.set_inputs(self.params, inputs)?;
        layout.set_inputs(self.best, inputs)
    }

    fn workspace_len(&self, n: usize, m: usize) -> usize {
        let _ = m;
        (Size(n) * (3 + 3 * self.plan.layout().d) + self.plan.workspace_len(n)).get()
    }

    fn step(&mut self, batch: &Minibatch<'_, F>, epoch: usize, ws: &mut [F]) -> Result<Losses<F>> {
        let (b, rest) = self.prepare(batch, ws)?;
        let l = train_step(
            &self.plan,
            epoch as u32,
            &b,
            self.params,
            &mut self.adam,
            rest,
        )?;
        Ok(Losses {
            drift: l.drift,
            diffusion: l.diffusion,
            total: l.total,
        })
    }

    fn evaluate(
        &mut self,
        batch: &Minibatch<'_, F>,
        _epoch: usize,
        ws: &mut [F],
    ) -> Result<Losses<F>> {
        let (b, rest) = self.prepare(batch, ws)?;
        // At the full λ whatever the epoch, so that validation losses of
        // different epochs compare.
        let l = batch_loss(
            &self.plan,
            self.plan.config().warmup_epochs,
            &b,
            self.params,
            rest,
        )?;
        Ok(Losses {
            drift: l.drift,
            diffusion: l.diffusion,
            total: l.total,
        })
    }

    /// After the λ warm-up: before it the diffusion head is still being
    /// switched on, and an early, drift-only-looking epoch would win on the
    /// validation loss (its drift part dominates and is flat after a few
    /// epochs).
    fn settled_from(&self) -> usize {
        match self.plan.layout().head {
            Some(_) => self.plan.config().warmup_epochs as usize,
            None => 0,
        }
    }

    fn scale_learning_rate(&mut self, factor: f64) {
        // A factor in (0, 1] keeps a valid rate valid.
        if let Ok(plan) = self
            .plan
            .with_learning_rate(self.base_learning_rate * factor)
        {
            self.plan = plan;
        }
    }

    /// Tracked-only batches read neither the plan nor its teachers.
    fn uses_plan(&self, tracked_pairs: usize) -> bool {
        !self.tracked_only(tracked_pairs)
    }

    fn keep_best(&mut self) {
        self.best.copy_from_slice(self.params);
    }

    fn restore_best(&mut self) {
        self.params.copy_from_slice(self.best);
    }

    /// Restores the kept parameters and restarts Adam (zero moments, step
    /// count 0, so its bias correction starts afresh).
    fn roll_back(&mut self) {
        self.restore_best();
        self.adam.m.fill(F::ZERO);
        self.adam.v.fill(F::ZERO);
        self.adam.steps = 0;
    }

    fn noise_variance_workspace_len(&self, rows: usize) -> usize {
        let layout = self.plan.layout();
        match layout.head {
            Some(_) => {
                (Size(rows) * (layout.d * (1 + layout.q)) + layout.infer_workspace_len(rows)).get()
            }
            None => 0,
        }
    }

    /// `tr(L Lᵀ)/d` (the squared entries of `L`) averaged over the states.
    fn noise_variance(&self, z: &[F], t: &[F], ws: &mut [F]) -> Result<Option<F>> {
        let model = Learned::standardised_with_layout(*self.plan.layout(), self.params)?;
        if model.layout.head.is_none() || t.is_empty() {
            return Ok(None);
        }
        let (rows, d, q) = (t.len(), model.dim(), model.noise_dim());
        check_len(z, checked_mul(rows, d, "z")?, "z")?;
        let mut arena = Arena::new(ws);
        let f = arena.take(rows * d)?;
        let l = arena.take(rows * d * q)?;
        let rest = arena.take(model.workspace_len(rows))?;
        model.drift_and_factor(z, t, f, l, rest);
        let sum = l.iter().fold(F::ZERO, |s, &v| s + v * v);
        Ok(Some(sum / F::from_usize(rows * d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Config, DiffusionHead, Layout};
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn tracked_only_batches_teach_the_observed_displacement() {
        // 20 tracked pairs i → 19 − i, plan teachers and masses that differ
        // from the displacement: the step sees (y − x)/h with unit weight.
        let (n, d, h) = (20usize, 2usize, 0.25);
        let x: Vec<f64> = (0..n * d).map(|k| (k as f64 * 0.37).sin()).collect();
        let y: Vec<f64> = (0..n * d).map(|k| (k as f64 * 0.11).cos()).collect();
        let velocity = vec![7.0; n * d];
        let weight = vec![0.3; n];
        let plan = vec![1.0 / (n * n) as f64; n * n];
        let pairs: Vec<u32> = (0..n as u32).flat_map(|i| [i, n as u32 - 1 - i]).collect();
        let batch = Minibatch {
            n,
            m: n,
            d,
            t: 0.5,
            h,
            x: &x,
            y: &y,
            velocity: &velocity,
            weight: &weight,
            plan: &plan,
            pairs: &pairs,
            epsilon: 0.1,
            key: 0,
        };
        let config = Config {
            head: Some(DiffusionHead::Full),
            k_neighbours: 1,
            width: 8,
            depth: 1,
            ..Config::default()
        };
        let len = Layout::new(&config).unwrap().len;
        let (mut p, mut best, mut m, mut v) = (
            vec![0.0; len],
            vec![0.0; len],
            vec![0.0; len],
            vec![0.0; len],
        );
        let learner = ModelLearner::new(
            &StepPlan::new(&config).unwrap(),
            &mut p,
            &mut best,
            AdamState {
                m: &mut m,
                v: &mut v,
                steps: 0,
            },
        )
        .unwrap();
        let mut ws = vec![f64::NAN; learner.workspace_len(n, n)];
        let (b, _) = learner.prepare(&batch, &mut ws).unwrap();
        assert_eq!(b.len(), n);
        for i in 0..n {
            let j = n - 1 - i;
            for k in 0..d {
                let want = (y[j * d + k] - x[i * d + k]) / h;
                assert!((b.v_hat[i * d + k] - want).abs() < 1e-12);
                assert_eq!(b.y[i * d + k], y[j * d + k]);
            }
            assert_eq!(b.mass[i], 1.0);
        }
    }

    #[test]
    fn model_learner_reports_the_mean_trace_of_its_noise_per_axis() {
        // No hidden layer, no time features, zero head weights: L is the
        // constant lower-triangular [[softplus(b0) + ε, 0], [b1, softplus(b2) + ε]].
        let config = Config {
            d: 2,
            depth: 0,
            time_features: 0,
            head: Some(DiffusionHead::Full),
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f64; layout.len];
        layout
            .set_inputs(&mut params, &Inputs::identity(2))
            .unwrap();
        let raw = [0.3, -0.4, -1.0];
        params[layout.diff_b.range()].copy_from_slice(&raw);
        let sp = |x: f64| libm::log1p(libm::exp(x)) + config.diffusion_epsilon;
        let trace = sp(raw[0]).powi(2) + raw[1] * raw[1] + sp(raw[2]).powi(2);
        let (mut best, mut m, mut v) = (params.clone(), params.clone(), params.clone());
        let adam = AdamState {
            m: &mut m,
            v: &mut v,
            steps: 0,
        };
        let learner = ModelLearner::new(
            &StepPlan::new(&config).unwrap(),
            &mut params,
            &mut best,
            adam,
        )
        .unwrap();
        let (z, t) = ([0.5, -1.0, 2.0, 0.1, 0.0, 3.0], [0.0, 0.2, 0.4]);
        let mut ws = vec![f64::NAN; learner.noise_variance_workspace_len(3)];
        let got = learner.noise_variance(&z, &t, &mut ws).unwrap().unwrap();
        assert!(
            (got - trace / 2.0).abs() < 1e-12,
            "{got} vs {}",
            trace / 2.0
        );
        // Drift-only: nothing to report.
        let config = Config {
            head: None,
            ..config
        };
        let layout = Layout::new(&config).unwrap();
        let len = layout.len;
        let (mut p, mut b, mut m, mut v) = (
            vec![0.0; len],
            vec![0.0; len],
            vec![0.0; len],
            vec![0.0; len],
        );
        layout.set_inputs(&mut p, &Inputs::identity(2)).unwrap();
        let adam = AdamState {
            m: &mut m,
            v: &mut v,
            steps: 0,
        };
        let learner =
            ModelLearner::new(&StepPlan::new(&config).unwrap(), &mut p, &mut b, adam).unwrap();
        assert_eq!(learner.noise_variance_workspace_len(3), 0);
        assert_eq!(learner.noise_variance(&z, &t, &mut []).unwrap(), None);
    }
}
