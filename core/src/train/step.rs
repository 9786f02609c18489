//! One training step on a prepared minibatch: forward, covariance targets
//! (when the diffusion head is on), losses, manual backward, gradient-norm
//! clipping, Adam.
//!
//! With `learn_diffusion = false` nothing of the diffusion path runs: no
//! target, no factor, no diffusion loss; the parameter slice is the
//! drift-only model's.
//!
//! With [`Residual::Propagated`] the diffusion loss compares `M_h(D_θ)/h`
//! with `D̂` ([`crate::propagated`]): the learned flow and its Jacobian are
//! integrated over each gap once per step (the flow's end point also gives
//! the flow-residual targets), the factor is evaluated at the substep states
//! (node 0 is the step's own forward pass; a second pass covers the
//! `n·flow_substeps` later nodes), and the loss's gradient reaches `L_θ`
//! through the adjoint map and the two passes' backward.
//! [`train_step_diffusion_at`] offers the cheaper `D_θ` at `z_t` (no
//! second pass). [`Residual::PropagatedFrozen`] builds the map by
//! [`propagate_frozen`] (the same flow, one drift Jacobian per source at
//! the gap's midpoint) and evaluates `D_θ` once per source at that midpoint
//! (a second pass over `n` states; at `z_t` with
//! [`train_step_diffusion_at`]).
//!
//! Cost per step beside the one-step residual's, for `n` sources and `S =
//! flow_substeps`: the flow residual and the flow teacher add one RK4 flow
//! per source (`4S` drift evaluations, shared between them); the exact
//! propagated map adds the forward-mode Jacobian of every RK4 stage (`4S`
//! Jacobians of `d` tangents per source, the dominant term, `O(n·S·d)`
//! forward passes) and a pass over the `n·S` substep states; the frozen map
//! one Jacobian per source (`O(n·d)` forward passes) and a pass over `n`
//! midpoints. Measured ratios: `docs/results/step_costs.md`.

use crate::error::{
    Arena, Error, ErrorKind, Result, check_finite, check_len, check_room, checked_mul,
};
use crate::float::Float;
use crate::integrate::{rk4_flow, rk4_stages_len};
use crate::linalg::gemm::matmul_acc;
use crate::loss::{diffusion_loss, drift_loss, mass_weights};
use crate::model::{Config, DriftTeacher, Layout, Learned, Residual, TargetMode};
use crate::optim::{Adam, clip_grad_norm};
use crate::propagated::{
    DiffusionAt, PROPAGATE_BLOCK_ROWS, Propagation, gap_midpoints, propagate, propagate_frozen,
    propagate_workspace_len_for,
};
use crate::size::Size;
use crate::targets::{pairwise_targets, plan_weighted_targets, predict_one_step};

/// A prepared minibatch of `n` sources (plain row-major slices), in the
/// network's standardised coordinates: states `(z − μ)/s` and velocities
/// `v/s` of the model's [`crate::model::Inputs`] (the user's units when
/// those are the identity, as after [`Layout::init`]). Times and gaps are
/// the data's.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a, F> {
    /// Sources `x` (`n×d`) and their times `t` (`n`).
    pub x: &'a [F],
    pub t: &'a [F],
    /// Frame gap `h_i > 0` of each source (`n`).
    pub h: &'a [F],
    /// Teacher velocities `v̂` (`n×d`) and UOT row masses `r` (`n`, ≥ 0).
    pub v_hat: &'a [F],
    pub mass: &'a [F],
    /// Pairwise targets: the matched end point of each source (`n×d`).
    /// Plan-weighted targets: the target cloud (`m×d`). Only read when the
    /// diffusion head is on.
    pub y: &'a [F],
    /// Plan rows `Π` (`n×m`) for plan-weighted targets; empty otherwise.
    pub plan: &'a [F],
}

impl<F> Batch<'_, F> {
    /// Number of sources `n`.
    pub fn len(&self) -> usize {
        self.t.len()
    }
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }
}

/// Loss parts of one step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepLoss<F> {
    pub drift: F,
    /// Unweighted diffusion loss (0 without diffusion).
    pub diffusion: F,
    /// `λ(epoch)` used.
    pub lambda: F,
    /// `drift + λ·diffusion`.
    pub total: F,
    /// Gradient norm before clipping.
    pub grad_norm: F,
}

/// Adam moments (laid out like the parameters) and the number of steps
/// taken so far.
#[derive(Debug)]
pub struct AdamState<'a, F> {
    pub m: &'a mut [F],
    pub v: &'a mut [F],
    pub steps: u64,
}

