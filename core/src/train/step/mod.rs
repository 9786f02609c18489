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
//! [`propagate_frozen`](crate::propagated::propagate_frozen) (the same flow, one drift Jacobian per source at
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

mod plan;
mod propagated;
mod targets;

use crate::error::{
    Arena, Error, ErrorKind, Result, check_finite, check_len, check_room, checked_mul,
};
use crate::float::Float;
use crate::loss::{diffusion_loss, drift_loss, drift_loss_gls, mass_weights};
use crate::model::{Config, DriftLoss, DriftTeacher, Layout, Residual, TargetMode};
use crate::optim::{Adam, clip_grad_norm};
use crate::propagated::DiffusionAt;
pub use plan::StepPlan;
use plan::{
    DiffusionPoints, flow_workspace_len, is_propagated, loss_workspace_len, needs_flow,
    split_loss_workspace,
};
use propagated::{propagate_batch, propagated_diffusion_loss, propagated_node_grad};
use targets::{compute_targets, flow_teacher, learned_flow};

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

/// Checks a batch against the layout (lengths, finiteness, positive gaps).
fn check_batch<F: Float>(plan: &StepPlan, batch: &Batch<'_, F>) -> Result<()> {
    check_batch_shapes(plan, batch)?;
    let layout = &plan.layout;
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
pub fn check_batch_shapes<F>(plan: &StepPlan, batch: &Batch<'_, F>) -> Result<()> {
    let (config, layout) = (&plan.config, &plan.layout);
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
/// [`StepPlan::workspace_len`]).
pub fn loss_and_gradient<F: Float>(
    plan: &StepPlan,
    lambda: F,
    batch: &Batch<'_, F>,
    params: &[F],
    d_hat: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    check_batch(plan, batch)?;
    let (config, layout) = (&plan.config, &plan.layout);
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
    let scratch = arena.take(d * d + d)?;
    mass_weights(
        config.mass_weighting,
        F::from_f64(config.mass_threshold),
        batch.mass,
        weights,
    )?;
    let log_var = layout.log_var.map_or(&params[..0], |t| &params[t.range()]);
    let f = layout.cached_drift(n, cache);
    let drift = if config.drift_loss == DriftLoss::Gls && layout.head.is_some() {
        let factor = layout.cached_factor(n, cache);
        drift_loss_gls(f, batch.v_hat, weights, factor, d, q, df, scratch)?
    } else {
        drift_loss(
            config.drift_loss,
            f,
            batch.v_hat,
            weights,
            log_var,
            d,
            df,
            d_log_var,
        )?
    };
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

/// Targets (when the head is on), loss parts and their gradient `grad` (the
/// layout's length) at `epoch`, for the parameters as they are.
fn step_loss<F: Float>(
    plan: &StepPlan,
    epoch: u32,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let layout = &plan.layout;
    check_len(params, layout.len, "params")?;
    layout.check_inputs(params)?;
    check_room(grad, layout.len, "workspace")?;
    check_batch(plan, batch)?;
    computed(step_loss_checked(
        plan, epoch, at, batch, params, grad, workspace,
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
fn step_loss_checked<F: Float>(
    plan: &StepPlan,
    epoch: u32,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &[F],
    grad: &mut [F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let (config, layout) = (&plan.config, &plan.layout);
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
        learned_flow(plan, params, batch, node_states, d, flow, ws)?;
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
/// With [`DriftLoss::Gls`] the drift part is the MSE: the GLS weights move
/// with the learned D, so its values at different epochs do not compare,
/// and the validation loss chooses between epochs. Workspace:
/// [`StepPlan::workspace_len`].
pub fn batch_loss<F: Float>(
    plan: &StepPlan,
    epoch: u32,
    batch: &Batch<'_, F>,
    params: &[F],
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let plain;
    let plan = if plan.config.drift_loss == DriftLoss::Gls {
        // The same layout: only the NLL adds parameters.
        plain = StepPlan {
            config: Config {
                drift_loss: DriftLoss::Mse,
                ..plan.config
            },
            layout: plan.layout,
        };
        &plain
    } else {
        plan
    };
    let (grad, rest) = workspace.split_at_mut(plan.layout.len.min(workspace.len()));
    step_loss(plan, epoch, DiffusionAt::Path, batch, params, grad, rest)
}

/// One training step at `epoch` (for `λ(epoch)`): on success the parameters
/// and Adam state are updated and the loss parts (before the update) are
/// returned. A non-finite loss or gradient returns
/// [`ErrorKind::NumericalFailure`] and leaves `params` and `adam` exactly as
/// they were; so does any other error.
pub fn train_step<F: Float>(
    plan: &StepPlan,
    epoch: u32,
    batch: &Batch<'_, F>,
    params: &mut [F],
    adam: &mut AdamState<'_, F>,
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    train_step_diffusion_at(
        plan,
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
/// [`Propagation::explicit_diffusion`](crate::propagated::Propagation::explicit_diffusion)).
pub fn train_step_diffusion_at<F: Float>(
    plan: &StepPlan,
    epoch: u32,
    at: DiffusionAt,
    batch: &Batch<'_, F>,
    params: &mut [F],
    adam: &mut AdamState<'_, F>,
    workspace: &mut [F],
) -> Result<StepLoss<F>> {
    let (config, layout) = (&plan.config, &plan.layout);
    check_len(adam.m, layout.len, "adam_m")?;
    check_len(adam.v, layout.len, "adam_v")?;
    let (grad, rest) = workspace.split_at_mut(layout.len.min(workspace.len()));
    let mut loss = step_loss(plan, epoch, at, batch, params, grad, rest)?;
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
