//! Distribution matching through rollouts: a training stage that moves the
//! learned SDE so that clouds simulated from every observed embryo of a
//! bin (tracked or not) match the observed cloud at the following bins.
//!
//! For a start bin `k` and a horizon of `H` gaps, `b` sources `Z₀` drawn
//! from bin `k` are rolled out with Euler–Maruyama and reparameterised
//! noise, `K` substeps per gap (`h = Δt/K`):
//! `Z_{s+1} = Z_s + f(Z_s, t_s) h + L(Z_s, t_s) ξ_s √h`, `ξ_s ~ N(0, I_q)`
//! held fixed, and at the end of gap `g` the cloud is compared with `b`
//! embryos drawn from bin `k+g+1` by the energy distance `E_g`
//! ([`crate::metrics::energy_distance`]). The loss of one step is the mean
//! of `E_g` over every start bin and every gap crossed. The energy distance
//! is a proper distance between distributions, so it does not force a
//! one-to-one coupling; it compares spreads as well as locations, so the
//! gradient reaches the diffusion head too.
//!
//! The gradient goes back through the steps by hand (the discrete adjoint):
//! with `a = ∂loss/∂Z_{s+1}`, the step's outputs receive the cotangents
//! `∂/∂f = a h` and `∂/∂L = a ξᵀ √h` (per row), the network's backward
//! ([`Layout::backward_to_state`]) turns them into the parameter gradient
//! and `∂/∂Z_s = a + (∂f/∂z)ᵀ a h + (∂(Lξ)/∂z)ᵀ a √h`; at the end of each gap
//! `∂E_g/∂Z` is added to `a`. Memory: the network's forward cache of every
//! substep of the segment is kept (`H·K` caches of `b` rows) rather than
//! recomputed, which costs one network pass fewer per substep; the noise is
//! kept too (`H·K·b·q`).
//!
//! Everything runs in the network's standardised coordinates (the data
//! standardised once with the model's stored inputs), where the energy
//! distance weighs every coordinate alike.
//!
//! A fraction of every bin is held out: every `check_every` steps the loss
//! of rollouts from the held-out embryos (fixed sources, targets and noise)
//! is evaluated, and the parameters with the lowest held-out loss are kept
//! (the starting ones included, so the stage never returns a model worse
//! on held-out rollouts than the one it was given). A non-finite loss or
//! state stops the stage and restores the best parameters.
//!
//! What this stage cannot do: snapshots alone do not separate the drift
//! from the diffusion (SCIENCE.md); the stage starts from the teacher fit
//! and keeps what the rollouts do not contradict.
//!
//! Cost per step: `(B−1)·H·K` network passes forward and backward at `b`
//! rows plus `O(b² d)` per matched bin, for `B` bins.

use super::fit::Observations;
use crate::dynamics::Dynamics;
use crate::error::{Arena, Error, Result, check_finite, check_len, check_room, checked_mul};
use crate::float::Float;
use crate::linalg::{dot, gather_rows};
use crate::metrics::energy_distance_gradient;
use crate::model::{Config, Layout, Learned};
use crate::optim::{Adam, clip_grad_norm};
use crate::rng::{Family, Rng};
use crate::size::Size;

/// Settings of the matching stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchConfig {
    /// Adam steps of the stage (0 = off).
    pub steps: usize,
    /// Simulated embryos per start bin, and observed embryos each cloud is
    /// compared with (`b`).
    pub batch: usize,
    /// Euler–Maruyama substeps per gap between bins (`K`).
    pub substeps: usize,
    /// Gaps rolled out from each start bin (`H`), matching at every bin
    /// crossed; the last bins roll out fewer.
    pub horizon: usize,
    /// Adam step size of the stage.
    pub learning_rate: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip_grad_norm: f64,
    /// Fraction of every bin held out to choose the parameters kept, in
    /// `[0, 1)`; with 0 the choice is made on training embryos.
    pub validation_fraction: f64,
    /// Steps between held-out checks (≥ 1).
    pub check_every: usize,
    /// Start bins rolled out per training step, each drawn uniformly (0 =
    /// every start bin, in order). The held-out loss always covers every
    /// start bin.
    pub starts_per_step: usize,
    /// Weight `α` of the diffusion anchor `α·mean‖L − L₀‖²_F / mean‖L₀‖²_F`
    /// over observed embryos, `L₀` the factor the stage started from (0 =
    /// the rollouts may move `D` freely; ignored without a diffusion head).
    pub diffusion_anchor: f64,
    pub seed: u64,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            steps: 0,
            batch: 128,
            substeps: 8,
            horizon: 1,
            learning_rate: 3e-4,
            clip_grad_norm: 1.0,
            validation_fraction: 0.2,
            check_every: 10,
            starts_per_step: 0,
            diffusion_anchor: 1.0,
            seed: 0,
        }
    }
}