/// Workspace elements of [`train_step`] for `n` sources (`m`, the plan's
/// targets, does not change it: the plan is the caller's).
pub fn train_step_workspace_len(config: &Config, n: usize, _m: usize) -> Result<usize> {
    let layout = Layout::new(config)?;
    Ok(
        (layout.len
            + loss_workspace_len(config, &layout, n)
            + step_scratch_len(config, &layout, n))
        .get(),
    )
}

/// Elements of [`loss_and_gradient`]'s workspace.
fn loss_workspace_len(config: &Config, layout: &Layout, n: usize) -> Size {
    let (d, q) = (layout.d, layout.q);
    Size(layout.cache_len(n))
        + layout.backward_workspace_len(n)
        + Size(n) * (1 + d + d * q)
        + d
        + d * d
        + propagated_len(config, layout, n)
}

/// Whether the step runs the propagated target: a diffusion head and
/// [`Residual::Propagated`] or [`Residual::PropagatedFrozen`].
fn is_propagated(config: &Config, layout: &Layout) -> bool {
    layout.head.is_some()
        && matches!(
            config.residual,
            Residual::Propagated | Residual::PropagatedFrozen
        )
}

/// Where the propagated step evaluates `D_θ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiffusionPoints {
    /// At every node of the exact path ([`Residual::Propagated`] with
    /// [`DiffusionAt::Path`]): node 0 from the step's own forward pass,
    /// nodes `1..=N` from a second pass.
    Nodes,
    /// Once per source at the gap's midpoint state
    /// ([`Residual::PropagatedFrozen`] with [`DiffusionAt::Path`]), by a
    /// second pass over `n` states.
    Midpoint,
    /// Once per source at `z_t` ([`DiffusionAt::Constant`]): the step's own
    /// pass, no second one.
    Start,
}

impl DiffusionPoints {
    fn new(config: &Config, at: DiffusionAt) -> Self {
        match (at, config.residual) {
            (DiffusionAt::Constant, _) => DiffusionPoints::Start,
            (DiffusionAt::Path, Residual::PropagatedFrozen) => DiffusionPoints::Midpoint,
            (DiffusionAt::Path, _) => DiffusionPoints::Nodes,
        }
    }

    /// How the map reads the `D` matrices.
    fn map_at(self) -> DiffusionAt {
        match self {
            DiffusionPoints::Nodes => DiffusionAt::Path,
            _ => DiffusionAt::Constant,
        }
    }

    /// `D` matrices per source.
    fn per_source(self, substeps: usize) -> usize {
        match self {
            DiffusionPoints::Nodes => substeps + 1,
            _ => 1,
        }
    }

    /// States per source of the second pass.
    fn second_pass_per_source(self, substeps: usize) -> usize {
        match self {
            DiffusionPoints::Nodes => substeps,
            DiffusionPoints::Midpoint => 1,
            DiffusionPoints::Start => 0,
        }
    }

    /// Index among the second pass's states of source `r`'s `D` matrix `k`,
    /// or `None` for the step's own pass (the state `z_t`).
    fn second_pass_index(self, substeps: usize, r: usize, k: usize) -> Option<usize> {
        match self {
            DiffusionPoints::Nodes if k > 0 => Some(r * substeps + k - 1),
            DiffusionPoints::Midpoint => Some(r),
            _ => None,
        }
    }
}

/// Elements of the propagated target's scratch (0 unless
/// [`is_propagated`]): the flow's node states and propagators (filled by
/// [`propagate_batch`]), then [`propagated_diffusion_loss`]'s buffers (sized
/// for [`DiffusionAt::Path`], the larger).
fn propagated_len(config: &Config, layout: &Layout, n: usize) -> Size {
    if !is_propagated(config, layout) {
        return Size(0);
    }
    let (d, q) = (layout.d, layout.q);
    let substeps = config.flow_substeps;
    let nodes = Size(n) * (substeps + 1);
    let points = DiffusionPoints::new(config, DiffusionAt::Path);
    let matrices = Size(n) * points.per_source(substeps);
    let second = Size(n) * points.second_pass_per_source(substeps);
    // Node states and propagators; propagate's scratch and the model's
    // Jacobian pass; states and times of the second pass and its cache; D
    // and ∂L/∂D at every point; ∂L/∂L and a zero drift gradient of the
    // second pass, its parameter gradient and backward workspace; Lᵀ and
    // the map's scratch.
    nodes * (d + d * d)
        + propagate_flow_len(layout, n)
        + second * (2 * d + 1 + d * q)
        + layout.cache_len(second.get())
        + matrices * (2 * d * d)
        + layout.len
        + layout.backward_workspace_len(second.get())
        + d * q
        + 2 * d * d
}

