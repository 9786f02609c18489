//! The RK4 engine of the propagated map: the drift's flow and its
//! variational equation `dΦ/ds = J_f Φ` stepped together over blocks of
//! rows ([`propagate`]), or the flow with one Jacobian frozen at the gap's
//! midpoint ([`propagate_frozen`]); both store the node states and the
//! propagators `P_k = Φ(h, s_k)`.

use super::quadrature::{check_gaps, check_substeps, write_midpoints};
use crate::dynamics::DriftJacobian;
use crate::error::{Error, ErrorKind, Result, check_finite, check_len, check_room, checked_mul};
use crate::float::Float;
use crate::integrate::{Rk4Stages, rk4_stages_len, rk4_substep, rk4_substep_with};
use crate::linalg::gemm::matmul_acc;
use crate::par::for_each_chunk3;

/// Rows [`propagate`] integrates together: a block's stage buffers and the
/// Jacobian pass's tangents (`block·d×width` for the learned model) stay in
/// the L2 cache. With the `std` feature the blocks run in parallel, each on
/// its own part of the workspace. Results depend on neither the block size
/// nor the thread count: rows are independent and each row's arithmetic is
/// the same in any block.
pub const PROPAGATE_BLOCK_ROWS: usize = 32;

/// Workspace elements [`propagate`] and [`propagate_frozen`] need for
/// `rows` states.
pub fn propagate_workspace_len<F: Float, S: DriftJacobian<F>>(dynamics: &S, rows: usize) -> usize {
    let block = rows.min(PROPAGATE_BLOCK_ROWS);
    propagate_workspace_len_for(
        dynamics.dim(),
        rows,
        dynamics
            .jacobian_workspace_len(block)
            .max(dynamics.workspace_len(block)),
    )
}

/// [`propagate_workspace_len`] from the state dimension `d` and the
/// dynamics' own workspace for one block of `min(rows,
/// PROPAGATE_BLOCK_ROWS)` rows (the larger of
/// [`DriftJacobian::jacobian_workspace_len`] and
/// [`crate::dynamics::Dynamics::workspace_len`]),
/// for callers that size a workspace before the dynamics exist.
pub fn propagate_workspace_len_for(d: usize, rows: usize, block_model_len: usize) -> usize {
    rows.div_ceil(PROPAGATE_BLOCK_ROWS).saturating_mul(
        block_scratch_len(d, rows.min(PROPAGATE_BLOCK_ROWS)).saturating_add(block_model_len),
    )
}

/// The propagation's own scratch for a block of `rows` states.
fn block_scratch_len(d: usize, rows: usize) -> usize {
    let rd = rows.saturating_mul(d);
    // Current state; RK4 stage slopes, state and times; Jacobian, stage
    // slope, stage matrix and slope sum of the variational equation.
    rd.saturating_add(rk4_stages_len(rows, d))
        .saturating_add(rd.saturating_mul(d).saturating_mul(4))
}

/// A block's scratch ([`block_scratch_len`], then the dynamics' own).
struct BlockScratch<'a, F> {
    cur: &'a mut [F],
    stages: Rk4Stages<'a, F>,
    var: Variational<'a, F>,
    model_ws: &'a mut [F],
}

impl<'a, F> BlockScratch<'a, F> {
    fn carve(workspace: &'a mut [F], rows: usize, d: usize) -> Self {
        let (len, mat_len) = (rows * d, rows * d * d);
        let (cur, rest) = workspace.split_at_mut(len);
        let (stages, rest) = rest.split_at_mut(rk4_stages_len(rows, d));
        let (jac, rest) = rest.split_at_mut(mat_len);
        let (slope, rest) = rest.split_at_mut(mat_len);
        let (stage_mat, rest) = rest.split_at_mut(mat_len);
        let (slope_sum, model_ws) = rest.split_at_mut(mat_len);
        BlockScratch {
            cur,
            stages: Rk4Stages::carve(stages, rows, d),
            var: Variational {
                jac,
                slope,
                stage_mat,
                slope_sum,
            },
            model_ws,
        }
    }
}

/// The variational equation's RK4 buffers for a block (`rows×d×d` each):
/// the stage's drift Jacobian `J`, its slope `K`, the stage matrix
/// `I + c δ K` and the weighted slope sum `K₁ + 2K₂ + 2K₃ + K₄`.
struct Variational<'a, F> {
    jac: &'a mut [F],
    slope: &'a mut [F],
    stage_mat: &'a mut [F],
    slope_sum: &'a mut [F],
}

