//! A step's targets: the learned flow `φ_h(x)` over each gap, the
//! covariance targets `D̂` and the flow teacher of
//! [`DriftTeacher::Flow`](crate::model::DriftTeacher::Flow).

use super::{Batch, StepPlan};
use crate::error::Result;
use crate::float::Float;
use crate::integrate::rk4_flow;
use crate::model::{Config, Layout, Learned, Residual, TargetMode};
use crate::targets::{pairwise_targets, plan_weighted_targets, predict_one_step};

/// The flow `φ_h(x)` (`n×d`) of the learned drift over each source's gap
/// into `flow`: the last node of the propagated target's states when
/// `node_states` holds them (bit-identical to [`rk4_flow`]'s), else by
/// [`rk4_flow`] with `workspace`.
pub(super) fn learned_flow<F: Float>(
    plan: &StepPlan,
    params: &[F],
    batch: &Batch<'_, F>,
    node_states: &[F],
    d: usize,
    flow: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    let config = &plan.config;
    if node_states.is_empty() {
        let learned = Learned::standardised_with_layout(plan.layout, params)?;
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
pub(super) fn compute_targets<F: Float>(
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
pub(super) fn flow_teacher<F: Float>(
    batch: &Batch<'_, F>,
    f: &[F],
    flow: &[F],
    d: usize,
    teacher: &mut [F],
) {
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
