//! Jacobian-propagated diffusion: how a diffusion rate `D` acting along the
//! drift's flow shows up in the second moment of the increment over a
//! finite frame gap `h`.
//!
//! From a state `z_t` at time `t`, to leading order in the noise, the
//! increment's second moment about the drift's flow `φ_h(z_t)` is
//!
//! ```text
//! Σ_h = M_h(D) = ∫₀ʰ Φ(h,s) D(z_s, t+s) Φ(h,s)ᵀ ds,
//! ```
//!
//! with `z_s` the flow of the drift from `z_t` and `Φ(h,s) = ∂z_h/∂z_s` its
//! Jacobian, the solution of the variational equation `dΦ/ds = J_f Φ`
//! (`J_f[a][b] = ∂f_a/∂z_b`). As `h → 0`, `M_h(D) = h D + O(h²)`, which is
//! what the naive target `E[r rᵀ]/h` assumes; at real frame gaps the drift
//! rotates and contracts the noise over the gap and `M_h(D)/h` differs from
//! `D` by tens of percent (DESIGN.md).
//!
//! [`propagate`] integrates the flow and the variational equation together
//! by `N` classic RK4 substeps and stores, at the nodes `s_k = k h/N`
//! (`k = 0..=N`), the node state `z_{s_k}` and the propagator
//! `P_k = Φ(h, s_k)`. [`propagate_frozen`] fills the same outputs at a
//! fraction of the cost: the same flow, but one drift Jacobian per row, at
//! the gap's midpoint, held constant over the gap (exact for a linear
//! drift). [`Propagation`] then applies, per row,
//!
//! ```text
//! M_h(D)   = Σ_k w_k P_k D_k P_kᵀ          (D at the nodes, or one D per row)
//! M_hᵀ(R)_k = w_k P_kᵀ R P_k               (its adjoint in ⟨A,B⟩ = tr AᵀB)
//! ```
//!
//! with the weights `w_k` of [`quadrature_weight`] (composite Simpson,
//! fourth order), the propagated moment-matching loss and its gradient, and
//! the explicit estimator that solves `M_h(D) = h D̂` for a symmetric PSD `D`.

use crate::error::{
    Detail, Error, ErrorKind, Result, check_finite, check_len, check_room, checked_mul,
};
use crate::float::Float;
use crate::integrate::{Dynamics, Rk4Stages, rk4_stages_len, rk4_substep, rk4_substep_with};
use crate::linalg::gemm::matmul_acc;
use crate::linalg::{nearest_psd_in_place, solve_in_place};
use crate::par::for_each_chunk3;

/// A drift whose Jacobian can be evaluated with it: what [`propagate`]
/// needs. Same shape conventions as [`Dynamics`]; callers guarantee the
/// lengths and a workspace of at least
/// [`DriftJacobian::jacobian_workspace_len`]`(rows)`.
pub trait DriftJacobian<F: Float>: Dynamics<F> {
    /// Workspace elements [`DriftJacobian::drift_jacobian`] needs for `rows`
    /// states at once.
    fn jacobian_workspace_len(&self, rows: usize) -> usize;
    /// Drift `f` (`rows×d`) and its Jacobian `jac` (`rows×d×d`, row `r`'s
    /// block row-major with `jac[a][b] = ∂f_a/∂z_b`) at each row's state and
    /// time.
    fn drift_jacobian(&self, z: &[F], t: &[F], f: &mut [F], jac: &mut [F], workspace: &mut [F]);
}

/// Weight of node `k` (`0..=substeps`) in the rule for `∫₀¹ g(s) ds` from
/// `g(k/N)`, `N = substeps`; over a gap `h` the weights are `h` times these.
///
/// The rule is composite Simpson (1/3) over the substep nodes; for odd
/// `N ≥ 3` the last three substeps use Simpson's 3/8 rule instead. Both are
/// exact for cubics, so the error is `O(N⁻⁴)` for smooth integrands, the
/// same order as the RK4 node values it is applied to. `N = 1` has only the
/// two end nodes: the trapezoid rule, `O(N⁻²)`. Returns 0 for `k > N` or
/// `N = 0`.
pub fn quadrature_weight<F: Float>(k: usize, substeps: usize) -> F {
    let n = substeps;
    if n == 0 || k > n {
        return F::ZERO;
    }
    let delta = F::ONE / F::from_usize(n);
    if n == 1 {
        return F::HALF;
    }
    let third = F::ONE / F::from_f64(3.0);
    let simpson_end = if n.is_multiple_of(2) { n } else { n - 3 };
    let mut w = F::ZERO;
    if simpson_end > 0 && k <= simpson_end {
        w += if k == 0 || k == simpson_end {
            third
        } else if k % 2 == 1 {
            F::TWO * F::TWO * third
        } else {
            F::TWO * third
        };
    }
    if !n.is_multiple_of(2) && k >= n - 3 {
        w += if k == n - 3 || k == n {
            F::from_f64(0.375)
        } else {
            F::from_f64(1.125)
        };
    }
    w * delta
}

/// Node times `t_r + h_r·k/N` (`rows×(N+1)`, row-major), the times at which
/// [`propagate`]'s node states are reached, for evaluating `D` along the path.
pub fn node_times<F: Float>(t: &[F], h: &[F], substeps: usize, out: &mut [F]) -> Result<()> {
    check_substeps(substeps)?;
    let nodes = substeps + 1;
    check_len(h, t.len(), "h")?;
    check_len(out, checked_mul(t.len(), nodes, "t")?, "out")?;
    let inv = F::ONE / F::from_usize(substeps);
    for (r, row) in out.chunks_exact_mut(nodes).enumerate() {
        for (k, x) in row.iter_mut().enumerate() {
            *x = t[r] + h[r] * (F::from_usize(k) * inv);
        }
    }
    Ok(())
}

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
/// [`DriftJacobian::jacobian_workspace_len`] and [`Dynamics::workspace_len`]),
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
/// ([`gap_midpoints`]), and every substep's transition is the RK4
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

/// Each row's state at the middle of its gap from [`propagate`]'s node
/// states (`rows×(N+1)×d`): node `N/2` for even `N`, the mean of nodes
/// `(N−1)/2` and `(N+1)/2` for odd `N` (the midpoint to `O(h²)`), into
/// `z_mid` (`rows×d`), and the time `t_r + h_r/2` into `t_mid` (`rows`).
/// Where [`propagate_frozen`] freezes the Jacobian and where a `D` held
/// constant over the gap ([`DiffusionAt::Constant`]) stands for the path's
/// to `O(h²)`.
pub fn gap_midpoints<F: Float>(
    d: usize,
    substeps: usize,
    states: &[F],
    t: &[F],
    h: &[F],
    z_mid: &mut [F],
    t_mid: &mut [F],
) -> Result<()> {
    check_substeps(substeps)?;
    let rows = t.len();
    check_len(h, rows, "h")?;
    let len = checked_mul(rows, d, "states")?;
    check_len(states, checked_mul(len, substeps + 1, "states")?, "states")?;
    check_len(z_mid, len, "z_mid")?;
    check_len(t_mid, rows, "t_mid")?;
    write_midpoints(d, substeps, states, t, h, z_mid, t_mid);
    Ok(())
}