impl MatchConfig {
    /// Checks the settings (names the offending field).
    pub fn validate(&self) -> Result<()> {
        let bad = |name, why| Err(Error::bad_config(name, why));
        if self.batch < 2 {
            return bad("batch", "the matching batch needs at least 2 embryos");
        }
        if self.substeps == 0 {
            return bad("substeps", "at least one substep per gap");
        }
        if self.horizon == 0 {
            return bad("horizon", "the horizon is at least one gap");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be finite and positive");
        }
        if !(self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0) {
            return bad(
                "clip_grad_norm",
                "must be finite and non-negative (0 = off)",
            );
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad("validation_fraction", "must lie in [0, 1)");
        }
        if self.check_every == 0 {
            return bad("check_every", "must be at least 1");
        }
        if !(self.diffusion_anchor.is_finite() && self.diffusion_anchor >= 0.0) {
            return bad(
                "diffusion_anchor",
                "must be finite and non-negative (0 = off)",
            );
        }
        Ok(())
    }
}

/// What the stage did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchReport<F> {
    /// Steps taken (fewer than asked when a non-finite loss stopped it).
    pub steps: usize,
    /// Held-out loss of the starting parameters.
    pub initial: F,
    /// Held-out loss of the parameters kept.
    pub best: F,
    /// Step after which the kept parameters were taken (0 = the start).
    pub best_step: usize,
    /// Training loss of the last step.
    pub last_train: F,
    /// A non-finite loss or state stopped the stage.
    pub stopped_non_finite: bool,
}

/// Workspace lengths of [`match_rollouts`]: `floats` elements of `F` and
/// `indices` of `u32`, for `n` observations of dimension `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchWorkspaceLen {
    pub floats: usize,
    pub indices: usize,
}

/// Workspace [`match_rollouts`] needs for `n` observations.
pub fn match_workspace_len(
    config: &Config,
    cfg: &MatchConfig,
    n: usize,
) -> Result<MatchWorkspaceLen> {
    cfg.validate()?;
    let layout = Layout::new(config)?;
    let b = cfg.batch;
    let (d, q, p) = (layout.d, layout.q, layout.len);
    let substeps = checked_mul(cfg.horizon, cfg.substeps, "horizon")?;
    let floats = Size(n) * d
        + Size(substeps) * (Size(layout.cache_len(b)) + Size(b) * q)
        + Size(cfg.horizon) * b * d
        + Size(b) * (6 * d + d * q + 1)
        + layout.backward_workspace_len(b)
        + Size(p) * 5
        + Size(n) * d * q
        + layout.infer_workspace_len(b);
    Ok(MatchWorkspaceLen {
        floats: floats.get(),
        indices: (Size(n) * 2 + 1 + Size(b) * 2).get(),
    })
}

