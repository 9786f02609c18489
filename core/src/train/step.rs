//! One training step on a prepared minibatch: forward, covariance targets
//! (when the diffusion head is on), losses, manual backward, gradient-norm
//! clipping, Adam.
//!
//! With `learn_diffusion = false` nothing of the diffusion path runs: no
//! target, no factor, no diffusion loss; the parameter slice is the
//! drift-only model's.
//!
//! With [`Residual::Propagated`] the diffusion loss compares `M_h(D_θ)/h`
//! with `D̂` ([`crate::propagate`]): the learned flow and its Jacobian are
//! integrated over each gap, the factor is evaluated at the substep states
//! (a second forward pass over `n·(flow_substeps+1)` rows), and the loss's
//! gradient reaches `L_θ` through the adjoint map and that pass's backward.

use crate::error::{
    Arena, Error, ErrorKind, Result, check_finite, check_len, check_room, checked_mul,
};
use crate::float::Float;
use crate::integrate::{rk4_flow, rk4_flow_workspace_len};
use crate::loss::{diffusion_loss, drift_loss, mass_weights};
use crate::model::{Config, Layout, Learned, Residual, TargetMode};
use crate::optim::{Adam, clip_grad_norm};
use crate::propagate::{DiffusionAt, Propagation, node_times, propagate, propagate_scratch_len};
use crate::targets::{pairwise_targets, plan_weighted_targets, predict_one_step};

/// A prepared minibatch of `n` sources (plain row-major slices).
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

/// Workspace elements of [`train_step`] for `n` sources and `m` targets of
/// the plan (`m` is ignored for pairwise targets).
pub fn train_step_workspace_len(config: &Config, n: usize, m: usize) -> Result<usize> {
    let layout = Layout::new(config)?;
    Ok(layout.len + loss_workspace_len(config, &layout, n) + targets_len(config, &layout, n, m))
}

/// Elements of [`loss_and_gradient`]'s workspace.
fn loss_workspace_len(config: &Config, layout: &Layout, n: usize) -> usize {
    let (d, q) = (layout.d, layout.q);
    layout.cache_len(n)
        + layout.backward_workspace_len(n)
        + n
        + n * d
        + d
        + n * d * q
        + d * d
        + propagated_len(config, layout, n)
}

/// Elements of [`propagated_diffusion_loss`]'s workspace (0 unless the
/// diffusion head is on and the residual is [`Residual::Propagated`]).
fn propagated_len(config: &Config, layout: &Layout, n: usize) -> usize {
    if layout.head.is_none() || config.residual != Residual::Propagated {
        return 0;
    }
    let (d, q) = (layout.d, layout.q);
    let rows = n * (config.flow_substeps + 1);
    // Node states, times, propagators; propagate's scratch and the model's
    // Jacobian pass; the node pass's cache; D and ∂L/∂D at the nodes, ∂L/∂L,
    // a zero drift gradient, the node pass's parameter gradient and its
    // backward workspace; the map's scratch.
    rows * d
        + rows
        + rows * d * d
        + propagate_scratch_len(d, n)
        + layout.jacobian_workspace_len(n)
        + layout.cache_len(rows)
        + 2 * rows * d * d
        + rows * d * q
        + rows * d
        + layout.len
        + layout.backward_workspace_len(rows)
        + 2 * d * d
}

/// Elements for the targets `D̂` and their computation (0 without
/// diffusion).
fn targets_len(config: &Config, layout: &Layout, n: usize, _m: usize) -> usize {
    if layout.head.is_none() {
        return 0;
    }
    let d = layout.d;
    let flow = match config.residual {
        Residual::OneStep => 0,
        // rk4_flow_workspace_len of the learned model, spelled out (no
        // parameters at hand here).
        Residual::Flow | Residual::Propagated => 5 * n * d + n + layout.infer_workspace_len(n),
    };
    n * d * d + n * d + flow
}