/// [`propagate`]'s (and [`propagate_frozen`]'s) workspace for the learned
/// model and `n` sources.
fn propagate_flow_len(layout: &Layout, n: usize) -> usize {
    let block = n.min(PROPAGATE_BLOCK_ROWS);
    propagate_workspace_len_for(
        layout.d,
        n,
        layout
            .jacobian_workspace_len(block)
            .max(layout.infer_workspace_len(block)),
    )
}

/// Splits [`propagated_len`]'s scratch into the node states, the
/// propagators and the rest.
fn split_propagated<'a, F>(
    config: &Config,
    layout: &Layout,
    n: usize,
    scratch: &'a mut [F],
) -> Result<(&'a mut [F], &'a mut [F], &'a mut [F])> {
    let nodes = n * (config.flow_substeps + 1);
    let mut arena = Arena::new(scratch);
    let states = arena.take(nodes * layout.d)?;
    let props = arena.take(nodes * layout.d * layout.d)?;
    Ok((states, props, arena.rest()))
}

/// Splits a loss workspace ([`loss_workspace_len`]) into the forward cache,
/// the propagated target's scratch and the rest.
#[allow(clippy::type_complexity)]
fn split_loss_workspace<'a, F>(
    config: &Config,
    layout: &Layout,
    n: usize,
    workspace: &'a mut [F],
) -> Result<(&'a mut [F], &'a mut [F], &'a mut [F])> {
    let mut arena = Arena::new(workspace);
    let cache = arena.take(layout.cache_len(n))?;
    let propagated = arena.take(propagated_len(config, layout, n).get())?;
    Ok((cache, propagated, arena.rest()))
}

/// The learned flow and its propagators over each gap of the batch, into
/// the propagated scratch (see [`split_propagated`]).
fn propagate_batch<F: Float>(
    config: &Config,
    layout: &Layout,
    params: &[F],
    batch: &Batch<'_, F>,
    scratch: &mut [F],
) -> Result<()> {
    let n = batch.len();
    let (states, props, rest) = split_propagated(config, layout, n, scratch)?;
    let flow_ws = PropagatedBuffers::carve(config, layout, n, rest)?.flow_ws;
    let learned = Learned::standardised(config, params)?;
    let how = if config.residual == Residual::PropagatedFrozen {
        propagate_frozen
    } else {
        propagate
    };
    how(
        &learned,
        batch.x,
        batch.t,
        batch.h,
        config.flow_substeps,
        states,
        props,
        flow_ws,
    )
}

/// Whether a step needs the flow `φ_h(x)` of the learned drift over each
/// gap: for the flow-based targets `D̂` or for [`DriftTeacher::Flow`].
fn needs_flow(config: &Config, layout: &Layout) -> bool {
    config.drift_teacher == DriftTeacher::Flow
        || (layout.head.is_some() && config.residual != Residual::OneStep)
}

/// Elements of a step's scratch beyond the loss workspace: the flow (and
/// [`rk4_flow`]'s workspace unless the propagated target computes it), the
/// targets `D̂` with the one-step prediction, and the flow teacher.
fn step_scratch_len(config: &Config, layout: &Layout, n: usize) -> Size {
    let d = layout.d;
    let mut len = Size(0);
    if needs_flow(config, layout) {
        len = len + Size(n) * d;
        if !is_propagated(config, layout) {
            len = len + flow_workspace_len(layout, n);
        }
    }
    if layout.head.is_some() {
        len = len + Size(n) * d * d;
        if config.residual == Residual::OneStep {
            len = len + Size(n) * d;
        }
    }
    if config.drift_teacher == DriftTeacher::Flow {
        len = len + Size(n) * d;
    }
    len
}

/// [`crate::integrate::rk4_flow_workspace_len`] of the learned model for
/// `n` sources, from its layout (no parameters at hand where it is needed).
fn flow_workspace_len(layout: &Layout, n: usize) -> usize {
    rk4_stages_len(n, layout.d).saturating_add(layout.infer_workspace_len(n))
}