/// Runs the matching stage on `params` (a model of `config`, in place:
/// the kept parameters on return) over the observations `obs` (user units;
/// track ids are not read). Needs at least two distinct times with at
/// least two training embryos each (and one held-out embryo each when
/// `validation_fraction > 0`). Workspaces of at least
/// [`match_workspace_len`].
pub fn match_rollouts<F: Float>(
    config: &Config,
    params: &mut [F],
    obs: &Observations<'_, F>,
    cfg: &MatchConfig,
    workspace: &mut [F],
    indices: &mut [u32],
) -> Result<MatchReport<F>> {
    let need = match_workspace_len(config, cfg, obs.t.len())?;
    let layout = Layout::new(config)?;
    let (n, d) = (obs.t.len(), layout.d);
    check_len(params, layout.len, "params")?;
    check_finite(params, "params")?;
    layout.check_inputs(params)?;
    if obs.d != d {
        return Err(Error::bad_dim(
            "d",
            "the observations' dimension differs from the model's",
        ));
    }
    check_len(obs.z, checked_mul(n, d, "z")?, "z")?;
    check_finite(obs.z, "z")?;
    check_finite(obs.t, "t")?;
    check_room(workspace, need.floats, "workspace")?;
    check_room(indices, need.indices, "indices")?;

    let mut arena = Arena::new(workspace);
    let z = arena.take(n * d)?;
    z.copy_from_slice(obs.z);
    layout.inputs(params).standardise(z);
    let (bin_rows, picked) = indices[..need.indices].split_at_mut(2 * n + 1);
    let bins = Bins::build(obs.t, cfg, bin_rows)?;
    let mut seg = Segment::take(&layout, cfg, &mut arena, picked)?;
    let p = layout.len;
    let grad = arena.take(p)?;
    let adam_m = arena.take(p)?;
    let adam_v = arena.take(p)?;
    let best = arena.take(p)?;
    let anchor = Anchor::build(config, &layout, params, z, obs.t, cfg, &mut arena, &mut seg)?;
    adam_m.fill(F::ZERO);
    adam_v.fill(F::ZERO);
    best.copy_from_slice(params);

    let adam = Adam {
        learning_rate: F::from_f64(cfg.learning_rate),
        beta1: F::from_f64(config.beta1),
        beta2: F::from_f64(config.beta2),
        epsilon: F::from_f64(config.adam_epsilon),
        weight_decay: F::ZERO,
    };
    let held_out = |params: &[F], seg: &mut Segment<'_, F>| -> Result<Option<f64>> {
        let mut rng = Rng::stream(cfg.seed, Family::Matching, u64::MAX);
        bins.loss(&layout, params, z, cfg, Pick::HeldOut, &mut rng, seg, None)
    };
    let initial = held_out(params, &mut seg)?.unwrap_or(f64::INFINITY);
    let mut report = MatchReport {
        steps: 0,
        initial: F::from_f64(initial),
        best: F::from_f64(initial),
        best_step: 0,
        last_train: F::from_f64(f64::NAN),
        stopped_non_finite: false,
    };
    let mut best_loss = initial;
    for step in 1..=cfg.steps {
        let mut rng = Rng::stream(cfg.seed, Family::Matching, step as u64);
        let train = bins.loss(
            &layout,
            params,
            z,
            cfg,
            Pick::Train,
            &mut rng,
            &mut seg,
            Some(grad),
        )?;
        let finite = train.is_some_and(f64::is_finite) && grad.iter().all(|g| g.is_finite());
        if !finite {
            report.stopped_non_finite = true;
            break;
        }
        report.last_train = F::from_f64(train.unwrap_or(f64::NAN));
        if let Some(anchor) = &anchor {
            anchor.add(&layout, params, z, obs.t, &bins, &mut rng, &mut seg, grad)?;
        }
        clip_grad_norm(grad, F::from_f64(cfg.clip_grad_norm));
        adam.update(step as u64, params, grad, adam_m, adam_v)?;
        report.steps = step;
        if step % cfg.check_every == 0 || step == cfg.steps {
            let loss = held_out(params, &mut seg)?.unwrap_or(f64::INFINITY);
            if loss < best_loss {
                best_loss = loss;
                best.copy_from_slice(params);
                report.best_step = step;
            }
        }
    }
    params.copy_from_slice(best);
    report.best = F::from_f64(best_loss);
    Ok(report)
}

/// Which embryos a loss evaluation draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    /// `b` training embryos per bin, drawn with replacement.
    Train,
    /// The first `b` held-out embryos of every bin (all training embryos
    /// when nothing is held out).
    HeldOut,
}

/// The observations grouped by time: `order` lists the rows bin by bin
/// (shuffled within each bin, training embryos first), `starts` the first
/// position of each bin and one past the last.
struct Bins<'a, F> {
    t: &'a [F],
    order: &'a [u32],
    starts: &'a [u32],
    validation_fraction: f64,
}

