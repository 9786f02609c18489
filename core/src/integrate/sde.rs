//! Fixed-step paths of the Itô SDE `dz = f(z,t) dt + L(z,t) dW` for a
//! block of rows, each row drawing its random inputs from its own
//! [`Noise`] source (shapes and stop rules as in [`crate::integrate`]):
//! what the schemes share ([`SdeConfig`], [`Noise`], the trace clip) and
//! Euler–Maruyama ([`em_path`]). The other schemes: [`super::strang`]
//! (RK4 drift flow split around the noise kick) and [`super::platen`]
//! (weak order 2).
//!
//! Every scheme covers each output gap with the fewest equal substeps no
//! larger than [`SdeConfig::h_max`], so the output times are hit exactly.

use super::{Gap, StepStats, check_path, check_step, record_outputs};
use crate::dynamics::Dynamics;
use crate::error::{Arena, Error, Result, check_len};
use crate::float::Float;
use crate::rng::Rng;
use crate::size::Size;

/// Settings of the fixed-step SDE paths ([`em_path`],
/// [`super::strang::strang_path`], [`super::platen::platen_path`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SdeConfig<F> {
    /// Largest substep (time units, > 0). Each output gap is split into the
    /// fewest equal substeps no larger than this.
    pub h_max: F,
    /// When set (> 0), `tr D = ‖L‖²_F` is capped at this value (per unit
    /// time): every evaluated factor `L` whose `‖L‖²_F` exceeds it is
    /// scaled by `√(clip / ‖L‖²_F)`, so the schemes integrate the SDE with
    /// that clipped factor.
    pub trace_clip: Option<F>,
}

/// A source of a path row's random inputs, drawn in the order a scheme
/// needs them (its docs say which). [`Rng`] is the one rollouts use; any
/// other source (common random numbers across schemes, quadrature nodes)
/// drives the same schemes.
pub trait Noise {
    /// Fills `out` with independent standard normals.
    fn normals<F: Float>(&mut self, out: &mut [F]);
    /// Fills `out` with independent signs, `±1` with probability ½ each.
    fn signs<F: Float>(&mut self, out: &mut [F]);
}

impl Noise for Rng {
    /// [`Rng::fill_normal`].
    fn normals<F: Float>(&mut self, out: &mut [F]) {
        self.fill_normal(out);
    }
    /// One bit of a 64-bit draw per sign, low bits first, a fresh draw per
    /// 64 signs.
    fn signs<F: Float>(&mut self, out: &mut [F]) {
        for chunk in out.chunks_mut(64) {
            let bits = self.next_u64();
            for (i, x) in chunk.iter_mut().enumerate() {
                *x = if (bits >> i) & 1 == 1 {
                    F::ONE
                } else {
                    -F::ONE
                };
            }
        }
    }
}

/// Checks what every SDE path needs beyond [`check_path`]: a diffusion
/// factor (`scheme` names the method in the error), one noise source per
/// row, a valid step and clip. Returns `(rows, K)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_sde<F: Float, S: Dynamics<F>, R>(
    dynamics: &S,
    z0: &[F],
    t0: F,
    times: &[F],
    config: &SdeConfig<F>,
    rngs: &[R],
    out: &[F],
    stop_times: &[F],
    scheme: &'static str,
) -> Result<(usize, usize)> {
    let (rows, big_k) = check_path(dynamics.dim(), z0, t0, times, out, stop_times)?;
    if dynamics.noise_dim() == 0 {
        return Err(Error::bad_config("dynamics", scheme));
    }
    check_len(rngs, rows, "rngs")?;
    check_step(config.h_max, "h_max")?;
    if let Some(clip) = config.trace_clip {
        check_step(clip, "trace_clip")?;
    }
    Ok((rows, big_k))
}

/// The factor `l_row` of one row is scaled by this under the trace clip:
/// `√(clip / ‖L‖²_F)` when a clip is set and exceeded, else 1.
pub(crate) fn clip_scale<F: Float>(l_row: &[F], clip: Option<F>) -> F {
    if let Some(clip) = clip {
        let trace: F = l_row.iter().map(|&x| x * x).sum();
        if trace > clip {
            return (clip / trace).sqrt();
        }
    }
    F::ONE
}

/// Applies the trace clip to every row's factor in `l` (`rows×d×q`, row
/// blocks of `dq`).
pub(crate) fn clip_factors<F: Float>(l: &mut [F], dq: usize, clip: Option<F>) {
    if clip.is_none() {
        return;
    }
    for row in l.chunks_exact_mut(dq) {
        let scale = clip_scale(row, clip);
        if scale != F::ONE {
            row.iter_mut().for_each(|x| *x *= scale);
        }
    }
}

/// `out_i = Σ_j l[i*q + j] ξ_j` for one row (`l` `d×q`, `xi` `q`), added
/// to `out` times `scale`.
pub(crate) fn add_factor_times<F: Float>(l: &[F], xi: &[F], scale: F, out: &mut [F]) {
    let q = xi.len();
    for (i, o) in out.iter_mut().enumerate() {
        let mut lz = F::ZERO;
        for (&lij, &zj) in l[i * q..(i + 1) * q].iter().zip(xi) {
            lz += lij * zj;
        }
        *o += scale * lz;
    }
}

/// Workspace elements [`em_path`] needs for `rows` states.
pub fn em_path_workspace_len<F: Float, S: Dynamics<F>>(dynamics: &S, rows: usize) -> usize {
    let (d, q) = (dynamics.dim(), dynamics.noise_dim());
    // State, drift, factor, noise, per-row times, and the model's own.
    (Size(rows) * (2 * d + d * q + q + 1) + dynamics.workspace_len(rows)).get()
}

/// Euler–Maruyama path of `rows` states from `z0` at `t0`: each substep is
/// `z ← z + f h + s √h L ξ` with `ξ ~ N(0, I_q)` drawn from row `r`'s
/// source `rngs[r]` (`q` normals per substep) and `s` the trace clip's
/// scale ([`SdeConfig::trace_clip`]). One drift-and-factor evaluation per
/// substep; weak order 1. A row whose state turns non-finite stops at the
/// end of that substep (it draws no more numbers).
///
/// Shapes: `z0` `rows×d`, `times` `K`, `out` `rows×K×d`, `stop_times` and
/// `rngs` `rows`; workspace at least [`em_path_workspace_len`]. Errors when
/// the dynamics have no diffusion factor (`noise_dim() == 0`).
#[allow(clippy::too_many_arguments)]
pub fn em_path<F: Float, S: Dynamics<F>, R: Noise>(
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
        "has no diffusion factor: Euler–Maruyama needs one (use an ODE method)",
    )?;
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
        let gap = Gap::new(t, t_out, config.h_max)?;
        let (h, sqrt_h) = (gap.h, gap.h.sqrt());
        for s in 0..gap.steps {
            row_t.fill(gap.time(s));
            let t_end = gap.time(s + 1);
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
                rng.normals(nr);
                let scale = sqrt_h * clip_scale(lr, config.trace_clip);
                // The drift row becomes the new state; kept only if finite.
                for (fi, &zi) in fr.iter_mut().zip(zr.iter()) {
                    *fi = zi + h * *fi;
                }
                add_factor_times(lr, nr, scale, fr);
                if fr.iter().all(|x| x.is_finite()) {
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