/// The flow `φ_h(x)` (`n×d`) of the learned drift over each source's gap
/// into `flow`: the last node of the propagated target's states when
/// `node_states` holds them (bit-identical to [`rk4_flow`]'s), else by
/// [`rk4_flow`] with `workspace`.
fn learned_flow<F: Float>(
    config: &Config,
    params: &[F],
    batch: &Batch<'_, F>,
    node_states: &[F],
    d: usize,
    flow: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    if node_states.is_empty() {
        let learned = Learned::standardised(config, params)?;
        return rk4_flow(
            &learned,
            batch.x,
            batch.t,
            batch.h,
            config.flow_substeps,
            flow,
            workspace,
        );
    }
    let last = config.flow_substeps;
    for (p, node) in flow
        .chunks_exact_mut(d)
        .zip(node_states.chunks_exact((last + 1) * d))
    {
        p.copy_from_slice(&node[last * d..]);
    }
    Ok(())
}

/// The targets `D̂` (`n×d×d`) of a batch under the current parameters
/// (see [`crate::targets`]); `cache` holds [`Layout::forward_train`]'s
/// output for these parameters (its drift is the one-step prediction);
/// `flow` is [`learned_flow`]'s for the flow-based residuals, else empty;
/// `workspace` holds `n×d` elements for the one-step prediction.
fn compute_targets<F: Float>(
    config: &Config,
    layout: &Layout,
    batch: &Batch<'_, F>,
    cache: &[F],
    flow: &[F],
    d_hat: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    let (n, d) = (batch.len(), layout.d);
    let pred: &[F] = if config.residual == Residual::OneStep {
        let pred = &mut workspace[..n * d];
        // Pairwise: the learned drift; plan-weighted: the teacher's.
        let v = match config.target_mode {
            TargetMode::Pairwise => layout.cached_drift(n, cache),
            TargetMode::PlanWeighted => batch.v_hat,
        };
        predict_one_step(batch.x, v, batch.h, d, pred)?;
        pred
    } else {
        flow
    };
    let alpha = F::from_f64(config.shrinkage);
    let eps = F::from_f64(config.target_epsilon);
    match config.target_mode {
        TargetMode::Pairwise => pairwise_targets(
            batch.x,
            batch.y,
            pred,
            batch.h,
            d,
            config.k_neighbours,
            alpha,
            eps,
            d_hat,
        ),
        TargetMode::PlanWeighted => {
            plan_weighted_targets(pred, batch.y, batch.plan, batch.h, d, alpha, eps, d_hat)
        }
    }
}

/// [`DriftTeacher::Flow`]'s teacher `v̂ + f − (φ_h(x) − x)/h` (`n×d`) into
/// `teacher`, from the batch's `v̂`, the current drift `f` and flow `φ_h(x)`.
fn flow_teacher<F: Float>(batch: &Batch<'_, F>, f: &[F], flow: &[F], d: usize, teacher: &mut [F]) {
    for (i, &h) in batch.h.iter().enumerate() {
        let inv_h = F::ONE / h;
        let row = i * d..(i + 1) * d;
        for ((((o, &v), &fi), &phi), &x) in teacher[row.clone()]
            .iter_mut()
            .zip(&batch.v_hat[row.clone()])
            .zip(&f[row.clone()])
            .zip(&flow[row.clone()])
            .zip(&batch.x[row])
        {
            *o = v + fi - (phi - x) * inv_h;
        }
    }
}

/// Checks a batch against the layout (lengths, finiteness, positive gaps).
fn check_batch<F: Float>(config: &Config, layout: &Layout, batch: &Batch<'_, F>) -> Result<()> {
    check_batch_shapes(config, layout, batch)?;
    check_finite(batch.x, "x")?;
    check_finite(batch.t, "t")?;
    check_finite(batch.v_hat, "v_hat")?;
    if layout.head.is_some() {
        check_finite(batch.y, "y")?;
    }
    Ok(())
}

/// Every length of a batch against `n = t.len()` (at least 1) and `d`,
/// reading no element: `x` and `v_hat` `n×d`, `h` and `mass` `n`; with a
/// diffusion head also `y` (`n×d` for pairwise targets, `m×d` for
/// plan-weighted ones) and `plan` (`n×m`, plan-weighted only). Arrays the
/// step does not read are not checked.
pub fn check_batch_shapes<F>(config: &Config, layout: &Layout, batch: &Batch<'_, F>) -> Result<()> {
    let n = batch.len();
    if n == 0 {
        return Err(Error::bad_dim("t", "the batch has no sources"));
    }
    let nd = checked_mul(n, layout.d, "x")?;
    check_len(batch.x, nd, "x")?;
    check_len(batch.h, n, "h")?;
    check_len(batch.v_hat, nd, "v_hat")?;
    check_len(batch.mass, n, "mass")?;
    if layout.head.is_some() {
        match config.target_mode {
            TargetMode::Pairwise => check_len(batch.y, nd, "y")?,
            TargetMode::PlanWeighted => {
                if batch.y.is_empty() || !batch.y.len().is_multiple_of(layout.d) {
                    return Err(Error::bad_dim(
                        "y",
                        "length is not a positive multiple of d",
                    ));
                }
                let m = batch.y.len() / layout.d;
                check_len(batch.plan, checked_mul(n, m, "plan")?, "plan")?;
            }
        }
    }
    Ok(())
}