impl<'a, F: Float> Bins<'a, F> {
    fn build(t: &'a [F], cfg: &MatchConfig, indices: &'a mut [u32]) -> Result<Self> {
        let n = t.len();
        if n > u32::MAX as usize {
            return Err(Error::too_large("t", "more than 2³² − 1 observations"));
        }
        let (order, starts) = indices.split_at_mut(n);
        for (i, o) in order.iter_mut().enumerate() {
            *o = i as u32;
        }
        order.sort_unstable_by(|&a, &b| {
            t[a as usize]
                .partial_cmp(&t[b as usize])
                .unwrap_or(core::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
        let mut bins = 0;
        for pos in 0..n {
            if pos == 0 || t[order[pos] as usize] != t[order[pos - 1] as usize] {
                starts[bins] = pos as u32;
                bins += 1;
            }
        }
        starts[bins] = n as u32;
        if bins < 2 {
            return Err(Error::bad_dim(
                "t",
                "matching needs at least two distinct times",
            ));
        }
        let mut rng = Rng::stream(cfg.seed, Family::Matching, u64::MAX - 1);
        for b in 0..bins {
            let bin = &mut order[starts[b] as usize..starts[b + 1] as usize];
            for i in (1..bin.len()).rev() {
                bin.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let built = Bins {
            t,
            order,
            starts: &starts[..=bins],
            validation_fraction: cfg.validation_fraction,
        };
        for b in 0..bins {
            let (train, held) = built.split(b);
            if train.len() < 2 || (cfg.validation_fraction > 0.0 && held.is_empty()) {
                return Err(Error::bad_dim(
                    "t",
                    "every time bin needs two training embryos (and one held out) for matching",
                ));
            }
        }
        Ok(built)
    }

    fn count(&self) -> usize {
        self.starts.len() - 1
    }

    fn time(&self, b: usize) -> F {
        self.t[self.order[self.starts[b] as usize] as usize]
    }

    /// Training and held-out rows of bin `b`.
    fn split(&self, b: usize) -> (&[u32], &[u32]) {
        let bin = &self.order[self.starts[b] as usize..self.starts[b + 1] as usize];
        let held = libm::floor(bin.len() as f64 * self.validation_fraction) as usize;
        bin.split_at(bin.len() - held)
    }

    /// Rows of bin `b` for a cloud (into `out`, `≤ b` rows), returning how
    /// many: `batch` training rows drawn with replacement, or the first
    /// `batch` held-out ones.
    fn pick(&self, bin: usize, pick: Pick, batch: usize, rng: &mut Rng, out: &mut [u32]) -> usize {
        let (train, held) = self.split(bin);
        match pick {
            Pick::Train => {
                for o in &mut out[..batch] {
                    *o = train[rng.below(train.len() as u64) as usize];
                }
                batch
            }
            Pick::HeldOut => {
                let pool = if held.is_empty() { train } else { held };
                let rows = pool.len().min(batch);
                out[..rows].copy_from_slice(&pool[..rows]);
                rows
            }
        }
    }

    /// Mean energy distance over the start bins rolled out (every one, or
    /// [`MatchConfig::starts_per_step`] drawn for training) and the gaps
    /// they cross, and, with
    /// `grad`, its gradient with respect to the parameters (overwritten).
    /// `None` when a rolled-out state left the finite numbers.
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        layout: &Layout,
        params: &[F],
        z: &[F],
        cfg: &MatchConfig,
        pick: Pick,
        rng: &mut Rng,
        seg: &mut Segment<'_, F>,
        mut grad: Option<&mut [F]>,
    ) -> Result<Option<f64>> {
        if let Some(g) = grad.as_deref_mut() {
            g.fill(F::ZERO);
        }
        let (mut total, mut matched) = (0.0f64, 0usize);
        let starts = self.count() - 1;
        let random = pick == Pick::Train && cfg.starts_per_step > 0;
        let draws = if random { cfg.starts_per_step } else { starts };
        for draw in 0..draws {
            let start = if random {
                rng.below(starts as u64) as usize
            } else {
                draw
            };
            let gaps = cfg.horizon.min(self.count() - 1 - start);
            let Some(sum) = seg.run(
                self,
                layout,
                params,
                z,
                cfg,
                start,
                gaps,
                pick,
                rng,
                grad.as_deref_mut(),
            )?
            else {
                return Ok(None);
            };
            total += sum;
            matched += gaps;
        }
        let scale = 1.0 / matched as f64;
        if let Some(g) = grad {
            let s = F::from_f64(scale);
            for v in g.iter_mut() {
                *v *= s;
            }
        }
        Ok(Some(total * scale))
    }
}

/// The buffers of one rolled-out segment, sized for `b` rows and `H` gaps
/// of `K` substeps.
struct Segment<'w, F> {
    /// The network's forward cache of every substep (`H·K` of `cache_len`).
    caches: &'w mut [F],
    cache_len: usize,
    /// `ξ` of every substep (`H·K × b × q`).
    noise: &'w mut [F],
    /// `∂E_g/∂Z` at the end of each gap (`H × b × d`).
    end_grads: &'w mut [F],
    state: &'w mut [F],
    targets: &'w mut [F],
    adjoint: &'w mut [F],
    d_state: &'w mut [F],
    d_drift: &'w mut [F],
    d_factor: &'w mut [F],
    times: &'w mut [F],
    backward_ws: &'w mut [F],
    grad_step: &'w mut [F],
    /// Rows of the sources and of the targets (`b` each).
    sources: &'w mut [u32],
    target_rows: &'w mut [u32],
    batch: usize,
}

impl<'w, F: Float> Segment<'w, F> {
    fn take(
        layout: &Layout,
        cfg: &MatchConfig,
        arena: &mut Arena<'w, F>,
        rows: &'w mut [u32],
    ) -> Result<Self> {
        let (b, d, q) = (cfg.batch, layout.d, layout.q);
        let substeps = cfg.horizon * cfg.substeps;
        let cache_len = layout.cache_len(b);
        let (sources, target_rows) = rows[..2 * b].split_at_mut(b);
        Ok(Segment {
            caches: arena.take(substeps * cache_len)?,
            cache_len,
            noise: arena.take(substeps * b * q)?,
            end_grads: arena.take(cfg.horizon * b * d)?,
            state: arena.take(b * d)?,
            targets: arena.take(b * d)?,
            adjoint: arena.take(b * d)?,
            d_state: arena.take(b * d)?,
            d_drift: arena.take(b * d)?,
            d_factor: arena.take(b * d * q)?,
            times: arena.take(b)?,
            backward_ws: arena.take(layout.backward_workspace_len(b))?,
            grad_step: arena.take(layout.len)?,
            sources,
            target_rows,
            batch: b,
        })
    }

    /// Rolls `b` embryos of bin `start` out over `gaps` gaps, returns the
    /// sum of the energy distances at the bins crossed (`None` when a state
    /// became non-finite) and, with `grad`, adds its parameter gradient.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        bins: &Bins<'_, F>,
        layout: &Layout,
        params: &[F],
        z: &[F],
        cfg: &MatchConfig,
        start: usize,
        gaps: usize,
        pick: Pick,
        rng: &mut Rng,
        grad: Option<&mut [F]>,
    ) -> Result<Option<f64>> {
        let (b, d, q, k) = (self.batch, layout.d, layout.q, cfg.substeps);
        let rows = bins.pick(start, pick, b, rng, self.sources);
        gather_rows(z, d, &self.sources[..rows], self.state);
        let state = &mut self.state[..rows * d];
        let mut total = 0.0f64;
        for g in 0..gaps {
            let (t0, h) = gap(bins, start + g, k);
            let sqrt_h = h.sqrt();
            for s in 0..k {
                let idx = g * k + s;
                let t_s = t0 + h * F::from_f64(s as f64);
                self.times[..rows].fill(t_s);
                let cache = &mut self.caches[idx * self.cache_len..(idx + 1) * self.cache_len];
                layout.forward_train(params, state, &self.times[..rows], cache)?;
                let f = layout.cached_drift(rows, cache);
                let factor = layout.cached_factor(rows, cache);
                let xi = &mut self.noise[idx * b * q..idx * b * q + rows * q];
                rng.fill_normal(xi);
                for r in 0..rows {
                    let zr = &mut state[r * d..(r + 1) * d];
                    let xr = &xi[r * q..(r + 1) * q];
                    for (i, zi) in zr.iter_mut().enumerate() {
                        let kick = dot(&factor[(r * d + i) * q..][..q], xr);
                        *zi += f[r * d + i] * h + kick * sqrt_h;
                    }
                }
                if state.iter().any(|v| !v.is_finite()) {
                    return Ok(None);
                }
            }
            let m = bins.pick(start + g + 1, pick, b, rng, self.target_rows);
            gather_rows(z, d, &self.target_rows[..m], self.targets);
            let end = &mut self.end_grads[g * b * d..g * b * d + rows * d];
            total += energy_distance_gradient(state, &self.targets[..m * d], d, end)?.to_f64();
        }
        let Some(grad) = grad else {
            return Ok(Some(total));
        };
        let adjoint = &mut self.adjoint[..rows * d];
        adjoint.fill(F::ZERO);
        for g in (0..gaps).rev() {
            for (a, &e) in adjoint.iter_mut().zip(&self.end_grads[g * b * d..]) {
                *a += e;
            }
            let (_, h) = gap(bins, start + g, k);
            let sqrt_h = h.sqrt();
            for s in (0..k).rev() {
                let idx = g * k + s;
                let cache = &self.caches[idx * self.cache_len..(idx + 1) * self.cache_len];
                let xi = &self.noise[idx * b * q..idx * b * q + rows * q];
                let d_drift = &mut self.d_drift[..rows * d];
                for (o, &a) in d_drift.iter_mut().zip(adjoint.iter()) {
                    *o = a * h;
                }
                let d_factor = &mut self.d_factor[..rows * d * q];
                for r in 0..rows {
                    for i in 0..d {
                        for j in 0..q {
                            d_factor[(r * d + i) * q + j] =
                                adjoint[r * d + i] * xi[r * q + j] * sqrt_h;
                        }
                    }
                }
                let d_state = &mut self.d_state[..rows * d];
                layout.backward_to_state(
                    params,
                    rows,
                    cache,
                    d_drift,
                    d_factor,
                    self.grad_step,
                    d_state,
                    self.backward_ws,
                )?;
                for (total, &v) in grad.iter_mut().zip(self.grad_step.iter()) {
                    *total += v;
                }
                for (a, &v) in adjoint.iter_mut().zip(d_state.iter()) {
                    *a += v;
                }
            }
        }
        Ok(Some(total))
    }
}

/// The diffusion anchor: the factor `L₀` the stage started from at every
/// observed embryo, and the penalty that keeps the rollouts from trading
/// the drift for the diffusion (snapshots cannot tell them apart; the
/// moments the teacher fit matched can).
struct Anchor<'w, F> {
    /// `L₀` at every standardised observation (`n × d × q`).
    target: &'w [F],
    /// `α / mean‖L₀‖²_F`.
    weight: f64,
}

impl<'w, F: Float> Anchor<'w, F> {
    /// `None` without a diffusion head or with `α = 0`.
    #[allow(clippy::too_many_arguments)]
    fn build(
        config: &Config,
        layout: &Layout,
        params: &[F],
        z: &[F],
        t: &[F],
        cfg: &MatchConfig,
        arena: &mut Arena<'w, F>,
        seg: &mut Segment<'_, F>,
    ) -> Result<Option<Self>> {
        let (n, d, q) = (t.len(), layout.d, layout.q);
        let target = arena.take(n * d * q)?;
        let infer_ws = arena.take(layout.infer_workspace_len(cfg.batch))?;
        if layout.head.is_none() || cfg.diffusion_anchor == 0.0 {
            return Ok(None);
        }
        let network = Learned::standardised(config, params)?;
        let b = cfg.batch;
        for (start, l_chunk) in (0..n).step_by(b).zip(target.chunks_mut(b * d * q)) {
            let rows = b.min(n - start);
            let f = &mut seg.d_drift[..rows * d];
            network.drift_and_factor(
                &z[start * d..(start + rows) * d],
                &t[start..start + rows],
                f,
                l_chunk,
                infer_ws,
            );
        }
        check_finite(target, "params")?;
        let mean_sq = target.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>() / n as f64;
        Ok(Some(Anchor {
            target,
            weight: cfg.diffusion_anchor / mean_sq.max(f64::MIN_POSITIVE),
        }))
    }