/// [`gap_midpoints`] without the checks.
fn write_midpoints<F: Float>(
    d: usize,
    substeps: usize,
    states: &[F],
    t: &[F],
    h: &[F],
    z_mid: &mut [F],
    t_mid: &mut [F],
) {
    let nodes = substeps + 1;
    let (lo, hi) = (substeps / 2, substeps / 2 + substeps % 2);
    for (r, (mid, row)) in z_mid
        .chunks_exact_mut(d)
        .zip(states.chunks_exact(nodes * d))
        .enumerate()
    {
        let (a, b) = (&row[lo * d..(lo + 1) * d], &row[hi * d..(hi + 1) * d]);
        for ((m, &x), &y) in mid.iter_mut().zip(a).zip(b) {
            *m = if lo == hi { x } else { (x + y) * F::HALF };
        }
        t_mid[r] = t[r] + h[r] * F::HALF;
    }
}

/// Where the diffusion rate `D` of the propagated map is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffusionAt {
    /// At every node state `z_{s_k}` (and time `t + s_k`):
    /// `rows×(N+1)×d×d`, the layout of [`propagate`]'s `states` with each
    /// state replaced by its `d×d` matrix.
    Path,
    /// One `D` per row held constant over the gap: `rows×d×d`. One
    /// evaluation of `D` per row; exact when `D` is constant. Evaluated at
    /// the gap's midpoint state (node `N/2` for even `N`) it stands for the
    /// varying `D` to `O(h²)`, at the start state `z_t` (already at hand in
    /// a training step) to `O(h)` (see [`Propagation::explicit_diffusion`]).
    Constant,
}

/// The linear maps `D ↦ M_h(D)` and `R ↦ M_hᵀ(R)` of a batch of rows, read
/// from [`propagate`]'s propagators (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Propagation<'a, F> {
    d: usize,
    substeps: usize,
    h: &'a [F],
    propagators: &'a [F],
}