/// Loss parts and `grad = ∂total/∂θ` for fixed targets `d_hat` (`n×d×d`,
/// ignored without diffusion) and weight `lambda` of the diffusion loss.
/// The batch's teachers `v̂` are used as given, whatever
/// `config.drift_teacher` says: the flow teacher's shifted teachers are
/// computed by [`train_step`] and [`batch_loss`].
/// The workspace holds at least `loss_workspace_len` elements (part of
/// [`train_step_workspace_len`]).
#[allow(clippy::too_many_arguments)]
pub fn loss_and_gradient<F: Float>(
    config: &Config,
    layout: &Layout,
    lambda: F,
    batch: &Batch<'_, F>,
    params: &[F],
    d_hat: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    check_batch(config, layout, batch)?;
    let n = batch.len();
    let (cache, propagated, rest) = split_loss_workspace(config, layout, n, workspace)?;
    layout.forward_train(params, batch.x, batch.t, cache)?;
    if is_propagated(config, layout) {
        propagate_batch(config, layout, params, batch, propagated)?;
    }
    forward_losses(
        config,
        layout,
        lambda,
        DiffusionAt::Path,
        batch,
        params,
        d_hat,
        cache,
        propagated,
        grad,
        rest,
    )
}

/// Losses and backward from a filled cache (and, for the propagated target,
/// a filled [`propagate_batch`] scratch `propagated`); the loss scratch
/// (backward workspace, weights, gradients of f, log-variance and L) is
/// carved from `workspace`.
#[allow(clippy::too_many_arguments)]
fn forward_losses<F: Float>(
    config: &Config,
    layout: &Layout,
    lambda: F,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &[F],
    d_hat: &[F],
    cache: &[F],
    propagated: &mut [F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let (n, d, q) = (batch.len(), layout.d, layout.q);
    let mut arena = Arena::new(workspace);
    let backward_ws = arena.take(layout.backward_workspace_len(n))?;
    let weights = arena.take(n)?;
    let df = arena.take(n * d)?;
    let d_log_var = arena.take(layout.log_var.map_or(0, |t| t.len()))?;
    let dl = arena.take(n * d * q)?;
    let scratch = arena.take(d * d)?;
    mass_weights(
        config.mass_weighting,
        F::from_f64(config.mass_threshold),
        batch.mass,
        weights,
    )?;
    let log_var = layout.log_var.map_or(&params[..0], |t| &params[t.range()]);
    let drift = drift_loss(
        config.drift_loss,
        layout.cached_drift(n, cache),
        batch.v_hat,
        weights,
        log_var,
        d,
        df,
        d_log_var,
    )?;
    let propagated_on = is_propagated(config, layout);
    let diffusion = if propagated_on {
        propagated_diffusion_loss(
            config,
            layout,
            lambda,
            at,
            batch,
            params,
            d_hat,
            layout.cached_factor(n, cache),
            dl,
            propagated,
        )?
    } else if layout.head.is_some() {
        diffusion_loss(
            layout.cached_factor(n, cache),
            d_hat,
            n,
            d,
            q,
            lambda,
            dl,
            scratch,
        )?
    } else {
        F::ZERO
    };
    layout.backward(params, n, cache, df, dl, grad, backward_ws)?;
    if let Some(t) = layout.log_var {
        grad[t.range()].copy_from_slice(d_log_var);
    }
    if propagated_on && DiffusionPoints::new(config, at) != DiffusionPoints::Start {
        let node_grad = propagated_node_grad(config, layout, n, propagated)?;
        for (g, &x) in grad.iter_mut().zip(node_grad.iter()) {
            *g += x;
        }
    }
    Ok(StepLoss {
        drift,
        diffusion,
        lambda,
        total: drift + lambda * diffusion,
        grad_norm: F::ZERO,
    })
}

/// The buffers of [`propagated_diffusion_loss`] after the node states and
/// propagators, in [`propagated_len`]'s order.
struct PropagatedBuffers<'a, F> {
    flow_ws: &'a mut [F],
    second_states: &'a mut [F],
    second_times: &'a mut [F],
    second_cache: &'a mut [F],
    diffusion: &'a mut [F],
    d_diffusion: &'a mut [F],
    d_factor: &'a mut [F],
    d_drift: &'a mut [F],
    node_grad: &'a mut [F],
    backward_ws: &'a mut [F],
    factor_t: &'a mut [F],
    map_ws: &'a mut [F],
}

