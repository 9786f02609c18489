//! The propagated diffusion loss of a step: the learned flow and its
//! propagators over each gap ([`propagate_batch`]), `D_θ = L Lᵀ` where
//! [`DiffusionPoints`] says, the moment loss and its gradient back to `L_θ`
//! through the adjoint map and a second forward and backward pass.

use super::Batch;
use super::plan::{DiffusionPoints, PropagatedBuffers, split_propagated};
use crate::error::Result;
use crate::float::Float;
use crate::linalg::gemm::matmul_acc;
use crate::model::{Config, Layout, Learned, Residual};
use crate::propagated::{DiffusionAt, Propagation, gap_midpoints, propagate, propagate_frozen};

/// The learned flow and its propagators over each gap of the batch, into
/// the propagated scratch (see [`split_propagated`]).
pub(super) fn propagate_batch<F: Float>(
    config: &Config,
    layout: &Layout,
    params: &[F],
    batch: &Batch<'_, F>,
    scratch: &mut [F],
) -> Result<()> {
    let n = batch.len();
    let (states, props, rest) = split_propagated(config, layout, n, scratch)?;
    let flow_ws = PropagatedBuffers::carve(config, layout, n, rest)?.flow_ws;
    let learned = Learned::standardised_with_layout(*layout, params)?;
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
pub(super) fn propagated_diffusion_loss<F: Float>(
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
pub(super) fn propagated_node_grad<'a, F>(
    config: &Config,
    layout: &Layout,
    n: usize,
    propagated: &'a mut [F],
) -> Result<&'a mut [F]> {
    let (_, _, rest) = split_propagated(config, layout, n, propagated)?;
    Ok(PropagatedBuffers::carve(config, layout, n, rest)?.node_grad)
}

/// `D = L Lᵀ` (`d×d`) of a factor `L` (`d×q`); `lt` is `q×d` scratch.
pub(super) fn outer_into<F: Float>(l: &[F], d: usize, q: usize, lt: &mut [F], out: &mut [F]) {
    for a in 0..d {
        for k in 0..q {
            lt[k * d + a] = l[a * q + k];
        }
    }
    out.fill(F::ZERO);
    matmul_acc(lt, true, lt, d, q, d, out);
}