    /// Adds the penalty's gradient over `b` training embryos drawn across
    /// the bins to `grad`; returns the penalty.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        layout: &Layout,
        params: &[F],
        z: &[F],
        t: &[F],
        bins: &Bins<'_, F>,
        rng: &mut Rng,
        seg: &mut Segment<'_, F>,
        grad: &mut [F],
    ) -> Result<f64> {
        let (b, d, q) = (seg.batch, layout.d, layout.q);
        let dq = d * q;
        for row in seg.sources.iter_mut() {
            let bin = rng.below(bins.count() as u64) as usize;
            let (train, _) = bins.split(bin);
            *row = train[rng.below(train.len() as u64) as usize];
        }
        gather_rows(z, d, seg.sources, seg.state);
        for (time, &row) in seg.times.iter_mut().zip(seg.sources.iter()) {
            *time = t[row as usize];
        }
        let cache = &mut seg.caches[..seg.cache_len];
        layout.forward_train(params, seg.state, seg.times, cache)?;
        let factor = layout.cached_factor(b, cache);
        let scale = 2.0 * self.weight / b as f64;
        let mut penalty = 0.0f64;
        for (r, &row) in seg.sources.iter().enumerate() {
            let l0 = &self.target[row as usize * dq..(row as usize + 1) * dq];
            let l = &factor[r * dq..(r + 1) * dq];
            let out = &mut seg.d_factor[r * dq..(r + 1) * dq];
            for ((o, &a), &a0) in out.iter_mut().zip(l).zip(l0) {
                let diff = (a - a0).to_f64();
                penalty += diff * diff;
                *o = F::from_f64(scale * diff);
            }
        }
        seg.d_drift.fill(F::ZERO);
        layout.backward(
            params,
            b,
            cache,
            seg.d_drift,
            seg.d_factor,
            seg.grad_step,
            seg.backward_ws,
        )?;
        for (g, &v) in grad.iter_mut().zip(seg.grad_step.iter()) {
            *g += v;
        }
        Ok(penalty * self.weight / b as f64)
    }
}