impl<'a, F: Float> Propagation<'a, F> {
    /// Wraps [`propagate`]'s output for rows with gaps `h` (`rows`, each
    /// finite and positive); `propagators` is `rows×(substeps+1)×d×d`.
    pub fn new(d: usize, substeps: usize, h: &'a [F], propagators: &'a [F]) -> Result<Self> {
        if d == 0 {
            return Err(Error::bad_dim("d", "state dimension is zero"));
        }
        check_substeps(substeps)?;
        check_gaps(h)?;
        let per_row = checked_mul(checked_mul(d, d, "d")?, substeps + 1, "d")?;
        check_len(
            propagators,
            checked_mul(h.len(), per_row, "propagators")?,
            "propagators",
        )?;
        check_finite(propagators, "propagators")?;
        Ok(Propagation {
            d,
            substeps,
            h,
            propagators,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.h.len()
    }

    /// `d×d` matrices of `D` (and of the adjoint's output) per row.
    pub fn matrices_per_row(&self, at: DiffusionAt) -> usize {
        match at {
            DiffusionAt::Path => self.substeps + 1,
            DiffusionAt::Constant => 1,
        }
    }

    /// Workspace elements of [`Propagation::map`],
    /// [`Propagation::adjoint`] and [`Propagation::moment_loss`].
    pub fn workspace_len(&self) -> usize {
        2 * self.d * self.d
    }

    /// `out_r = M_h(D)_r = Σ_k w_k P_k D_k P_kᵀ` (`rows×d×d`), with
    /// `diffusion` laid out as [`DiffusionAt`] says.
    pub fn map(
        &self,
        at: DiffusionAt,
        diffusion: &[F],
        out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let dd = self.d * self.d;
        check_len(
            diffusion,
            self.rows() * self.matrices_per_row(at) * dd,
            "diffusion",
        )?;
        check_finite(diffusion, "diffusion")?;
        check_len(out, self.rows() * dd, "out")?;
        check_room(workspace, self.workspace_len(), "workspace")?;
        let per = self.matrices_per_row(at) * dd;
        for r in 0..self.rows() {
            self.map_row(
                r,
                at,
                &diffusion[r * per..(r + 1) * per],
                &mut out[r * dd..(r + 1) * dd],
                &mut workspace[..dd],
            );
        }
        Ok(())
    }

    /// The adjoint `out = M_hᵀ(R)`: per row, `w_k P_kᵀ R P_k` for each node
    /// ([`DiffusionAt::Path`], `rows×(N+1)×d×d`) or their sum
    /// ([`DiffusionAt::Constant`], `rows×d×d`), so that
    /// `⟨M_h(D), R⟩ = ⟨D, M_hᵀ(R)⟩` summed over rows. `r` is `rows×d×d`.
    pub fn adjoint(
        &self,
        at: DiffusionAt,
        r: &[F],
        out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let dd = self.d * self.d;
        check_len(r, self.rows() * dd, "r")?;
        check_finite(r, "r")?;
        let per = self.matrices_per_row(at) * dd;
        check_len(out, self.rows() * per, "out")?;
        check_room(workspace, self.workspace_len(), "workspace")?;
        for row in 0..self.rows() {
            self.adjoint_row(
                row,
                at,
                &r[row * dd..(row + 1) * dd],
                &mut out[row * per..(row + 1) * per],
                &mut workspace[..dd],
            );
        }
        Ok(())
    }

    /// The propagated moment-matching loss
    ///
    /// ```text
    /// L = (1/rows) Σ_r ‖M_h(D)_r / h_r − D̂_r‖²_F
    ///   = (1/rows) Σ_r ‖M_h(D)_r − Σ̂_r‖²_F / h_r²,   Σ̂_r = h_r D̂_r,
    /// ```
    ///
    /// with `target` the per-unit-time moments `D̂_r` (`rows×d×d`) of flow
    /// residuals (the second moment `Σ̂` over the gap divided by `h`). Writes
    /// `grad = ∂L/∂D` in the layout of `diffusion` (general, unsymmetrised
    /// matrices: for `D = L Lᵀ` chain with `∂L/∂L = (G + Gᵀ) L`) and returns
    /// `L`. Needs at least one row; a non-finite loss is
    /// [`ErrorKind::NumericalFailure`].
    pub fn moment_loss(
        &self,
        at: DiffusionAt,
        diffusion: &[F],
        target: &[F],
        grad: &mut [F],
        workspace: &mut [F],
    ) -> Result<F> {
        let rows = self.rows();
        if rows == 0 {
            return Err(Error::bad_dim("h", "the loss needs at least one row"));
        }
        let dd = self.d * self.d;
        let per = self.matrices_per_row(at) * dd;
        check_len(diffusion, rows * per, "diffusion")?;
        check_finite(diffusion, "diffusion")?;
        check_len(target, rows * dd, "target")?;
        check_finite(target, "target")?;
        check_len(grad, rows * per, "grad")?;
        check_room(workspace, self.workspace_len(), "workspace")?;
        let (residual, rest) = workspace.split_at_mut(dd);
        let tmp = &mut rest[..dd];
        let inv_rows = F::ONE / F::from_usize(rows);
        let mut loss = F::ZERO;
        for r in 0..rows {
            self.map_row(r, at, &diffusion[r * per..(r + 1) * per], residual, tmp);
            let inv_h = F::ONE / self.h[r];
            let mut sq = F::ZERO;
            for (e, &target) in residual.iter_mut().zip(&target[r * dd..(r + 1) * dd]) {
                *e = *e * inv_h - target;
                sq += *e * *e;
            }
            loss += sq;
            // ∂L/∂M_r = 2 E_r / (rows h_r); pulled back through the adjoint.
            let scale = F::TWO * inv_rows * inv_h;
            for e in residual.iter_mut() {
                *e *= scale;
            }
            self.adjoint_row(r, at, residual, &mut grad[r * per..(r + 1) * per], tmp);
        }
        let loss = loss * inv_rows;
        if !loss.is_finite() {
            return Err(Error::new(
                ErrorKind::NumericalFailure,
                "diffusion",
                "the propagated moment loss is not finite",
            ));
        }
        Ok(loss)
    }

    /// Workspace elements of [`Propagation::explicit_diffusion`].
    pub fn explicit_diffusion_workspace_len(&self) -> usize {
        let m = self.d * (self.d + 1) / 2;
        m * m + m + self.d * self.d + self.d
    }

    /// The explicit propagated estimator: for each row, the symmetric `D`
    /// (held constant over the gap, [`DiffusionAt::Constant`]) that solves
    /// `M_h(D) = h_r D̂_r` — `d(d+1)/2` unknowns, a dense pivoted solve —
    /// projected to the nearest positive semi-definite matrix (eigenvalues
    /// clipped at 0). `target` is `D̂` per unit time as in
    /// [`Propagation::moment_loss`] (its symmetric part is used); `out` is
    /// `rows×d×d`. A singular system is [`ErrorKind::NumericalFailure`]
    /// with the row index.
    ///
    /// Which `D` this is: when the true `D` varies along the path, the
    /// constant that reproduces `M_h` is `D` at the gap's midpoint state
    /// `φ_{h/2}(z_t)` (node `N/2` of [`propagate`]'s states for even `N`) up
    /// to `O(h²)`: expanding `D(z_s)` about `s = h/2`, the linear term
    /// integrates to `−h³/12 (J D′ + D′Jᵀ)`, against `h D` for the constant.
    /// Read as `D(z_t)` it carries an `O(h)` lag (34% on a rotation at
    /// `ωh = 0.5` whose noise turns with the flow; 2–3% at the midpoint).
    pub fn explicit_diffusion(
        &self,
        target: &[F],
        out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let d = self.d;
        let dd = d * d;
        let m = d * (d + 1) / 2;
        let rows = self.rows();
        check_len(target, rows * dd, "target")?;
        check_finite(target, "target")?;
        check_len(out, rows * dd, "out")?;
        check_room(
            workspace,
            self.explicit_diffusion_workspace_len(),
            "workspace",
        )?;
        let (system, rest) = workspace.split_at_mut(m * m);
        let (rhs, rest) = rest.split_at_mut(m);
        let (vectors, rest) = rest.split_at_mut(dd);
        let values = &mut rest[..d];
        let nodes = self.substeps + 1;
        for r in 0..rows {
            let hr = self.h[r];
            let props = &self.propagators[r * nodes * dd..(r + 1) * nodes * dd];
            // Unknowns and equations are the upper triangles (a ≤ b), in
            // row-major order; column (a,b) is M_h(E_ab + E_ba) (E_aa once).
            system.fill(F::ZERO);
            for k in 0..nodes {
                let w = hr * quadrature_weight::<F>(k, self.substeps);
                let p = &props[k * dd..(k + 1) * dd];
                let mut eq = 0;
                for c in 0..d {
                    for e in c..d {
                        let mut col = 0;
                        for a in 0..d {
                            for b in a..d {
                                let mut v = p[c * d + a] * p[e * d + b];
                                if a != b {
                                    v += p[c * d + b] * p[e * d + a];
                                }
                                system[eq * m + col] += w * v;
                                col += 1;
                            }
                        }
                        eq += 1;
                    }
                }
            }
            let target_r = &target[r * dd..(r + 1) * dd];
            let mut eq = 0;
            for c in 0..d {
                for e in c..d {
                    rhs[eq] = hr * (target_r[c * d + e] + target_r[e * d + c]) * F::HALF;
                    eq += 1;
                }
            }
            solve_in_place(system, m, rhs).map_err(|e| e.with(Detail::Index(r)))?;
            let out_r = &mut out[r * dd..(r + 1) * dd];
            let mut col = 0;
            for a in 0..d {
                for b in a..d {
                    out_r[a * d + b] = rhs[col];
                    out_r[b * d + a] = rhs[col];
                    col += 1;
                }
            }
            nearest_psd_in_place(out_r, d, values, vectors)
                .map_err(|e| e.with(Detail::Index(r)))?;
        }
        Ok(())
    }

    /// Row `r`'s `M_h(D)` into `out` (`d×d`); `tmp` is `d×d` scratch.
    fn map_row(&self, r: usize, at: DiffusionAt, diffusion: &[F], out: &mut [F], tmp: &mut [F]) {
        let d = self.d;
        let dd = d * d;
        let nodes = self.substeps + 1;
        let props = &self.propagators[r * nodes * dd..(r + 1) * nodes * dd];
        // The kernel reads a transposed left factor but not a transposed
        // right one, so the sum is built transposed: with tmp = w (P_k D_k)ᵀ,
        // P_k tmp = (w P_k D_k P_kᵀ)ᵀ; `out` is transposed back at the end.
        out.fill(F::ZERO);
        for k in 0..nodes {
            let w = self.h[r] * quadrature_weight::<F>(k, self.substeps);
            let p = &props[k * dd..(k + 1) * dd];
            let dk = match at {
                DiffusionAt::Path => &diffusion[k * dd..(k + 1) * dd],
                DiffusionAt::Constant => diffusion,
            };
            tmp.fill(F::ZERO);
            matmul_acc(p, false, dk, d, d, d, tmp);
            transpose_scaled_in_place(tmp, d, w);
            matmul_acc(p, false, tmp, d, d, d, out);
        }
        transpose_scaled_in_place(out, d, F::ONE);
    }

    /// Row `row`'s adjoint of `r` (`d×d`) into `out` (the row's matrices as
    /// [`DiffusionAt`] lays them out); `tmp` is `d×d` scratch.
    fn adjoint_row(&self, row: usize, at: DiffusionAt, r: &[F], out: &mut [F], tmp: &mut [F]) {
        let d = self.d;
        let dd = d * d;
        let nodes = self.substeps + 1;
        let props = &self.propagators[row * nodes * dd..(row + 1) * nodes * dd];
        out.fill(F::ZERO);
        for k in 0..nodes {
            let w = self.h[row] * quadrature_weight::<F>(k, self.substeps);
            let p = &props[k * dd..(k + 1) * dd];
            // tmp = w R P_k, then o += P_kᵀ tmp.
            tmp.fill(F::ZERO);
            matmul_acc(r, false, p, d, d, d, tmp);
            for x in tmp.iter_mut() {
                *x *= w;
            }
            let o = match at {
                DiffusionAt::Path => &mut out[k * dd..(k + 1) * dd],
                DiffusionAt::Constant => &mut *out,
            };
            matmul_acc(p, true, tmp, d, d, d, o);
        }
    }
}

fn check_substeps(substeps: usize) -> Result<()> {
    if substeps == 0 {
        return Err(Error::bad_config("substeps", "must be at least 1"));
    }
    if substeps.checked_add(1).is_none() {
        return Err(Error::bad_config("substeps", "too large"));
    }
    Ok(())
}

/// Every gap finite and positive.
fn check_gaps<F: Float>(h: &[F]) -> Result<()> {
    check_finite(h, "h")?;
    match h.iter().position(|&x| x <= F::ZERO) {
        None => Ok(()),
        Some(i) => {
            Err(Error::bad_config("h", "frame gaps must be positive").with(Detail::Index(i)))
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
fn matmul<F: Float>(a: &[F], b: &[F], d: usize, out: &mut [F]) {
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

/// `m ← scale · mᵀ` for a `d×d` row-major matrix.
fn transpose_scaled_in_place<F: Float>(m: &mut [F], d: usize, scale: F) {
    for a in 0..d {
        m[a * d + a] *= scale;
        for b in a + 1..d {
            let (x, y) = (m[a * d + b], m[b * d + a]);
            m[a * d + b] = scale * y;
            m[b * d + a] = scale * x;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::integrate::{rk4_flow, rk4_flow_workspace_len};
    use crate::rng::{Family, Rng};
    use crate::synthetic::EmbryoProcess;

    /// `dz = A z dt + L dW` in `d ≤ 4` with a constant factor: the test's
    /// linear process (non-normal `A` below).
    struct Linear {
        d: usize,
        a: [f64; 16],
    }

    impl Dynamics<f64> for Linear {
        fn dim(&self) -> usize {
            self.d
        }
        fn noise_dim(&self) -> usize {
            0
        }
        fn workspace_len(&self, _rows: usize) -> usize {
            0
        }
        fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
            let d = self.d;
            for r in 0..t.len() {
                for i in 0..d {
                    f[r * d + i] = (0..d).map(|j| self.a[i * d + j] * z[r * d + j]).sum();
                }
            }
        }
        fn drift_and_factor(
            &self,
            z: &[f64],
            t: &[f64],
            f: &mut [f64],
            _: &mut [f64],
            ws: &mut [f64],
        ) {
            self.drift(z, t, f, ws);
        }
    }

    impl DriftJacobian<f64> for Linear {
        fn jacobian_workspace_len(&self, _rows: usize) -> usize {
            0
        }
        fn drift_jacobian(
            &self,
            z: &[f64],
            t: &[f64],
            f: &mut [f64],
            jac: &mut [f64],
            ws: &mut [f64],
        ) {
            self.drift(z, t, f, ws);
            let dd = self.d * self.d;
            for r in 0..t.len() {
                jac[r * dd..(r + 1) * dd].copy_from_slice(&self.a[..dd]);
            }
        }
    }

    /// Non-normal, stable, rotating 3×3 drift: eigenvalues −0.8 ± 1.5i and
    /// −1.5, with a strong shear; h‖A‖ ≈ 0.7 at h = 0.2.
    fn non_normal() -> Linear {
        let mut a = [0.0; 16];
        a[..9].copy_from_slice(&[-0.8, 1.5, 2.0, -1.5, -0.8, 0.0, 0.0, 0.0, -1.5]);
        Linear { d: 3, a }
    }

    /// `e^{C}` of an `n×n` (n ≤ 8) matrix by scaling and squaring with a
    /// 30-term Taylor series, in f64.
    fn expm(c: &[f64], n: usize) -> [f64; 64] {
        let norm = c[..n * n].iter().map(|x| x.abs()).sum::<f64>();
        let mut squarings = 0;
        while norm / f64::from(1u32 << squarings) > 0.25 {
            squarings += 1;
        }
        let scale = 1.0 / f64::from(1u32 << squarings);
        let mut result = [0.0; 64];
        let mut term = [0.0; 64];
        for i in 0..n {
            result[i * n + i] = 1.0;
            term[i * n + i] = 1.0;
        }
        for k in 1..30 {
            let mut next = [0.0; 64];
            for i in 0..n {
                for j in 0..n {
                    next[i * n + j] = (0..n).map(|l| term[i * n + l] * c[l * n + j]).sum::<f64>()
                        * scale
                        / k as f64;
                }
            }
            term = next;
            for i in 0..n * n {
                result[i] += term[i];
            }
        }
        for _ in 0..squarings {
            let mut sq = [0.0; 64];
            for i in 0..n {
                for j in 0..n {
                    sq[i * n + j] = (0..n).map(|l| result[i * n + l] * result[l * n + j]).sum();
                }
            }
            result = sq;
        }
        result
    }

    /// Closed form `∫₀ʰ e^{As} D e^{Aᵀs} ds` by Van Loan's block
    /// exponential: `exp([[−A, D], [0, Aᵀ]] h) = [[·, G], [0, F]]`, `Σ = Fᵀ G`.
    fn van_loan(a: &[f64], dm: &[f64], d: usize, h: f64) -> [f64; 16] {
        let n = 2 * d;
        let mut c = [0.0; 64];
        for i in 0..d {
            for j in 0..d {
                c[i * n + j] = -a[i * d + j] * h;
                c[i * n + d + j] = dm[i * d + j] * h;
                c[(d + i) * n + d + j] = a[j * d + i] * h;
            }
        }
        let e = expm(&c, n);
        let mut sigma = [0.0; 16];
        for i in 0..d {
            for j in 0..d {
                sigma[i * d + j] = (0..d)
                    .map(|k| e[(d + k) * n + d + i] * e[k * n + d + j])
                    .sum();
            }
        }
        sigma
    }

    /// A full-rank SPD matrix `B Bᵀ + 0.1 I` with B from a data stream.
    fn random_spd(d: usize, index: u64) -> [f64; 16] {
        let mut b = [0.0; 16];
        Rng::stream(7, Family::Data, index).fill_normal(&mut b[..d * d]);
        let mut out = [0.0; 16];
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>()
                    + if i == j { 0.1 } else { 0.0 };
            }
        }
        out
    }

    /// Propagates `rows` start states through `dynamics`; returns states and
    /// propagators.
    fn run<F: Float, S: DriftJacobian<F> + Sync>(
        dynamics: &S,
        z: &[F],
        t: &[F],
        h: &[F],
        substeps: usize,
    ) -> (std::vec::Vec<F>, std::vec::Vec<F>) {
        run_as(false, dynamics, z, t, h, substeps)
    }

    /// [`run`] by [`propagate_frozen`] when `frozen`.
    fn run_as<F: Float, S: DriftJacobian<F> + Sync>(
        frozen: bool,
        dynamics: &S,
        z: &[F],
        t: &[F],
        h: &[F],
        substeps: usize,
    ) -> (std::vec::Vec<F>, std::vec::Vec<F>) {
        let d = dynamics.dim();
        let rows = t.len();
        let mut states = std::vec![F::ZERO; rows * (substeps + 1) * d];
        let mut props = std::vec![F::ZERO; rows * (substeps + 1) * d * d];
        let mut ws = std::vec![F::from_f64(f64::NAN); propagate_workspace_len(dynamics, rows)];
        let how = if frozen { propagate_frozen } else { propagate };
        how(
            dynamics,
            z,
            t,
            h,
            substeps,
            &mut states,
            &mut props,
            &mut ws,
        )
        .unwrap();
        (states, props)
    }

    #[test]
    fn quadrature_is_exact_for_cubics_from_two_substeps() {
        for n in 1..=9 {
            let total: f64 = (0..=n).map(|k| quadrature_weight::<f64>(k, n)).sum();
            assert!((total - 1.0).abs() < 1e-15, "n = {n}");
            let cubic: f64 = (0..=n)
                .map(|k| {
                    let s = k as f64 / n as f64;
                    quadrature_weight::<f64>(k, n) * (s * s * s - 2.0 * s * s)
                })
                .sum();
            // ∫₀¹ s³ − 2s² = 1/4 − 2/3.
            let err = (cubic - (0.25 - 2.0 / 3.0)).abs();
            if n >= 2 {
                assert!(err < 1e-15, "n = {n}: {err}");
            } else {
                assert!(err > 0.05, "the trapezoid is not exact for cubics");
            }
        }
        assert_eq!(quadrature_weight::<f64>(5, 4), 0.0);
        assert_eq!(quadrature_weight::<f64>(0, 0), 0.0);
    }

    #[test]
    fn embryo_jacobian_matches_central_differences() {
        let p = EmbryoProcess { d: 5 };
        let z = [0.3, 0.9, -0.2, 0.4, 0.1, -0.1, 0.2, 0.0, 0.3, -0.5];
        let t = [0.45, 1.2];
        let (mut f, mut jac) = ([0.0; 10], [0.0; 50]);
        p.drift_jacobian(&z, &t, &mut f, &mut jac, &mut []);
        let mut f_ref = [0.0; 10];
        p.drift(&z, &t, &mut f_ref, &mut []);
        assert_eq!(f, f_ref);
        let eps = 1e-6;
        for r in 0..2 {
            for b in 0..5 {
                let (mut zp, mut zm) = (z, z);
                zp[r * 5 + b] += eps;
                zm[r * 5 + b] -= eps;
                let (mut fp, mut fm) = ([0.0; 10], [0.0; 10]);
                p.drift(&zp, &t, &mut fp, &mut []);
                p.drift(&zm, &t, &mut fm, &mut []);
                for a in 0..5 {
                    let fd = (fp[r * 5 + a] - fm[r * 5 + a]) / (2.0 * eps);
                    let an = jac[r * 25 + a * 5 + b];
                    assert!(
                        (fd - an).abs() < 1e-8 * (1.0 + an.abs()),
                        "({r},{a},{b}): {fd} vs {an}"
                    );
                }
            }
        }
    }

    #[test]
    fn flow_is_bit_identical_to_rk4_flow_and_p0_is_its_jacobian() {
        let p = EmbryoProcess { d: 4 };
        let z = [0.1, 0.8, 0.2, -0.1, 0.0, 0.05, -0.3, 0.2];
        let t = [0.6, 1.0];
        let h = [0.2, 0.35];
        let n = 3;
        let (states, props) = run(&p, &z, &t, &h, n);
        let mut flow = [0.0; 8];
        let mut ws = [0.0; 64];
        assert!(rk4_flow_workspace_len::<f64, _>(&p, 2) <= 64);
        rk4_flow(&p, &z, &t, &h, n, &mut flow, &mut ws).unwrap();
        for r in 0..2 {
            assert_eq!(
                &states[(r * 4 + n) * 4..(r * 4 + n + 1) * 4],
                &flow[r * 4..(r + 1) * 4]
            );
            assert_eq!(&states[r * 16..r * 16 + 4], &z[r * 4..(r + 1) * 4]);
        }
        // f32 runs the same code.
        let z32: std::vec::Vec<f32> = z.iter().map(|&x| x as f32).collect();
        let (s32, p32) = run(&p, &z32, &[0.6f32, 1.0], &[0.2f32, 0.35], n);
        for (a, b) in s32.iter().zip(&states) {
            assert!((f64::from(*a) - b).abs() < 1e-5);
        }
        for (a, b) in p32.iter().zip(&props) {
            assert!((f64::from(*a) - b).abs() < 1e-5);
        }
        // P_N = I and P_0 = ∂φ_h/∂z by central differences of rk4_flow;
        // P_1 = ∂φ_h/∂z_{s_1} from node 1's state over the remaining substeps
        // (the same RK4 steps, since the substep size is unchanged).
        let eps = 1e-6;
        for r in 0..2 {
            let last = &props[(r * 4 + n) * 16..(r * 4 + n + 1) * 16];
            for (i, &x) in last.iter().enumerate() {
                assert_eq!(x, if i % 5 == 0 { 1.0 } else { 0.0 });
            }
            for node in [0usize, 1] {
                let start = &states[(r * 4 + node) * 4..(r * 4 + node + 1) * 4];
                let tn = t[r] + h[r] * node as f64 / n as f64;
                let hn = h[r] * (n - node) as f64 / n as f64;
                for b in 0..4 {
                    let (mut zp, mut zm) = ([0.0; 4], [0.0; 4]);
                    zp.copy_from_slice(start);
                    zm.copy_from_slice(start);
                    zp[b] += eps;
                    zm[b] -= eps;
                    let (mut fp, mut fm) = ([0.0; 4], [0.0; 4]);
                    rk4_flow(&p, &zp, &[tn], &[hn], n - node, &mut fp, &mut ws).unwrap();
                    rk4_flow(&p, &zm, &[tn], &[hn], n - node, &mut fm, &mut ws).unwrap();
                    for a in 0..4 {
                        let fd = (fp[a] - fm[a]) / (2.0 * eps);
                        let an = props[(r * 4 + node) * 16 + a * 4 + b];
                        assert!(
                            (fd - an).abs() < 1e-8,
                            "row {r} node {node} ({a},{b}): {fd} vs {an}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn blocks_and_threads_do_not_change_the_learned_models_propagators() {
        // 70 rows: two full blocks and a short one (in parallel with std),
        // against each row alone; f32 through the layer kernels.
        let config = crate::model::Config {
            d: 3,
            depth: 2,
            width: 20,
            ..crate::model::Config::default()
        };
        let layout = crate::model::Layout::new(&config).unwrap();
        let mut params = std::vec![0.0f32; layout.len];
        layout.init(7, &mut params).unwrap();
        let model = crate::model::Learned::new(&config, &params).unwrap();
        let rows = 2 * PROPAGATE_BLOCK_ROWS + 6;
        let mut z = std::vec![0.0f32; rows * 3];
        Rng::stream(3, Family::Data, 0).fill_normal(&mut z);
        let t: std::vec::Vec<f32> = (0..rows).map(|i| 0.01 * i as f32).collect();
        let h: std::vec::Vec<f32> = (0..rows).map(|i| 0.1 + 0.002 * i as f32).collect();
        let (states, props) = run(&model, &z, &t, &h, 4);
        for r in [0, PROPAGATE_BLOCK_ROWS - 1, PROPAGATE_BLOCK_ROWS, rows - 1] {
            let (s1, p1) = run(&model, &z[r * 3..r * 3 + 3], &t[r..r + 1], &h[r..r + 1], 4);
            assert_eq!(&states[r * 15..(r + 1) * 15], &s1[..], "row {r}");
            assert_eq!(&props[r * 45..(r + 1) * 45], &p1[..], "row {r}");
        }
    }

    /// Max relative Frobenius error of the propagated map against the Van
    /// Loan closed form, on the non-normal linear drift at gap `h`.
    fn linear_map_error(at: DiffusionAt, substeps: usize, h: f64) -> f64 {
        linear_map_error_as(false, at, substeps, h)
    }

    /// [`linear_map_error`] of [`propagate_frozen`]'s map when `frozen`.
    fn linear_map_error_as(frozen: bool, at: DiffusionAt, substeps: usize, h: f64) -> f64 {
        let lin = non_normal();
        let d = 3;
        let dm = random_spd(d, 1);
        let (_, props) = run_as(frozen, &lin, &[0.3, -0.2, 0.5], &[0.0], &[h], substeps);
        let hs = [h];
        let prop = Propagation::new(d, substeps, &hs, &props).unwrap();
        let mut diffusion = std::vec![0.0; prop.matrices_per_row(at) * 9];
        for chunk in diffusion.chunks_exact_mut(9) {
            chunk.copy_from_slice(&dm[..9]);
        }
        let mut out = [0.0; 9];
        let mut ws = [0.0; 18];
        prop.map(at, &diffusion, &mut out, &mut ws).unwrap();
        let truth = van_loan(&lin.a[..9], &dm[..9], d, h);
        let err: f64 = (0..9)
            .map(|i| (out[i] - truth[i]).powi(2))
            .sum::<f64>()
            .sqrt();
        err / (0..9).map(|i| truth[i].powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn linear_map_matches_van_loan_closed_form_at_fourth_order() {
        // Gap 0.6: h‖A‖ ≈ 2, well past the imaging regime, so the error is
        // visible above round-off at these substep counts.
        for at in [DiffusionAt::Path, DiffusionAt::Constant] {
            let e4 = linear_map_error(at, 4, 0.6);
            let e8 = linear_map_error(at, 8, 0.6);
            let order = libm::log2(e4 / e8);
            assert!(
                (order - 4.0).abs() < 0.3,
                "{at:?}: order {order} ({e4:e}, {e8:e})"
            );
            // Odd counts use the 3/8 tail; still fourth order.
            let e5 = linear_map_error(at, 5, 0.6);
            let e9 = linear_map_error(at, 9, 0.6);
            let order = libm::log(e5 / e9) / libm::log(9.0 / 5.0);
            assert!((order - 4.0).abs() < 0.4, "{at:?}: odd order {order}");
            // The trapezoid (one substep) is second order only: worse.
            assert!(linear_map_error(at, 1, 0.6) > 10.0 * e4);
        }
        // The issue's bar: 1e-6 relative at the imaging gap with 8 substeps.
        let e = linear_map_error(DiffusionAt::Path, 8, 0.2);
        assert!(e < 1e-6, "{e:e}");
    }

    #[test]
    fn frozen_propagation_is_the_exact_one_for_a_linear_drift() {
        // Constant Jacobian: the frozen transitions are the exact path's
        // arithmetic, so states and propagators agree to the bit (even and
        // odd substep counts, several rows and gaps).
        let lin = non_normal();
        let z = [0.3, -0.2, 0.5, 1.0, 0.4, -0.7];
        let (t, h) = ([0.0, 0.5], [0.2, 0.6]);
        for substeps in [1, 4, 5] {
            let exact = run(&lin, &z, &t, &h, substeps);
            let frozen = run_as(true, &lin, &z, &t, &h, substeps);
            assert_eq!(exact, frozen, "{substeps} substeps");
        }
        // And so the closed form is met as the exact map meets it.
        for at in [DiffusionAt::Path, DiffusionAt::Constant] {
            for (n, h) in [(4, 0.6), (8, 0.2)] {
                let (e, f) = (
                    linear_map_error(at, n, h),
                    linear_map_error_as(true, at, n, h),
                );
                assert_eq!(e, f, "{at:?} {n} {h}");
            }
        }
        assert!(linear_map_error_as(true, DiffusionAt::Constant, 8, 0.2) < 1e-6);
    }

    #[test]
    fn frozen_flow_is_rk4_flow_and_its_jacobian_sits_at_the_midpoint() {
        // A nonlinear drift: the node states are rk4_flow's to the bit; the
        // propagators are powers of one transition, that of the RK4 step of
        // the linearisation at the midpoint state (node N/2, or the mean of
        // the middle two for odd N) and time t + h/2.
        let p = EmbryoProcess { d: 4 };
        let z = [0.1, 0.8, 0.2, -0.1, 0.5, 1.5, 0.6, -0.45];
        let (t, h) = ([0.6, 1.0], [0.2, 0.35]);
        for n in [3usize, 4] {
            let (exact_states, _) = run(&p, &z, &t, &h, n);
            let (states, props) = run_as(true, &p, &z, &t, &h, n);
            assert_eq!(states, exact_states);
            let mut z_mid = [0.0; 8];
            let mut t_mid = [0.0; 2];
            gap_midpoints(4, n, &states, &t, &h, &mut z_mid, &mut t_mid).unwrap();
            assert_eq!(t_mid, [0.7, 1.175]);
            for r in 0..2 {
                let node = |k: usize| &states[(r * (n + 1) + k) * 4..(r * (n + 1) + k + 1) * 4];
                for i in 0..4 {
                    let want = if n % 2 == 0 {
                        node(n / 2)[i]
                    } else {
                        0.5 * (node(n / 2)[i] + node(n / 2 + 1)[i])
                    };
                    assert_eq!(z_mid[r * 4 + i], want);
                }
                // T from the Taylor polynomial of δJ, against P_{N−1}.
                let (mut f, mut jac) = ([0.0; 4], [0.0; 16]);
                p.drift_jacobian(
                    &z_mid[r * 4..r * 4 + 4],
                    &t_mid[r..r + 1],
                    &mut f,
                    &mut jac,
                    &mut [],
                );
                let delta = h[r] / n as f64;
                let (mut term, mut taylor) = ([0.0; 16], [0.0; 16]);
                for i in 0..4 {
                    term[i * 5] = 1.0;
                    taylor[i * 5] = 1.0;
                }
                for k in 1..=4 {
                    let mut next = [0.0; 16];
                    for a in 0..4 {
                        for b in 0..4 {
                            next[a * 4 + b] = (0..4)
                                .map(|c| term[a * 4 + c] * jac[c * 4 + b])
                                .sum::<f64>()
                                * delta
                                / k as f64;
                        }
                    }
                    term = next;
                    for i in 0..16 {
                        taylor[i] += term[i];
                    }
                }
                let base = (r * (n + 1) + n - 1) * 16;
                for i in 0..16 {
                    assert!((props[base + i] - taylor[i]).abs() < 1e-14, "{n} {r} {i}");
                }
                // P_0 = T^N: one more power per node back.
                let mut power = [0.0; 16];
                power.copy_from_slice(&props[base..base + 16]);
                for k in (0..n - 1).rev() {
                    let mut next = [0.0; 16];
                    matmul(&power, &taylor, 4, &mut next);
                    power = next;
                    let at = (r * (n + 1) + k) * 16;
                    for i in 0..16 {
                        assert!((props[at + i] - power[i]).abs() < 1e-13, "{n} {r} {k} {i}");
                    }
                }
            }
        }
    }

    /// Row-major `rows×count×d×d` random matrices (not symmetric).
    fn random_matrices(count: usize, index: u64) -> std::vec::Vec<f64> {
        let mut v = std::vec![0.0; count];
        Rng::stream(11, Family::Data, index).fill_normal(&mut v);
        v
    }

    #[test]
    fn adjoint_satisfies_the_inner_product_identity() {
        let p = EmbryoProcess { d: 4 };
        let z = [
            0.1, 0.8, 0.2, -0.1, 0.0, 0.05, -0.3, 0.2, 0.4, 1.4, 0.0, 0.1,
        ];
        let t = [0.6, 1.0, 0.2];
        let h = [0.2, 0.35, 0.1];
        for substeps in [1, 4, 5] {
            let (_, props) = run(&p, &z, &t, &h, substeps);
            let prop = Propagation::new(4, substeps, &h, &props).unwrap();
            for at in [DiffusionAt::Path, DiffusionAt::Constant] {
                let per = prop.matrices_per_row(at) * 16;
                let dm = random_matrices(3 * per, 1);
                let r = random_matrices(3 * 16, 2);
                let mut m = [0.0; 48];
                let mut ws = [0.0; 32];
                prop.map(at, &dm, &mut m, &mut ws).unwrap();
                let mut adj = std::vec![0.0; 3 * per];
                prop.adjoint(at, &r, &mut adj, &mut ws).unwrap();
                let lhs: f64 = m.iter().zip(&r).map(|(a, b)| a * b).sum();
                let rhs: f64 = dm.iter().zip(&adj).map(|(a, b)| a * b).sum();
                let scale: f64 = m.iter().map(|x| x.abs()).sum::<f64>() * 2.0;
                assert!(
                    (lhs - rhs).abs() < 1e-14 * scale,
                    "{at:?} {substeps}: {lhs} vs {rhs}"
                );
            }
        }
    }

    #[test]
    fn moment_loss_gradient_matches_finite_differences() {
        let p = EmbryoProcess { d: 3 };
        let z = [0.1, 0.8, 0.2, 0.0, 0.05, -0.3];
        let t = [0.6, 1.0];
        let h = [0.2, 0.3];
        let substeps = 4;
        let (_, props) = run(&p, &z, &t, &h, substeps);
        let prop = Propagation::new(3, substeps, &h, &props).unwrap();
        let target = random_matrices(18, 3);
        let mut ws = [0.0; 18];
        for at in [DiffusionAt::Path, DiffusionAt::Constant] {
            let per = prop.matrices_per_row(at) * 9;
            let dm = random_matrices(2 * per, 4);
            let mut grad = std::vec![0.0; 2 * per];
            let loss = prop
                .moment_loss(at, &dm, &target, &mut grad, &mut ws)
                .unwrap();
            // Direct evaluation of the loss from the map.
            let mut m = [0.0; 18];
            prop.map(at, &dm, &mut m, &mut ws).unwrap();
            let direct: f64 = (0..18)
                .map(|i| (m[i] / h[i / 9] - target[i]).powi(2))
                .sum::<f64>()
                / 2.0;
            assert!((loss - direct).abs() < 1e-14 * direct);
            let eps = 1e-6;
            let mut scratch = std::vec![0.0; 2 * per];
            for i in 0..2 * per {
                let (mut dp, mut dn) = (dm.clone(), dm.clone());
                dp[i] += eps;
                dn[i] -= eps;
                let lp = prop
                    .moment_loss(at, &dp, &target, &mut scratch, &mut ws)
                    .unwrap();
                let ln = prop
                    .moment_loss(at, &dn, &target, &mut scratch, &mut ws)
                    .unwrap();
                let fd = (lp - ln) / (2.0 * eps);
                assert!(
                    (fd - grad[i]).abs() <= 1e-6 * grad[i].abs().max(1e-3),
                    "{at:?} {i}: {fd} vs {}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn explicit_estimator_inverts_the_map_and_projects_to_psd() {
        let p = EmbryoProcess { d: 4 };
        let z = [0.1, 0.8, 0.2, -0.1, 0.0, 0.05, -0.3, 0.2];
        let t = [0.6, 1.0];
        let h = [0.2, 0.35];
        let (_, props) = run(&p, &z, &t, &h, 4);
        let prop = Propagation::new(4, 4, &h, &props).unwrap();
        let mut truth = [0.0; 32];
        truth[..16].copy_from_slice(&random_spd(4, 5));
        truth[16..].copy_from_slice(&random_spd(4, 6));
        let mut target = [0.0; 32];
        let mut ws = std::vec![0.0; prop.explicit_diffusion_workspace_len()];
        prop.map(DiffusionAt::Constant, &truth, &mut target, &mut ws)
            .unwrap();
        for (i, x) in target.iter_mut().enumerate() {
            *x /= h[i / 16];
        }
        // The naive reading D̂ = Σ̂/h is far from D at these gaps …
        let rel = |a: &[f64], b: &[f64]| {
            let e: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
            (e / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
        };
        assert!(rel(&target[16..], &truth[16..]) > 0.05);
        // … the explicit estimator recovers it to round-off.
        let mut est = [0.0; 32];
        prop.explicit_diffusion(&target, &mut est, &mut ws).unwrap();
        assert!(rel(&est, &truth) < 1e-12, "{}", rel(&est, &truth));
        // A target whose preimage is indefinite comes back PSD.
        let mut indefinite = [0.0; 32];
        for i in 0..4 {
            indefinite[i * 5] = if i == 0 { -1.0 } else { 1.0 };
            indefinite[16 + i * 5] = 1.0;
        }
        let mut target2 = [0.0; 32];
        prop.map(DiffusionAt::Constant, &indefinite, &mut target2, &mut ws)
            .unwrap();
        for (i, x) in target2.iter_mut().enumerate() {
            *x /= h[i / 16];
        }
        prop.explicit_diffusion(&target2, &mut est, &mut ws)
            .unwrap();
        let (mut a, mut w, mut v) = ([0.0; 16], [0.0; 4], [0.0; 16]);
        a.copy_from_slice(&est[..16]);
        crate::linalg::sym_eigen(&mut a, 4, &mut w, &mut v).unwrap();
        assert!(w[3] > -1e-12 && w[3] < 1e-12, "{w:?}");
        assert!(rel(&est[16..], &indefinite[16..]) < 1e-12);
    }

    #[test]
    fn bad_input_is_refused_with_the_argument_named() {
        let p = EmbryoProcess { d: 2 };
        let z = [0.0, 0.1];
        let (mut states, mut props) = ([0.0; 6], [0.0; 12]);
        let mut ws = [0.0; 64];
        let call =
            |z: &[f64], h: &[f64], n: usize, s: &mut [f64], pr: &mut [f64], ws: &mut [f64]| {
                propagate(&p, z, &[0.0], h, n, s, pr, ws).unwrap_err().arg
            };
        assert_eq!(
            call(
                &[f64::NAN, 0.0],
                &[0.1],
                2,
                &mut states,
                &mut props,
                &mut ws
            ),
            "z"
        );
        assert_eq!(call(&z, &[0.0], 2, &mut states, &mut props, &mut ws), "h");
        assert_eq!(call(&z, &[-0.1], 2, &mut states, &mut props, &mut ws), "h");
        assert_eq!(
            call(&z, &[0.1], 0, &mut states, &mut props, &mut ws),
            "substeps"
        );
        assert_eq!(
            call(&z, &[0.1], 3, &mut states, &mut props, &mut ws),
            "states"
        );
        assert_eq!(
            call(&z, &[0.1], 2, &mut states, &mut props[..8], &mut ws),
            "propagators"
        );
        assert_eq!(
            call(&z, &[0.1], 2, &mut states, &mut props, &mut ws[..5]),
            "workspace"
        );
        // A flow that blows up over the gap is a numerical failure.
        let far = [0.0, 1e30];
        let e = propagate(
            &p,
            &far,
            &[2.0],
            &[0.1],
            2,
            &mut states,
            &mut props,
            &mut ws,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumericalFailure);
        propagate(&p, &z, &[0.0], &[0.1], 2, &mut states, &mut props, &mut ws).unwrap();

        assert_eq!(
            Propagation::new(2, 2, &[0.1], &props[..8]).unwrap_err().arg,
            "propagators"
        );
        assert_eq!(Propagation::new(0, 2, &[0.1], &props).unwrap_err().arg, "d");
        let good = Propagation::new(2, 2, &[0.1], &props).unwrap();
        let mut out = [0.0; 4];
        let mut small = [0.0; 4];
        assert_eq!(
            good.map(DiffusionAt::Path, &[0.0; 4], &mut out, &mut ws)
                .unwrap_err()
                .arg,
            "diffusion"
        );
        assert_eq!(
            good.map(DiffusionAt::Constant, &[0.0; 4], &mut out, &mut small[..3])
                .unwrap_err()
                .arg,
            "workspace"
        );
        assert_eq!(
            good.adjoint(DiffusionAt::Constant, &[f64::NAN; 4], &mut out, &mut ws)
                .unwrap_err()
                .arg,
            "r"
        );
        let mut grad = [0.0; 4];
        assert_eq!(
            good.moment_loss(
                DiffusionAt::Constant,
                &[0.0; 4],
                &[f64::INFINITY; 4],
                &mut grad,
                &mut ws
            )
            .unwrap_err()
            .arg,
            "target"
        );
        let none = Propagation::new(2, 2, &[], &[]).unwrap();
        assert_eq!(
            none.moment_loss(DiffusionAt::Constant, &[], &[], &mut [], &mut ws)
                .unwrap_err()
                .arg,
            "h"
        );
        assert_eq!(
            good.explicit_diffusion(&[0.0; 4], &mut out, &mut small[..2])
                .unwrap_err()
                .arg,
            "workspace"
        );
        // The frozen map shares the checks; its midpoints have their own.
        assert_eq!(
            propagate_frozen(&p, &z, &[0.0], &[0.0], 2, &mut states, &mut props, &mut ws)
                .unwrap_err()
                .arg,
            "h"
        );
        let (mut z_mid, mut t_mid) = ([0.0; 2], [0.0; 1]);
        let mid = |n: usize, z_mid: &mut [f64], t_mid: &mut [f64]| {
            gap_midpoints(2, n, &states, &[0.0], &[0.1], z_mid, t_mid)
                .unwrap_err()
                .arg
        };
        assert_eq!(mid(0, &mut z_mid, &mut t_mid), "substeps");
        assert_eq!(mid(3, &mut z_mid, &mut t_mid), "states");
        assert_eq!(mid(2, &mut z_mid[..1], &mut t_mid), "z_mid");
        assert_eq!(mid(2, &mut z_mid, &mut []), "t_mid");
        let mut times = [0.0; 3];
        node_times(&[1.0], &[0.5], 2, &mut times).unwrap();
        assert_eq!(times, [1.0, 1.25, 1.5]);
        assert_eq!(
            node_times(&[1.0], &[0.5], 3, &mut times).unwrap_err().arg,
            "out"
        );
    }
}
