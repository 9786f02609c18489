//! Platen's explicit weak order 2.0 scheme for the Itô SDE
//! `dz = f(z,t) dt + L(z,t) dW` with a general (state- and time-dependent,
//! non-diagonal, full or low-rank) factor `L` (shapes and stop rules as in
//! [`crate::integrate`]).
//!
//! The scheme is Kloeden & Platen, *Numerical Solution of Stochastic
//! Differential Equations* (1992), §15.1, eq. (15.1.3) (the scheme
//! DifferentialEquations.jl's StochasticDiffEq ships as `PL1WM`), with
//! Gaussian increments and the time carried as a state with drift 1. With
//! `a = f(z, t)`, `b^j` column `j` of `L(z, t)`, `ΔW = √h ξ`, `ξ ~ N(0,
//! I_q)`:
//!
//! - supporting values `Ῡ = z + a h + Σ_j b^j ΔW_j` (at `t + h`),
//!   `R^{±j} = z + a h ± b^j √h` (at `t + h`), `U^{±j} = z ± b^j √h` (at
//!   `t`);
//! - `z ← z + ½ (f(Ῡ) + a) h`
//!   `+ ¼ Σ_j [b^j(R^{+j}) + b^j(R^{−j}) + 2 b^j] ΔW_j`
//!   `+ ¼ Σ_j [b^j(R^{+j}) − b^j(R^{−j})] (ΔW_j² − h) / √h`
//!   `+ ¼ Σ_j Σ_{r≠j} [b^j(U^{+r}) + b^j(U^{−r}) − 2 b^j] ΔW_j`
//!   `+ ¼ Σ_j Σ_{r≠j} [b^j(U^{+r}) − b^j(U^{−r})] (ΔW_j ΔW_r + V_{rj}) / √h`,
//!
//! where `V_{rj} = −V_{jr}` are independent two-point variables (`±h`, one
//! per pair `r < j`): `½(ΔW_r ΔW_j + V_{rj})` stands in for the iterated
//! Itô integral `I_{(r,j)}`, with the moments weak order 2 needs.
//!
//! Weak order 2 for smooth coefficients whatever the noise structure, at a
//! price that grows with `q`: per substep `4q + 2` evaluations of the
//! dynamics (the drift at `z` and `Ῡ`, the factor at `z` and at the `4q`
//! points `R^{±j}`, `U^{±j}`; each a full evaluation of a learned model),
//! and `q + q(q−1)/2` random inputs per row. The trace clip (see
//! [`SdeConfig::trace_clip`]) applies to every evaluated factor.

use super::sde::{Noise, SdeConfig, check_sde, clip_factors};
use super::{Dynamics, Gap, StepStats, accept_finite, record_outputs, running};
use crate::error::{Arena, Result};
use crate::float::Float;

/// Random inputs per row per substep for `q` noise columns: `q` normals,
/// then one sign per pair `r < j`.
pub fn platen_noise_len(q: usize) -> usize {
    q + q * q.saturating_sub(1) / 2
}

/// Workspace elements [`platen_path`] needs for `rows` states.
pub fn platen_path_workspace_len<F: Float, S: Dynamics<F>>(dynamics: &S, rows: usize) -> usize {
    let (d, q) = (dynamics.dim(), dynamics.noise_dim());
    // State, next state, supporting value, two drifts, three factors,
    // random inputs, per-row times, and the model's own.
    5 * rows * d
        + 3 * rows * d * q
        + rows * platen_noise_len(q)
        + rows
        + dynamics.workspace_len(rows)
}

/// Index of the sign of pair `(r, j)`, `r < j < q`, among the `q(q−1)/2`.
fn pair_index(r: usize, j: usize, q: usize) -> usize {
    r * q - r * (r + 1) / 2 + (j - r - 1)
}