impl<'a, F> PropagatedBuffers<'a, F> {
    fn carve(config: &Config, layout: &Layout, n: usize, rest: &'a mut [F]) -> Result<Self> {
        let (d, q) = (layout.d, layout.q);
        let points = DiffusionPoints::new(config, DiffusionAt::Path);
        let matrices = n * points.per_source(config.flow_substeps);
        let second = n * points.second_pass_per_source(config.flow_substeps);
        let mut arena = Arena::new(rest);
        Ok(PropagatedBuffers {
            flow_ws: arena.take(propagate_flow_len(layout, n))?,
            second_states: arena.take(second * d)?,
            second_times: arena.take(second)?,
            second_cache: arena.take(layout.cache_len(second))?,
            diffusion: arena.take(matrices * d * d)?,
            d_diffusion: arena.take(matrices * d * d)?,
            d_factor: arena.take(second * d * q)?,
            d_drift: arena.take(second * d)?,
            node_grad: arena.take(layout.len)?,
            backward_ws: arena.take(layout.backward_workspace_len(second))?,
            factor_t: arena.take(d * q)?,
            map_ws: arena.take(2 * d * d)?,
        })
    }
}

/// The propagated diffusion loss `mean_i ‖M_h(D_θ)_i / h_i − D̂_i‖²_F`
/// (the propagated residuals) from [`propagate_batch`]'s flow and
/// propagators in `propagated`. `D_θ = L Lᵀ` is evaluated where
/// [`DiffusionPoints`] says: the step's own state `z_t`, whose factor
/// `factor` (`n×d×q`) the step's forward pass holds, and the states of a
/// second forward and backward pass (the later nodes of the exact path, or
/// the gaps' midpoints; its parameter gradient is left for
/// [`propagated_node_grad`]). Writes `λ ∂loss/∂L` at the batch's states into
/// `dl` (`n×d×q`; the drift, `Φ` and the flow's states held fixed). Returns
/// the unweighted loss.
#[allow(clippy::too_many_arguments)]
fn propagated_diffusion_loss<F: Float>(
    config: &Config,
    layout: &Layout,
    lambda: F,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &[F],
    d_hat: &[F],
    factor: &[F],
    dl: &mut [F],
    propagated: &mut [F],
) -> Result<F> {
    let (n, d, q) = (batch.len(), layout.d, layout.q);
    let substeps = config.flow_substeps;
    let (dd, dq) = (d * d, d * q);
    let (states, props, rest) = split_propagated(config, layout, n, propagated)?;
    let b = PropagatedBuffers::carve(config, layout, n, rest)?;
    let points = DiffusionPoints::new(config, at);
    let per = points.per_source(substeps);
    let second = n * points.second_pass_per_source(substeps);
    let (second_states, second_times) = (
        &mut b.second_states[..second * d],
        &mut b.second_times[..second],
    );
    match points {
        DiffusionPoints::Nodes => {
            // States and times of nodes 1..=N, row by row (the times as
            // node_times computes them).
            let inv = F::ONE / F::from_usize(substeps);
            for r in 0..n {
                let row = &states[(r * (substeps + 1) + 1) * d..(r + 1) * (substeps + 1) * d];
                second_states[r * substeps * d..(r + 1) * substeps * d].copy_from_slice(row);
                for k in 1..=substeps {
                    second_times[r * substeps + k - 1] =
                        batch.t[r] + batch.h[r] * (F::from_usize(k) * inv);
                }
            }
        }
        DiffusionPoints::Midpoint => gap_midpoints(
            d,
            substeps,
            states,
            batch.t,
            batch.h,
            second_states,
            second_times,
        )?,
        DiffusionPoints::Start => {}
    }
    let second_factor = if second > 0 {
        layout.forward_train(params, second_states, second_times, b.second_cache)?;
        layout.cached_factor(second, b.second_cache)
    } else {
        &[]
    };
    // D = L Lᵀ at every point of every row, in the layout the map reads.
    for r in 0..n {
        for k in 0..per {
            let l = match points.second_pass_index(substeps, r, k) {
                None => &factor[r * dq..(r + 1) * dq],
                Some(i) => &second_factor[i * dq..(i + 1) * dq],
            };
            let slot = (r * per + k) * dd;
            outer_into(l, d, q, b.factor_t, &mut b.diffusion[slot..slot + dd]);
        }
    }
    let diffusion = &b.diffusion[..n * per * dd];
    let d_diffusion = &mut b.d_diffusion[..n * per * dd];
    let map = Propagation::new(d, substeps, batch.h, props)?;
    let loss = map.moment_loss(points.map_at(), diffusion, d_hat, d_diffusion, b.map_ws)?;
    // D = L Lᵀ: ∂/∂L = λ (G + Gᵀ) L; rows whose D is not at z_t get none.
    dl.fill(F::ZERO);
    for r in 0..n {
        for k in 0..per {
            let (l, out) = match points.second_pass_index(substeps, r, k) {
                None => (&factor[r * dq..(r + 1) * dq], &mut dl[r * dq..(r + 1) * dq]),
                Some(i) => (
                    &second_factor[i * dq..(i + 1) * dq],
                    &mut b.d_factor[i * dq..(i + 1) * dq],
                ),
            };
            let slot = (r * per + k) * dd;
            let g = &mut d_diffusion[slot..slot + dd];
            for a in 0..d {
                g[a * d + a] *= lambda + lambda;
                for c in a + 1..d {
                    let s = lambda * (g[a * d + c] + g[c * d + a]);
                    g[a * d + c] = s;
                    g[c * d + a] = s;
                }
            }
            out.fill(F::ZERO);
            matmul_acc(g, false, l, d, d, q, out);
        }
    }
    if second > 0 {
        let d_drift = &mut b.d_drift[..second * d];
        d_drift.fill(F::ZERO);
        layout.backward(
            params,
            second,
            b.second_cache,
            d_drift,
            &b.d_factor[..second * dq],
            b.node_grad,
            b.backward_ws,
        )?;
    }
    Ok(loss)
}