impl<F: Float> Variational<'_, F> {
    /// RK4 stage `stage` (0..4) of `dΦ/ds = J Φ` over one substep from
    /// `Φ = I`, with that stage's Jacobian in `jac`: `K₁ = J₁`,
    /// `K_i = J_i (I + c_i δ K_{i−1})` (`c = ½, ½, 1`), summed with weights
    /// `1, 2, 2, 1` — the derivative of the RK4 step.
    fn stage(&mut self, stage: usize, h: &[F], inv: F, d: usize) {
        let weight = if stage == 1 || stage == 2 {
            F::TWO
        } else {
            F::ONE
        };
        if stage == 0 {
            self.slope.copy_from_slice(self.jac);
            self.slope_sum.copy_from_slice(self.slope);
        } else {
            batched_matmul(self.jac, self.stage_mat, d, self.slope);
            accumulate(self.slope_sum, weight, self.slope);
        }
        if stage < 3 {
            let frac = if stage == 2 { inv } else { inv * F::HALF };
            stage_matrices(self.slope, h, frac, d, self.stage_mat);
        }
    }

    /// The one-substep transition `Φ(s_{k+1}, s_k) = I + δ/6 ΣK` of every
    /// row into node `step`'s slot of `propagators` (`rows×(N+1)×d×d`),
    /// where [`propagators_from_transitions`] expects it.
    #[allow(clippy::too_many_arguments)]
    fn store_transition(
        &self,
        h: &[F],
        inv: F,
        d: usize,
        nodes: usize,
        step: usize,
        propagators: &mut [F],
    ) {
        let dd = d * d;
        let sixth = F::ONE / F::from_f64(6.0);
        for (r, &hr) in h.iter().enumerate() {
            let dt = hr * inv * sixth;
            let base = (r * nodes + step) * dd;
            let transition = &mut propagators[base..base + dd];
            for (i, x) in transition.iter_mut().enumerate() {
                *x = dt * self.slope_sum[r * dd + i];
            }
            for a in 0..d {
                transition[a * d + a] += F::ONE;
            }
        }
    }
}

/// Integrates, for each row, the drift's flow from `z_r` at `t_r` over the
/// gap `h_r > 0` by `substeps` classic RK4 steps, together with the
/// variational equation, and stores the node states and propagators.
///
/// - `z`: `rows×d`; `t`, `h`: `rows` (time units).
/// - `states` (out): `rows×(N+1)×d`, node `k` of row `r` at
///   `(r(N+1)+k)·d`: `z_{s_k}`, with node 0 the start and node `N` the flow
///   `φ_h(z_r)` — bit-identical to [`crate::integrate::rk4_flow`]'s result.
/// - `propagators` (out): `rows×(N+1)×d×d`, `P_k = Φ(h, s_k)`, so `P_N = I`
///   and `P_0` is the Jacobian of the discrete flow map `z_r ↦ φ_h(z_r)`
///   (the variational equation is stepped by the same RK4 stages, which is
///   exactly the derivative of the RK4 step).
///
/// Errors: lengths, non-finite input, `h ≤ 0`, `substeps = 0`, a short
/// workspace ([`propagate_workspace_len`]); a flow that leaves the finite
/// range is [`ErrorKind::NumericalFailure`] (outputs are then garbage).
#[allow(clippy::too_many_arguments)]
pub fn propagate<F: Float, S: DriftJacobian<F> + Sync>(
    dynamics: &S,
    z: &[F],
    t: &[F],
    h: &[F],
    substeps: usize,
    states: &mut [F],
    propagators: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    propagate_in_blocks(
        dynamics,
        z,
        t,
        h,
        substeps,
        states,
        propagators,
        workspace,
        propagate_block,
    )
}

/// The cheap approximation of [`propagate`]: the same flow (node states
/// bit-identical to [`crate::integrate::rk4_flow`]'s, by plain RK4 of the
/// drift), but the drift Jacobian frozen over the gap. One Jacobian per
/// row, `J = J_f(z_mid, t + h/2)` at the gap's midpoint state
/// ([`gap_midpoints`](super::gap_midpoints)), and every substep's transition is the RK4
/// transition of `dΦ/ds = J Φ`,
///
/// ```text
/// T = I + δJ + δ²J²/2 + δ³J³/6 + δ⁴J⁴/24,  δ = h/N,   P_k = T^(N−k),
/// ```
///
/// computed by the same stage arithmetic as [`propagate`], so for a drift
/// that is linear in `z` the two agree to the bit. For a nonlinear drift
/// this is the first Magnus term about the midpoint: the exponent's error
/// is `O(h³)` (the commutators of `J` along the path), against `O(h⁵)` per
/// substep for the exact path. The cost is one Jacobian pass per row in
/// place of `4N`. Shapes, errors and workspace as [`propagate`]'s.
#[allow(clippy::too_many_arguments)]
pub fn propagate_frozen<F: Float, S: DriftJacobian<F> + Sync>(
    dynamics: &S,
    z: &[F],
    t: &[F],
    h: &[F],
    substeps: usize,
    states: &mut [F],
    propagators: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    propagate_in_blocks(
        dynamics,
        z,
        t,
        h,
        substeps,
        states,
        propagators,
        workspace,
        propagate_frozen_block,
    )
}