/// Platen weak order 2.0 path of `rows` states from `z0` at `t0` (see the
/// module docs): per substep row `r` draws `q` normals and then
/// `q(q−1)/2` signs from `rngs[r]`. A row whose state turns non-finite
/// stops at the end of that substep (it draws no more numbers).
///
/// Shapes: `z0` `rows×d`, `times` `K`, `out` `rows×K×d`, `stop_times` and
/// `rngs` `rows`; workspace at least [`platen_path_workspace_len`]. Errors
/// when the dynamics have no diffusion factor.
#[allow(clippy::too_many_arguments)]
pub fn platen_path<F: Float, S: Dynamics<F>, R: Noise>(
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
        "has no diffusion factor: the weak order 2 scheme needs one (use an ODE method)",
    )?;
    let (dq, m) = (d * q, platen_noise_len(q));
    let mut arena = Arena::new(workspace);
    let z = arena.take(rows * d)?;
    let next = arena.take(rows * d)?;
    let point = arena.take(rows * d)?;
    let f0 = arena.take(rows * d)?;
    let f1 = arena.take(rows * d)?;
    let l0 = arena.take(rows * dq)?;
    let lp = arena.take(rows * dq)?;
    let lm = arena.take(rows * dq)?;
    let noise = arena.take(rows * m)?;
    let row_t = arena.take(rows)?;
    let ws = arena.take(dynamics.workspace_len(rows))?;
    z.copy_from_slice(z0);
    stop_times.fill(F::INFINITY);
    let mut stats = StepStats::default();
    let quarter = F::HALF * F::HALF;
    let mut t = t0;
    for (k, &t_out) in times.iter().enumerate() {
        let gap = Gap::new(t, t_out, config.h_max)?;
        let (h, sqrt_h) = (gap.h, gap.h.sqrt());
        let coef = quarter * sqrt_h;
        for s in 0..gap.steps {
            let (t_s, t_e) = (gap.time(s), gap.time(s + 1));
            let active = running(stop_times);
            stats.accepted += active;
            stats.evaluations += (2 + 4 * q as u64) * active;
            row_t.fill(t_s);
            dynamics.drift_and_factor(z, row_t, f0, l0, ws);
            clip_factors(l0, dq, config.trace_clip);
            for (r, rng) in rngs.iter_mut().enumerate() {
                if stop_times[r] == F::INFINITY {
                    let nr = &mut noise[r * m..(r + 1) * m];
                    let (xi, signs) = nr.split_at_mut(q);
                    rng.normals(xi);
                    rng.signs(signs);
                }
            }
            // Drift: trapezoid between z and the predictor Ῡ at t + h.
            for r in 0..rows {
                let xi = &noise[r * m..r * m + q];
                let lr = &l0[r * dq..(r + 1) * dq];
                for i in 0..d {
                    let mut lz = F::ZERO;
                    for j in 0..q {
                        lz += lr[i * q + j] * xi[j];
                    }
                    let c = r * d + i;
                    point[c] = z[c] + h * f0[c] + sqrt_h * lz;
                }
            }
            row_t.fill(t_e);
            dynamics.drift(point, row_t, f1, ws);
            for c in 0..rows * d {
                next[c] = z[c] + F::HALF * h * (f0[c] + f1[c]);
            }
            for j in 0..q {
                // R^{±j} at t + h: column j's own terms.
                support(point, z, Some((f0, h)), l0, j, sqrt_h, d, q);
                dynamics.drift_and_factor(point, row_t, f1, lp, ws);
                support(point, z, Some((f0, h)), l0, j, -sqrt_h, d, q);
                dynamics.drift_and_factor(point, row_t, f1, lm, ws);
                clip_factors(lp, dq, config.trace_clip);
                clip_factors(lm, dq, config.trace_clip);
                for r in 0..rows {
                    let xi = &noise[r * m..r * m + q];
                    let (x, w) = (xi[j], xi[j] * xi[j] - F::ONE);
                    for i in 0..d {
                        let a = r * dq + i * q + j;
                        next[r * d + i] +=
                            coef * ((lp[a] + lm[a] + F::TWO * l0[a]) * x + (lp[a] - lm[a]) * w);
                    }
                }
                // U^{±j} at t: the other columns' terms along b^j.
                row_t.fill(t_s);
                support(point, z, None, l0, j, sqrt_h, d, q);
                dynamics.drift_and_factor(point, row_t, f1, lp, ws);
                support(point, z, None, l0, j, -sqrt_h, d, q);
                dynamics.drift_and_factor(point, row_t, f1, lm, ws);
                row_t.fill(t_e);
                clip_factors(lp, dq, config.trace_clip);
                clip_factors(lm, dq, config.trace_clip);
                for r in 0..rows {
                    let nr = &noise[r * m..(r + 1) * m];
                    let (xi, signs) = nr.split_at(q);
                    for col in (0..q).filter(|&col| col != j) {
                        // V_{j,col} = h·sign, antisymmetric in the pair.
                        let v = if j < col {
                            signs[pair_index(j, col, q)]
                        } else {
                            -signs[pair_index(col, j, q)]
                        };
                        let (x, w) = (xi[col], xi[col] * xi[j] + v);
                        for i in 0..d {
                            let a = r * dq + i * q + col;
                            next[r * d + i] +=
                                coef * ((lp[a] + lm[a] - F::TWO * l0[a]) * x + (lp[a] - lm[a]) * w);
                        }
                    }
                }
            }
            accept_finite(z, next, stop_times, d, t_e, &mut stats);
        }
        t = t_out;
        record_outputs(z, stop_times, k, big_k, d, out);
    }
    Ok(stats)
}

/// Supporting values `point_r = z_r (+ a_r h) + step · b^j_r` for every
/// row (`drift = Some((a, h))` adds the drift term), `b^j` column `j` of
/// the row's factor in `l` (`rows×d×q`).
#[allow(clippy::too_many_arguments)]
fn support<F: Float>(
    point: &mut [F],
    z: &[F],
    drift: Option<(&[F], F)>,
    l: &[F],
    j: usize,
    step: F,
    d: usize,
    q: usize,
) {
    for (c, p) in point.iter_mut().enumerate() {
        let (r, i) = (c / d, c % d);
        let base = match drift {
            Some((a, h)) => z[c] + h * a[c],
            None => z[c],
        };
        *p = base + step * l[r * d * q + i * q + j];
    }
}