/// The parameter gradient of the second pass left by
/// [`propagated_diffusion_loss`] (unless [`DiffusionPoints::Start`]).
fn propagated_node_grad<'a, F>(
    config: &Config,
    layout: &Layout,
    n: usize,
    propagated: &'a mut [F],
) -> Result<&'a mut [F]> {
    let (_, _, rest) = split_propagated(config, layout, n, propagated)?;
    Ok(PropagatedBuffers::carve(config, layout, n, rest)?.node_grad)
}

/// `D = L Lᵀ` (`d×d`) of a factor `L` (`d×q`); `lt` is `q×d` scratch.
fn outer_into<F: Float>(l: &[F], d: usize, q: usize, lt: &mut [F], out: &mut [F]) {
    for a in 0..d {
        for k in 0..q {
            lt[k * d + a] = l[a * q + k];
        }
    }
    out.fill(F::ZERO);
    matmul_acc(lt, true, lt, d, q, d, out);
}

/// Targets (when the head is on), loss parts and their gradient `grad` (the
/// layout's length) at `epoch`, for the parameters as they are.
#[allow(clippy::too_many_arguments)]
fn step_loss<F: Float>(
    config: &Config,
    layout: &Layout,
    epoch: u32,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    check_len(params, layout.len, "params")?;
    layout.check_inputs(params)?;
    check_room(grad, layout.len, "workspace")?;
    check_batch(config, layout, batch)?;
    computed(step_loss_checked(
        config, layout, epoch, at, batch, params, grad, workspace,
    ))
}

/// After [`check_batch`] every value is computed from finite inputs: a
/// non-finite one (a flow, a propagated map or a target that overflowed)
/// is a numerical failure of the step, not bad input.
fn computed<T>(result: Result<T>) -> Result<T> {
    result.map_err(|e| match e.kind {
        ErrorKind::NonFinite => Error {
            kind: ErrorKind::NumericalFailure,
            ..e
        },
        _ => e,
    })
}