/// The targets `D̂` (`n×d×d`) of a batch under the current parameters
/// (see [`crate::targets`]); `cache` holds [`Layout::forward_train`]'s
/// output for these parameters (its drift is the one-step prediction).
fn compute_targets<F: Float>(
    config: &Config,
    layout: &Layout,
    params: &[F],
    batch: &Batch<'_, F>,
    cache: &[F],
    d_hat: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    let (n, d) = (batch.len(), layout.d);
    let mut arena = Arena::new(workspace);
    let pred = arena.take(n * d)?;
    match config.residual {
        Residual::OneStep => {
            // Pairwise: the learned drift; plan-weighted: the teacher's.
            let v = match config.target_mode {
                TargetMode::Pairwise => layout.cached_drift(n, cache),
                TargetMode::PlanWeighted => batch.v_hat,
            };
            predict_one_step(batch.x, v, batch.h, d, pred)?;
        }
        Residual::Flow | Residual::Propagated => {
            let learned = Learned::new(config, params)?;
            let ws = arena.take(rk4_flow_workspace_len(&learned, n))?;
            rk4_flow(
                &learned,
                batch.x,
                batch.t,
                batch.h,
                config.flow_substeps,
                pred,
                ws,
            )?;
        }
    }
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

/// Checks a batch against the layout (lengths, finiteness, positive gaps).
fn check_batch<F: Float>(config: &Config, layout: &Layout, batch: &Batch<'_, F>) -> Result<()> {
    let n = batch.len();
    if n == 0 {
        return Err(Error::bad_dim("batch", "has no sources"));
    }
    let nd = checked_mul(n, layout.d, "x")?;
    check_len(batch.x, nd, "x")?;
    check_len(batch.h, n, "h")?;
    check_len(batch.v_hat, nd, "v_hat")?;
    check_len(batch.mass, n, "mass")?;
    check_finite(batch.x, "x")?;
    check_finite(batch.t, "t")?;
    check_finite(batch.v_hat, "v_hat")?;
    if layout.head.is_some() {
        if config.target_mode == TargetMode::Pairwise {
            check_len(batch.y, nd, "y")?;
        }
        check_finite(batch.y, "y")?;
    }
    Ok(())
}

/// Loss parts and `grad = ∂total/∂θ` for fixed targets `d_hat` (`n×d×d`,
/// ignored without diffusion) and weight `lambda` of the diffusion loss.
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
    let (cache, rest) = workspace.split_at_mut(layout.cache_len(n).min(workspace.len()));
    check_room(cache, layout.cache_len(n), "workspace")?;
    layout.forward_train(params, batch.x, batch.t, cache)?;
    forward_losses(
        config, layout, lambda, batch, params, d_hat, cache, grad, rest,
    )
}

