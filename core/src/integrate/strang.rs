//! Strang splitting of the Itô SDE `dz = f(z,t) dt + L(z,t) dW`: the
//! drift's flow by classic RK4 and the noise as a kick in the middle of
//! each substep (shapes and stop rules as in [`crate::integrate`]).
//!
//! One substep of size `h` from `t` is `φ_{h/2} ∘ K ∘ φ_{h/2}`: RK4 over
//! half the substep, the kick `z ← z + s √h L(ẑ, t + h/2) ξ` (`ξ ~ N(0,
//! I_q)`, `s` the trace clip's scale), RK4 over the other half.
//!
//! Why the kick sits in the middle: on a linear drift with additive noise
//! the covariance added over a substep is `∫₀ʰ e^{Au} D e^{Aᵀu} du`; a kick
//! at either end integrates it by an end-point rule (weak order 1, what
//! Euler–Maruyama also gets), the kick in the middle by the midpoint rule
//! (weak order 2), for the same cost. With a state-dependent `L` the kick
//! itself (Euler–Maruyama of `dz = L dW`) limits the scheme to weak order
//! 1, with the drift's part of the error (the rotation of the flow, which
//! Euler–Maruyama turns into a growing radius) at RK4's `O(h⁴)`.
//!
//! Cost: the half flows of consecutive substeps inside an output gap are
//! merged into one RK4 step of size `h`, and the factor for the next kick
//! comes from that step's last stage, evaluated at `ẑ = z + h k₃` (the
//! flow's end up to `O(h³)`; it does not depend on the kick's `ξ`, so the
//! kick stays Itô): 4 evaluations of the dynamics per substep (one of
//! them drift and factor), plus one RK4 step per output gap.

use super::sde::{Noise, SdeConfig, add_factor_times, check_sde, clip_scale};
use super::{
    Dynamics, Gap, Rk4Stages, StepStats, accept_finite, record_outputs, rk4_stages_len,
    rk4_substep_with, running,
};
use crate::error::{Arena, Result};
use crate::float::Float;

/// Workspace elements [`strang_path`] needs for `rows` states.
pub fn strang_path_workspace_len<F: Float, S: Dynamics<F>>(dynamics: &S, rows: usize) -> usize {
    let (d, q) = (dynamics.dim(), dynamics.noise_dim());
    // State and next state, factor, noise, per-row times and steps, the RK4
    // stages, and the model's own.
    2 * rows * d
        + rows * d * q
        + rows * q
        + 2 * rows
        + rk4_stages_len(rows, d)
        + dynamics.workspace_len(rows)
}

/// Strang-split path of `rows` states from `z0` at `t0` (see the module
/// docs): per substep one noise kick with `q` normals drawn from row `r`'s
/// source `rngs[r]`, the drift by RK4. A row whose state turns non-finite
/// stops at the time that state belongs to (it draws no more numbers).
///
/// Shapes: `z0` `rows×d`, `times` `K`, `out` `rows×K×d`, `stop_times` and
/// `rngs` `rows`; workspace at least [`strang_path_workspace_len`]. Errors
/// when the dynamics have no diffusion factor.
#[allow(clippy::too_many_arguments)]
pub fn strang_path<F: Float, S: Dynamics<F>, R: Noise>(
    dynamics: &S,
    z0: &[F],
    t0: F,
    times: &[F],
    config: &SdeConfig<F>,
    rngs: &mut [R],
    out: &mut [F],
    stop_times: &mut [F],
    workspace: &mut [F],
) -> Result<StepStats> {
    let (d, q) = (dynamics.dim(), dynamics.noise_dim());
    let (rows, big_k) = check_sde(
        dynamics,
        z0,
        t0,
        times,
        config,
        rngs,
        out,
        stop_times,
        "has no diffusion factor: the Strang splitting needs one (use an ODE method)",
    )?;
    let mut arena = Arena::new(workspace);
    let mut path = Path {
        dynamics,
        d,
        z: arena.take(rows * d)?,
        next: arena.take(rows * d)?,
        l: arena.take(rows * d * q)?,
        row_t: arena.take(rows)?,
        row_h: arena.take(rows)?,
        stages: Rk4Stages::carve(arena.take(rk4_stages_len(rows, d))?, rows, d),
        model_ws: arena.take(dynamics.workspace_len(rows))?,
        stats: StepStats::default(),
    };
    let noise = arena.take(rows * q)?;
    path.z.copy_from_slice(z0);
    stop_times.fill(F::INFINITY);
    let mut t = t0;
    for (k, &t_out) in times.iter().enumerate() {
        let gap = Gap::new(t, t_out, config.h_max)?;
        if gap.steps > 0 {
            let (h, half) = (gap.h, gap.h * F::HALF);
            let scale = h.sqrt();
            // Half flow to the first kick.
            path.flow(gap.start, gap.start + half, true, stop_times);
            for s in 0..gap.steps {
                let kick = gap.time(s) + half;
                path.stats.accepted += running(stop_times);
                for (r, rng) in rngs.iter_mut().enumerate() {
                    if stop_times[r] != F::INFINITY {
                        continue;
                    }
                    let lr = &path.l[r * d * q..(r + 1) * d * q];
                    let nr = &mut noise[r * q..(r + 1) * q];
                    rng.normals(nr);
                    let next = &mut path.next[r * d..(r + 1) * d];
                    next.copy_from_slice(&path.z[r * d..(r + 1) * d]);
                    add_factor_times(lr, nr, scale * clip_scale(lr, config.trace_clip), next);
                }
                accept_finite(path.z, path.next, stop_times, d, kick, &mut path.stats);
                // A full flow to the next kick, or half of one to the output.
                let last = s + 1 == gap.steps;
                let to = if last { gap.end } else { kick + h };
                path.flow(kick, to, !last, stop_times);
            }
        }
        t = t_out;
        record_outputs(path.z, stop_times, k, big_k, d, out);
    }
    Ok(path.stats)
}

/// The buffers of a Strang path and its drift flow.
struct Path<'a, F, S> {
    dynamics: &'a S,
    d: usize,
    z: &'a mut [F],
    next: &'a mut [F],
    /// The factor at the next kick's state, from the last flow's last stage.
    l: &'a mut [F],
    row_t: &'a mut [F],
    row_h: &'a mut [F],
    stages: Rk4Stages<'a, F>,
    model_ws: &'a mut [F],
    stats: StepStats,
}

impl<F: Float, S: Dynamics<F>> Path<'_, F, S> {
    /// One RK4 step of every running row from `from` to `to`; with
    /// `factor`, the last stage also writes the factor there into `l`
    /// (clipped by the kick, not here). Rows whose state turns non-finite
    /// stop at `to`.
    fn flow(&mut self, from: F, to: F, factor: bool, stop_times: &mut [F]) {
        let active = running(stop_times);
        self.row_t.fill(from);
        self.row_h.fill(to - from);
        self.next.copy_from_slice(self.z);
        let (dynamics, l, ws) = (self.dynamics, &mut *self.l, &mut *self.model_ws);
        rk4_substep_with(
            self.d,
            self.row_t,
            self.row_h,
            0,
            1,
            self.next,
            &mut self.stages,
            |stage, z, t, k| {
                if factor && stage == 3 {
                    dynamics.drift_and_factor(z, t, k, l, ws);
                } else {
                    dynamics.drift(z, t, k, ws);
                }
            },
        );
        self.stats.evaluations += 4 * active;
        accept_finite(self.z, self.next, stop_times, self.d, to, &mut self.stats);
    }
}