/// [`step_loss`] on a checked batch.
#[allow(clippy::too_many_arguments)]
fn step_loss_checked<F: Float>(
    config: &Config,
    layout: &Layout,
    epoch: u32,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let (n, d) = (batch.len(), layout.d);
    let mut arena = Arena::new(workspace);
    let loss_ws = arena.take(loss_workspace_len(config, layout, n).get())?;
    let (cache, propagated, rest) = split_loss_workspace(config, layout, n, loss_ws)?;
    layout.forward_train(params, batch.x, batch.t, cache)?;
    let propagated_on = is_propagated(config, layout);
    if propagated_on {
        propagate_batch(config, layout, params, batch, propagated)?;
    }
    let flow = arena.take(if needs_flow(config, layout) { n * d } else { 0 })?;
    if !flow.is_empty() {
        let node_states: &[F] = if propagated_on {
            &propagated[..n * (config.flow_substeps + 1) * d]
        } else {
            &[]
        };
        let ws = arena.take(if propagated_on {
            0
        } else {
            flow_workspace_len(layout, n)
        })?;
        learned_flow(config, params, batch, node_states, d, flow, ws)?;
    }
    let d_hat = arena.take(if layout.head.is_some() { n * d * d } else { 0 })?;
    if layout.head.is_some() {
        let ws = arena.take(if config.residual == Residual::OneStep {
            n * d
        } else {
            0
        })?;
        compute_targets(config, layout, batch, cache, flow, d_hat, ws)?;
    }
    let lambda = F::from_f64(config.lambda_at(epoch));
    let taught;
    let batch = if config.drift_teacher == DriftTeacher::Flow {
        let teacher = arena.take(n * d)?;
        flow_teacher(batch, layout.cached_drift(n, cache), flow, d, teacher);
        taught = Batch {
            v_hat: teacher,
            ..*batch
        };
        &taught
    } else {
        batch
    };
    forward_losses(
        config, layout, lambda, at, batch, params, d_hat, cache, propagated, grad, rest,
    )
}

/// The loss parts of a batch at `epoch` (targets included, as
/// [`train_step`] computes them), changing nothing: the validation loss.
/// Workspace: [`train_step_workspace_len`].
pub fn batch_loss<F: Float>(
    config: &Config,
    epoch: u32,
    batch: &Batch<'_, F>,
    params: &[F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let layout = Layout::new(config)?;
    let (grad, rest) = workspace.split_at_mut(layout.len.min(workspace.len()));
    step_loss(
        config,
        &layout,
        epoch,
        DiffusionAt::Path,
        batch,
        params,
        grad,
        rest,
    )
}

/// One training step at `epoch` (for `λ(epoch)`): on success the parameters
/// and Adam state are updated and the loss parts (before the update) are
/// returned. A non-finite loss or gradient returns
/// [`ErrorKind::NumericalFailure`] and leaves `params` and `adam` exactly as
/// they were; so does any other error.
pub fn train_step<F: Float>(
    config: &Config,
    epoch: u32,
    batch: &Batch<'_, F>,
    params: &mut [F],
    adam: &mut AdamState<'_, F>,
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    train_step_diffusion_at(
        config,
        epoch,
        DiffusionAt::Path,
        batch,
        params,
        adam,
        workspace,
    )
}

/// [`train_step`] with the propagated target's `D_θ` evaluated where `at`
/// says (the propagated residuals only; other residuals ignore it):
/// [`DiffusionAt::Path`] (what [`train_step`] does) at every substep state
/// ([`Residual::Propagated`]) or once per source at the gap's midpoint
/// ([`Residual::PropagatedFrozen`]), or [`DiffusionAt::Constant`], the
/// cheaper option, once per source at `z_t` (no second pass through the
/// network; `O(h)` off where `D` varies along the gap, see
/// [`Propagation::explicit_diffusion`]).
pub fn train_step_diffusion_at<F: Float>(
    config: &Config,
    epoch: u32,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &mut [F],
    adam: &mut AdamState<'_, F>,
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let layout = Layout::new(config)?;
    check_len(adam.m, layout.len, "adam_m")?;
    check_len(adam.v, layout.len, "adam_v")?;
    let (grad, rest) = workspace.split_at_mut(layout.len.min(workspace.len()));
    let mut loss = step_loss(config, &layout, epoch, at, batch, params, grad, rest)?;
    let norm = clip_grad_norm(grad, F::from_f64(config.clip_grad_norm));
    loss.grad_norm = norm;
    if !loss.total.is_finite() || !norm.is_finite() {
        return Err(Error::new(
            ErrorKind::NumericalFailure,
            "batch",
            "non-finite loss or gradient: parameters and optimiser state left unchanged",
        ));
    }
    let optimiser = Adam {
        learning_rate: F::from_f64(config.learning_rate),
        beta1: F::from_f64(config.beta1),
        beta2: F::from_f64(config.beta2),
        epsilon: F::from_f64(config.adam_epsilon),
        weight_decay: F::from_f64(config.weight_decay),
    };
    adam.steps += 1;
    // The input block is not trained: Adam and weight decay skip it.
    let trained = layout.trainable();
    optimiser.update(
        adam.steps,
        &mut params[trained.clone()],
        &grad[trained.clone()],
        &mut adam.m[trained.clone()],
        &mut adam.v[trained],
    )?;
    Ok(loss)
}

#[cfg(test)]
mod tests;