/// Start time and substep length of the gap after bin `b`.
fn gap<F: Float>(bins: &Bins<'_, F>, b: usize, substeps: usize) -> (F, F) {
    let t0 = bins.time(b);
    let h = (bins.time(b + 1) - t0) / F::from_f64(substeps as f64);
    (t0, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DiffusionHead;
    use std::vec;
    use std::vec::Vec;

    fn model(head: Option<DiffusionHead>) -> Config {
        Config {
            d: 2,
            time_features: 2,
            depth: 1,
            width: 5,
            head,
            ..Config::default()
        }
    }

    /// Three bins of `per_bin` embryos drifting right and spreading.
    fn snapshots(per_bin: usize) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Rng::stream(5, Family::Data, 0);
        let (mut z, mut t) = (Vec::new(), Vec::new());
        for b in 0..3 {
            for _ in 0..per_bin {
                let spread = 0.5 + 0.3 * b as f64;
                z.push(b as f64 + spread * rng.normal());
                z.push(spread * rng.normal());
                t.push(0.5 * b as f64);
            }
        }
        (z, t)
    }

    fn params_of(config: &Config, z: &[f64], t: &[f64]) -> Vec<f64> {
        let layout = Layout::new(config).unwrap();
        let mut p = vec![0.0; layout.len];
        layout.init(3, &mut p).unwrap();
        let inputs = crate::model::Inputs::from_data(z, t, 2).unwrap();
        layout.set_inputs(&mut p, &inputs).unwrap();
        p
    }

    /// The gradient of one step's loss (two gaps of two substeps, from
    /// both start bins) against central differences in f64, for every head
    /// and without one: the adjoint through the Euler–Maruyama steps, the
    /// network's state and parameter products and the energy gradient.
    #[test]
    fn step_gradient_matches_finite_differences_in_f64() {
        let heads = [
            None,
            Some(DiffusionHead::Full),
            Some(DiffusionHead::LowRank { q: 1 }),
            Some(DiffusionHead::Diagonal),
        ];
        for head in heads {
            let config = model(head);
            let cfg = MatchConfig {
                batch: 4,
                substeps: 2,
                horizon: 2,
                validation_fraction: 0.0,
                ..MatchConfig::default()
            };
            let rel = with_stage(&config, &cfg, |s| {
                let mut loss = |p: &[f64], grad: Option<&mut [f64]>| {
                    let mut rng = Rng::stream(1, Family::Matching, 9);
                    s.bins
                        .loss(s.layout, p, s.z, &cfg, Pick::Train, &mut rng, s.seg, grad)
                        .unwrap()
                        .unwrap()
                };
                fd_relative_error(s.layout, s.params, &mut loss)
            });
            assert!(rel <= 1e-5, "head {head:?}: rel err {rel:e}");
        }
    }

    /// The stage's parts over [`snapshots`]`(6)` for `config` and `cfg`, as
    /// a test sees them.
    struct Stage<'a, 'w> {
        layout: &'a Layout,
        params: &'a mut [f64],
        z: &'a [f64],
        t: &'a [f64],
        bins: &'a Bins<'a, f64>,
        arena: &'a mut Arena<'w, f64>,
        seg: &'a mut Segment<'w, f64>,
    }

    /// Builds the [`Stage`] of `config` and `cfg` and hands it to `body`.
    fn with_stage<R>(
        config: &Config,
        cfg: &MatchConfig,
        body: impl FnOnce(Stage<'_, '_>) -> R,
    ) -> R {
        let (z_user, t) = snapshots(6);
        let mut params = params_of(config, &z_user, &t);
        let layout = Layout::new(config).unwrap();
        let need = match_workspace_len(config, cfg, t.len()).unwrap();
        let mut ws = vec![0.0f64; need.floats];
        let mut idx = vec![0u32; need.indices];
        let mut z = z_user.clone();
        layout.inputs(&params).standardise(&mut z);
        let (bin_rows, picked) = idx.split_at_mut(2 * t.len() + 1);
        let bins = Bins::build(&t, cfg, bin_rows).unwrap();
        let mut arena = Arena::new(&mut ws[..]);
        let mut seg = Segment::take(&layout, cfg, &mut arena, picked).unwrap();
        body(Stage {
            layout: &layout,
            params: &mut params,
            z: &z,
            t: &t,
            bins: &bins,
            arena: &mut arena,
            seg: &mut seg,
        })
    }

    /// A loss of the parameters that writes its gradient when asked.
    type LossFn<'a> = dyn FnMut(&[f64], Option<&mut [f64]>) -> f64 + 'a;

    /// `‖g − g_fd‖/‖g_fd‖` over the trainable parameters of the gradient
    /// `loss(params, Some(grad))` writes (overwriting or adding to zeros)
    /// against central differences of `loss(params, None)`.
    fn fd_relative_error(layout: &Layout, params: &mut [f64], loss: &mut LossFn<'_>) -> f64 {
        let mut grad = vec![0.0; layout.len];
        assert!(loss(params, Some(&mut grad)) > 0.0);
        let (mut num, mut den) = (0.0, 0.0);
        for i in layout.trainable() {
            let keep = params[i];
            let step = 1e-6;
            params[i] = keep + step;
            let up = loss(params, None);
            params[i] = keep - step;
            let down = loss(params, None);
            params[i] = keep;
            let fd = (up - down) / (2.0 * step);
            num += (grad[i] - fd) * (grad[i] - fd);
            den += fd * fd;
        }
        assert!(den > 0.0, "no gradient");
        libm::sqrt(num / den)
    }

    /// The diffusion anchor's gradient against central differences of its
    /// penalty, after the parameters moved off the anchored ones.
    #[test]
    fn anchor_gradient_matches_finite_differences_in_f64() {
        for head in [
            DiffusionHead::Full,
            DiffusionHead::LowRank { q: 1 },
            DiffusionHead::Diagonal,
        ] {
            let config = model(Some(head));
            let cfg = MatchConfig {
                batch: 5,
                validation_fraction: 0.0,
                diffusion_anchor: 0.7,
                ..MatchConfig::default()
            };
            let rel = with_stage(&config, &cfg, |s| {
                let anchor =
                    Anchor::build(&config, s.layout, s.params, s.z, s.t, &cfg, s.arena, s.seg)
                        .unwrap()
                        .unwrap();
                let mut rng = Rng::stream(2, Family::Data, 0);
                for p in &mut s.params[s.layout.trainable()] {
                    *p += 0.1 * rng.normal();
                }
                let mut scratch = vec![0.0; s.layout.len];
                let mut penalty = |p: &[f64], grad: Option<&mut [f64]>| {
                    let mut rng = Rng::stream(1, Family::Matching, 4);
                    let g = grad.unwrap_or(&mut scratch);
                    anchor
                        .add(s.layout, p, s.z, s.t, s.bins, &mut rng, s.seg, g)
                        .unwrap()
                };
                fd_relative_error(s.layout, s.params, &mut penalty)
            });
            assert!(rel <= 1e-6, "head {head:?}: rel err {rel:e}");
        }
    }

    /// Clouds translated at velocity `v` (drift-only model, started from its
    /// random initialisation): the stage alone learns a drift whose mean
    /// over the embryos is `v`, and keeps parameters better on held-out
    /// rollouts than the ones it started from.
    #[test]
    fn matching_alone_recovers_a_translation() {
        let v = [2.0, -1.0];
        let mut rng = Rng::stream(8, Family::Data, 0);
        let (mut z, mut t) = (Vec::new(), Vec::new());
        for b in 0..4 {
            let time = 0.25 * b as f64;
            for _ in 0..300 {
                z.push(v[0] * time + 0.5 * rng.normal());
                z.push(v[1] * time + 0.5 * rng.normal());
                t.push(time);
            }
        }
        let config = Config {
            d: 2,
            time_features: 0,
            depth: 1,
            width: 16,
            ..Config::default()
        };
        let mut params = params_of(&config, &z, &t);
        let cfg = MatchConfig {
            steps: 300,
            batch: 64,
            substeps: 2,
            learning_rate: 1e-2,
            ..MatchConfig::default()
        };
        let need = match_workspace_len(&config, &cfg, t.len()).unwrap();
        let mut ws = vec![0.0f64; need.floats];
        let mut idx = vec![0u32; need.indices];
        let track = vec![crate::minibatch::UNTRACKED; t.len()];
        let obs = Observations {
            z: &z,
            t: &t,
            track: &track,
            d: 2,
        };
        let report = match_rollouts(&config, &mut params, &obs, &cfg, &mut ws, &mut idx).unwrap();
        assert!(report.best < 0.5 * report.initial, "{report:?}");
        assert!(report.best_step > 0 && !report.stopped_non_finite);
        let model = Learned::new(&config, &params).unwrap();
        let mut f = vec![0.0; z.len()];
        let mut mws = vec![0.0; model.workspace_len(t.len())];
        model.drift(&z, &t, &mut f, &mut mws);
        for (a, &va) in v.iter().enumerate() {
            let mean = f.iter().skip(a).step_by(2).sum::<f64>() / t.len() as f64;
            assert!(
                (mean - va).abs() <= 0.1 * 2.24,
                "axis {a}: mean drift {mean} vs {va}"
            );
        }
    }
}