/// Losses and backward from a filled cache; the loss scratch (backward
/// workspace, weights, gradients of f, log-variance and L, propagation) is
/// carved from `workspace`.
#[allow(clippy::too_many_arguments)]
fn forward_losses<F: Float>(
    config: &Config,
    layout: &Layout,
    lambda: F,
    batch: &Batch<'_, F>,
    params: &[F],
    d_hat: &[F],
    cache: &[F],
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
    let propagated_ws = arena.take(propagated_len(config, layout, n))?;
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
    let propagated = layout.head.is_some() && config.residual == Residual::Propagated;
    if propagated {
        dl.fill(F::ZERO);
    }
    let diffusion = if layout.head.is_some() && !propagated {
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
    let diffusion = if propagated {
        propagated_diffusion_loss(
            config,
            layout,
            lambda,
            batch,
            params,
            d_hat,
            grad,
            propagated_ws,
        )?
    } else {
        diffusion
    };
    Ok(StepLoss {
        drift,
        diffusion,
        lambda,
        total: drift + lambda * diffusion,
        grad_norm: F::ZERO,
    })
}

/// The propagated diffusion loss `mean_i ‖M_h(D_θ)_i / h_i − D̂_i‖²_F`
/// ([`Residual::Propagated`]): integrates the learned flow and its Jacobian
/// over each gap, evaluates `L_θ` at the substep states, and adds
/// `λ ∂loss/∂θ` through the factor (the drift, `Φ` and the substep states
/// held fixed) to `grad`. Returns the unweighted loss.
#[allow(clippy::too_many_arguments)]
fn propagated_diffusion_loss<F: Float>(
    config: &Config,
    layout: &Layout,
    lambda: F,
    batch: &Batch<'_, F>,
    params: &[F],
    d_hat: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<F> {
    let (n, d, q) = (batch.len(), layout.d, layout.q);
    let substeps = config.flow_substeps;
    let rows = n * (substeps + 1);
    let mut arena = Arena::new(workspace);
    let states = arena.take(rows * d)?;
    let times = arena.take(rows)?;
    let props = arena.take(rows * d * d)?;
    let flow_ws = arena.take(propagate_scratch_len(d, n) + layout.jacobian_workspace_len(n))?;
    let node_cache = arena.take(layout.cache_len(rows))?;
    let diffusion = arena.take(rows * d * d)?;
    let d_diffusion = arena.take(rows * d * d)?;
    let d_factor = arena.take(rows * d * q)?;
    let d_drift = arena.take(rows * d)?;
    let node_grad = arena.take(layout.len)?;
    let backward_ws = arena.take(layout.backward_workspace_len(rows))?;
    let map_ws = arena.take(2 * d * d)?;
    let learned = Learned::new(config, params)?;
    propagate(
        &learned, batch.x, batch.t, batch.h, substeps, states, props, flow_ws,
    )?;
    node_times(batch.t, batch.h, substeps, times)?;
    layout.forward_train(params, states, times, node_cache)?;
    let factor = layout.cached_factor(rows, node_cache);
    for (l, dm) in factor
        .chunks_exact(d * q)
        .zip(diffusion.chunks_exact_mut(d * d))
    {
        for r in 0..d {
            for c in 0..d {
                dm[r * d + c] = (0..q).map(|k| l[r * q + k] * l[c * q + k]).sum();
            }
        }
    }
    let map = Propagation::new(d, substeps, batch.h, props)?;
    let loss = map.moment_loss(DiffusionAt::Path, diffusion, d_hat, d_diffusion, map_ws)?;
    // D = L Lᵀ: ∂/∂L = λ (G + Gᵀ) L.
    for ((g, l), dl) in d_diffusion
        .chunks_exact(d * d)
        .zip(factor.chunks_exact(d * q))
        .zip(d_factor.chunks_exact_mut(d * q))
    {
        for r in 0..d {
            for k in 0..q {
                let s: F = (0..d)
                    .map(|c| (g[r * d + c] + g[c * d + r]) * l[c * q + k])
                    .sum();
                dl[r * q + k] = lambda * s;
            }
        }
    }
    d_drift.fill(F::ZERO);
    layout.backward(
        params,
        rows,
        node_cache,
        d_drift,
        d_factor,
        node_grad,
        backward_ws,
    )?;
    for (g, &x) in grad.iter_mut().zip(node_grad.iter()) {
        *g += x;
    }
    Ok(loss)
}

/// Targets (when the head is on), loss parts and their gradient `grad` (the
/// layout's length) at `epoch`, for the parameters as they are.
fn step_loss<F: Float>(
    config: &Config,
    layout: &Layout,
    epoch: u32,
    batch: &Batch<'_, F>,
    params: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    check_len(params, layout.len, "params")?;
    check_room(grad, layout.len, "workspace")?;
    check_batch(config, layout, batch)?;
    let n = batch.len();
    let mut arena = Arena::new(workspace);
    let loss_ws = arena.take(loss_workspace_len(config, layout, n))?;
    let (cache, rest) = loss_ws.split_at_mut(layout.cache_len(n));
    layout.forward_train(params, batch.x, batch.t, cache)?;
    let d_hat = arena.take(if layout.head.is_some() {
        n * layout.d * layout.d
    } else {
        0
    })?;
    if layout.head.is_some() {
        let ws = arena.take(targets_len(config, layout, n, 0) - d_hat.len())?;
        compute_targets(config, layout, params, batch, cache, d_hat, ws)?;
    }
    let lambda = F::from_f64(config.lambda_at(epoch));
    forward_losses(
        config, layout, lambda, batch, params, d_hat, cache, grad, rest,
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
    step_loss(config, &layout, epoch, batch, params, grad, rest)
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
    let layout = Layout::new(config)?;
    check_len(adam.m, layout.len, "adam_m")?;
    check_len(adam.v, layout.len, "adam_v")?;
    let (grad, rest) = workspace.split_at_mut(layout.len.min(workspace.len()));
    let mut loss = step_loss(config, &layout, epoch, batch, params, grad, rest)?;
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
    optimiser.update(adam.steps, params, grad, adam.m, adam.v)?;
    Ok(loss)
}

#[cfg(test)]
mod tests;
