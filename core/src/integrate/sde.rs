//! Euler–Maruyama paths of the Itô SDE `dz = f(z,t) dt + L(z,t) dW` for a
//! block of rows, each row drawing its noise from its own [`Rng`] stream
//! (shapes and stop rules as in [`crate::integrate`]).

use super::{StepStats, check_path, check_step, record_outputs, substep_count};
use crate::dynamics::Dynamics;
use crate::error::{Arena, Error, Result, check_len};
use crate::float::Float;
use crate::rng::Rng;
use crate::size::Size;

/// Settings of [`em_path`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmConfig<F> {
    /// Largest substep (time units, > 0). Each output gap is split into the
    /// fewest equal substeps no larger than this.
    pub h_max: F,
    /// When set (> 0), `tr D = ‖L‖²_F` is capped at this value (per unit
    /// time) by scaling `L` of the rows that exceed it.
    pub trace_clip: Option<F>,
}

/// Workspace elements [`em_path`] needs for `rows` states.
pub fn em_path_workspace_len<F: Float, S: Dynamics<F>>(dynamics: &S, rows: usize) -> usize {
    let (d, q) = (dynamics.dim(), dynamics.noise_dim());
    // State, drift, factor, noise, per-row times, and the model's own.
    (Size(rows) * (2 * d + d * q + q + 1) + dynamics.workspace_len(rows)).get()
}

/// Euler–Maruyama path of `rows` states from `z0` at `t0`: each substep is
/// `z ← z + f h + s √h L Z` with `Z ~ N(0, I_q)` drawn from row `r`'s stream
/// `rngs[r]` (`q` normals per substep by [`Rng::fill_normal`]) and `s = 1`,
/// or `s = √(clip / tr D)` when a trace clip is set and exceeded. A row whose
/// state turns non-finite stops at the end of that substep (it draws no more
/// numbers).
///
/// Shapes: `z0` `rows×d`, `times` `K`, `out` `rows×K×d`, `stop_times` and
/// `rngs` `rows`; workspace at least [`em_path_workspace_len`]. Errors when
/// the dynamics have no diffusion factor (`noise_dim() == 0`).
#[allow(clippy::too_many_arguments)]
pub fn em_path<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    z0: &[F],
    t0: F,
    times: &[F],
    config: &EmConfig<F>,
    rngs: &mut [Rng],
    out: &mut [F],
    stop_times: &mut [F],
    workspace: &mut [F],
) -> Result<StepStats> {
    let (d, q) = (dynamics.dim(), dynamics.noise_dim());
    let (rows, big_k) = check_path(d, z0, t0, times, out, stop_times)?;
    if q == 0 {
        return Err(Error::bad_config(
            "dynamics",
            "has no diffusion factor: Euler–Maruyama needs one (use an ODE method)",
        ));
    }
    check_len(rngs, rows, "rngs")?;
    check_step(config.h_max, "h_max")?;
    if let Some(clip) = config.trace_clip {
        check_step(clip, "trace_clip")?;
    }
    let mut arena = Arena::new(workspace);
    let z = arena.take(rows * d)?;
    let f = arena.take(rows * d)?;
    let l = arena.take(rows * d * q)?;
    let noise = arena.take(rows * q)?;
    let row_t = arena.take(rows)?;
    let model_ws = arena.take(dynamics.workspace_len(rows))?;
    z.copy_from_slice(z0);
    stop_times.fill(F::INFINITY);
    let mut stats = StepStats::default();
    let mut t = t0;
    for (k, &t_out) in times.iter().enumerate() {
        let steps = substep_count(t_out - t, config.h_max)?;
        let start = t;
        let h = if steps > 0 {
            (t_out - start) / F::from_usize(steps)
        } else {
            F::ZERO
        };
        let sqrt_h = h.sqrt();
        for s in 0..steps {
            row_t.fill(start + h * F::from_usize(s));
            let t_end = if s + 1 == steps {
                t_out
            } else {
                start + h * F::from_usize(s + 1)
            };
            dynamics.drift_and_factor(z, row_t, f, l, model_ws);
            for (r, rng) in rngs.iter_mut().enumerate() {
                if stop_times[r] != F::INFINITY {
                    continue;
                }
                stats.accepted += 1;
                stats.evaluations += 1;
                let zr = &mut z[r * d..(r + 1) * d];
                let fr = &mut f[r * d..(r + 1) * d];
                let lr = &l[r * d * q..(r + 1) * d * q];
                let nr = &mut noise[r * q..(r + 1) * q];
                rng.fill_normal(nr);
                let mut scale = sqrt_h;
                if let Some(clip) = config.trace_clip {
                    let trace: F = lr.iter().map(|&x| x * x).sum();
                    if trace > clip {
                        scale *= (clip / trace).sqrt();
                    }
                }
                // The drift row becomes the new state; kept only if finite.
                let mut finite = true;
                for (i, fi) in fr.iter_mut().enumerate() {
                    let mut lz = F::ZERO;
                    for (&lij, &zj) in lr[i * q..(i + 1) * q].iter().zip(nr.iter()) {
                        lz += lij * zj;
                    }
                    *fi = zr[i] + h * *fi + scale * lz;
                    finite &= fi.is_finite();
                }
                if finite {
                    zr.copy_from_slice(fr);
                } else {
                    stop_times[r] = t_end;
                    stats.stopped += 1;
                }
            }
        }
        t = t_out;
        record_outputs(z, stop_times, k, big_k, d, out);
    }
    Ok(stats)
}