/// The signature of [`propagate_block`] and [`propagate_frozen_block`]:
/// one block of rows, inputs checked by the caller.
type BlockFn<F, S> = fn(&S, &[F], &[F], &[F], usize, &mut [F], &mut [F], &mut [F]);

/// [`propagate`]'s and [`propagate_frozen`]'s checks, blocks (in parallel
/// with `std`) and finiteness check around `block`.
#[allow(clippy::too_many_arguments)]
fn propagate_in_blocks<F: Float, S: DriftJacobian<F> + Sync>(
    dynamics: &S,
    z: &[F],
    t: &[F],
    h: &[F],
    substeps: usize,
    states: &mut [F],
    propagators: &mut [F],
    workspace: &mut [F],
    block_fn: BlockFn<F, S>,
) -> Result<()> {
    let d = dynamics.dim();
    if d == 0 {
        return Err(Error::bad_dim("dynamics", "state dimension is zero"));
    }
    check_substeps(substeps)?;
    let rows = t.len();
    let nodes = substeps + 1;
    let dd = checked_mul(d, d, "z")?;
    let len = checked_mul(rows, d, "z")?;
    let mat_len = checked_mul(rows, dd, "z")?;
    check_len(z, len, "z")?;
    check_len(h, rows, "h")?;
    check_len(states, checked_mul(len, nodes, "states")?, "states")?;
    check_len(
        propagators,
        checked_mul(mat_len, nodes, "propagators")?,
        "propagators",
    )?;
    check_finite(z, "z")?;
    check_finite(t, "t")?;
    check_gaps(h)?;
    check_room(
        workspace,
        propagate_workspace_len(dynamics, rows),
        "workspace",
    )?;
    let block = rows.min(PROPAGATE_BLOCK_ROWS);
    let block_ws = propagate_workspace_len(dynamics, block);
    let blocks = rows.div_ceil(PROPAGATE_BLOCK_ROWS);
    if blocks == 1 {
        // One block: no parallel loop (and none of its job bookkeeping).
        block_fn(
            dynamics,
            z,
            t,
            h,
            substeps,
            states,
            propagators,
            &mut workspace[..block_ws],
        );
    } else {
        for_each_chunk3(
            (states, block * nodes * d),
            (propagators, block * nodes * dd),
            (&mut workspace[..blocks * block_ws], block_ws),
            |k, states, propagators, workspace| {
                let rows = k * block..(k * block + block).min(rows);
                block_fn(
                    dynamics,
                    &z[rows.start * d..rows.end * d],
                    &t[rows.clone()],
                    &h[rows],
                    substeps,
                    states,
                    propagators,
                    workspace,
                );
            },
        );
    }
    if states
        .iter()
        .chain(propagators.iter())
        .any(|x| !x.is_finite())
    {
        return Err(Error::new(
            ErrorKind::NumericalFailure,
            "dynamics",
            "the flow or its Jacobian left the finite range over the gap",
        ));
    }
    Ok(())
}

/// [`propagate`] on one block of rows (inputs checked by the caller;
/// `workspace` holds [`block_scratch_len`] and the dynamics' workspace for
/// the block).
#[allow(clippy::too_many_arguments)]
fn propagate_block<F: Float, S: DriftJacobian<F>>(
    dynamics: &S,
    z: &[F],
    t: &[F],
    h: &[F],
    substeps: usize,
    states: &mut [F],
    propagators: &mut [F],
    workspace: &mut [F],
) {
    let (d, nodes) = (dynamics.dim(), substeps + 1);
    let BlockScratch {
        cur,
        mut stages,
        mut var,
        model_ws,
    } = BlockScratch::carve(workspace, t.len(), d);
    cur.copy_from_slice(z);
    store_states(cur, d, nodes, 0, states);
    let inv = F::ONE / F::from_usize(substeps);
    for step in 0..substeps {
        // The same stages as rk4_flow's, so the flows agree to the bit; each
        // stage's Jacobian steps the variational equation.
        rk4_substep_with(
            d,
            t,
            h,
            step,
            substeps,
            cur,
            &mut stages,
            |stage, z, times, k| {
                dynamics.drift_jacobian(z, times, k, var.jac, model_ws);
                var.stage(stage, h, inv, d);
            },
        );
        var.store_transition(h, inv, d, nodes, step, propagators);
        store_states(cur, d, nodes, step + 1, states);
    }
    propagators_from_transitions(d, substeps, propagators, var.jac);
}

/// [`propagate_frozen`] on one block of rows (as [`propagate_block`]).
#[allow(clippy::too_many_arguments)]
fn propagate_frozen_block<F: Float, S: DriftJacobian<F>>(
    dynamics: &S,
    z: &[F],
    t: &[F],
    h: &[F],
    substeps: usize,
    states: &mut [F],
    propagators: &mut [F],
    workspace: &mut [F],
) {
    let (d, nodes, dd) = (
        dynamics.dim(),
        substeps + 1,
        dynamics.dim() * dynamics.dim(),
    );
    let BlockScratch {
        cur,
        mut stages,
        mut var,
        model_ws,
    } = BlockScratch::carve(workspace, t.len(), d);
    cur.copy_from_slice(z);
    store_states(cur, d, nodes, 0, states);
    for step in 0..substeps {
        rk4_substep(dynamics, t, h, step, substeps, cur, &mut stages, model_ws);
        store_states(cur, d, nodes, step + 1, states);
    }
    // One Jacobian per row at the midpoint (state into the stage buffer,
    // the drift itself into k1, unused), frozen over every stage.
    write_midpoints(d, substeps, &*states, t, h, stages.stage, stages.times);
    dynamics.drift_jacobian(stages.stage, stages.times, stages.k1, var.jac, model_ws);
    let inv = F::ONE / F::from_usize(substeps);
    for stage in 0..4 {
        var.stage(stage, h, inv, d);
    }
    var.store_transition(h, inv, d, nodes, 0, propagators);
    for row in propagators.chunks_exact_mut(nodes * dd) {
        let (first, rest) = row.split_at_mut(dd);
        for slot in rest[..(substeps - 1) * dd].chunks_exact_mut(dd) {
            slot.copy_from_slice(first);
        }
    }
    propagators_from_transitions(d, substeps, propagators, var.jac);
}

/// Backward pass over every row of `propagators` (`rows×(N+1)×d×d`) holding
/// the one-substep transitions `Φ(s_{k+1}, s_k)` in slots `k < N`: `P_N = I`,
/// `P_k = P_{k+1} Φ(s_{k+1}, s_k)`. `tmp` is `d×d` scratch.
fn propagators_from_transitions<F: Float>(
    d: usize,
    substeps: usize,
    propagators: &mut [F],
    tmp: &mut [F],
) {
    let dd = d * d;
    let tmp = &mut tmp[..dd];
    for row in propagators.chunks_exact_mut((substeps + 1) * dd) {
        let last = &mut row[substeps * dd..];
        for (i, x) in last.iter_mut().enumerate() {
            *x = if i % (d + 1) == 0 { F::ONE } else { F::ZERO };
        }
        for k in (0..substeps).rev() {
            let (head, tail) = row.split_at_mut((k + 1) * dd);
            let transition = &mut head[k * dd..];
            matmul(&tail[..dd], transition, d, tmp);
            transition.copy_from_slice(tmp);
        }
    }
}

/// Copies the block state `cur` (`rows×d`) into node `k` of `states`.
fn store_states<F: Float>(cur: &[F], d: usize, nodes: usize, k: usize, states: &mut [F]) {
    for (r, z) in cur.chunks_exact(d).enumerate() {
        let base = (r * nodes + k) * d;
        states[base..base + d].copy_from_slice(z);
    }
}

/// `stage_r = I + (h_r · frac) K_r` for every row's `d×d` block.
fn stage_matrices<F: Float>(k: &[F], h: &[F], frac: F, d: usize, stage: &mut [F]) {
    let dd = d * d;
    for (r, &hr) in h.iter().enumerate() {
        let dt = hr * frac;
        for i in 0..dd {
            stage[r * dd + i] = dt * k[r * dd + i];
        }
        for a in 0..d {
            stage[r * dd + a * (d + 1)] += F::ONE;
        }
    }
}

/// `sum += scale · x`.
fn accumulate<F: Float>(sum: &mut [F], scale: F, x: &[F]) {
    for (s, &v) in sum.iter_mut().zip(x) {
        *s += scale * v;
    }
}

/// `out = a b` for `d×d` row-major matrices.
pub(super) fn matmul<F: Float>(a: &[F], b: &[F], d: usize, out: &mut [F]) {
    out[..d * d].fill(F::ZERO);
    matmul_acc(a, false, b, d, d, d, out);
}

/// `out_r = a_r b_r` for every row's `d×d` blocks.
fn batched_matmul<F: Float>(a: &[F], b: &[F], d: usize, out: &mut [F]) {
    let dd = d * d;
    for ((a, b), out) in a
        .chunks_exact(dd)
        .zip(b.chunks_exact(dd))
        .zip(out.chunks_exact_mut(dd))
    {
        matmul(a, b, d, out);
    }
}
