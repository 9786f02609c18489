//! Integrators of `dz = f(z,t) dt + L(z,t) dW` over blocks of states.
//!
//! Anything that can evaluate a drift (and optionally a diffusion factor) on
//! a block of states implements [`Dynamics`] (in [`crate::dynamics`]); the
//! learned model does, and so do the closed-form processes the tests use.
//!
//! - [`rk4_flow`]: the drift's flow over one gap per row (targets, losses).
//! - [`ode`]: RK4 with a fixed step and Dopri5 with adaptive steps, states
//!   at requested output times.
//! - [`sde`]: what the fixed-step SDE schemes share, and Euler–Maruyama
//!   (one evaluation per substep, weak order 1).
//! - [`strang`]: the drift's flow by RK4 split around a mid-substep noise
//!   kick (four evaluations per substep; weak order 2 with additive noise,
//!   the drift's rotation and contraction to `O(h⁴)`).
//! - [`platen`]: Platen's explicit weak order 2.0 scheme for any noise
//!   (`4q + 2` evaluations per substep).
//! - [`rollout`]: many trajectories in blocks of rows, one random stream per
//!   trajectory, threads with the `std` feature.
//!
//! Paths share one contract: a block of `rows` states starts at `t0`, its
//! states at the output times `times` (`t0 ≤ times[0] < times[1] < …`) are
//! written to `out` (`rows×K×d`, trajectory-major: row `r`'s state at
//! `times[k]` is `out[(r*K + k)*d ..][..d]`). A row whose state becomes
//! non-finite (or, for Dopri5, whose step size underflows) stops: its
//! `stop_times` entry is the time it stopped, its later outputs are NaN,
//! and the other rows go on. Rows that finish have stop time `+∞`.

pub mod ode;
pub mod platen;
pub mod rollout;
pub mod sde;
pub mod strang;

use crate::dynamics::Dynamics;
use crate::error::{
    Detail, Error, ErrorKind, Result, check_finite, check_len, check_room, checked_mul,
};
use crate::float::Float;

/// Workspace elements [`rk4_flow`] needs for `rows` states.
pub fn rk4_flow_workspace_len<F: Float, S: Dynamics<F>>(dynamics: &S, rows: usize) -> usize {
    // Four stage slopes, the stage state, the stage times, and the model's own.
    rk4_stages_len(rows, dynamics.dim()).saturating_add(dynamics.workspace_len(rows))
}

/// The flow of the drift: `out_r = φ_{h_r}(z_r)`, the solution at time
/// `t_r + h_r` of `dz/ds = f(z, s)` from `z_r` at `t_r`, by `substeps`
/// classic RK4 steps of size `h_r / substeps` per row. Rows are independent
/// (each has its own time and gap); `h_r` may be any finite value.
///
/// Shapes: `z`, `out` are `rows×d`; `t`, `h` have `rows` entries; the
/// workspace has at least [`rk4_flow_workspace_len`] elements.
#[allow(clippy::too_many_arguments)]
pub fn rk4_flow<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    z: &[F],
    t: &[F],
    h: &[F],
    substeps: usize,
    out: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    let d = dynamics.dim();
    let rows = t.len();
    let len = checked_mul(rows, d, "z")?;
    check_len(z, len, "z")?;
    check_len(h, rows, "h")?;
    check_len(out, len, "out")?;
    check_finite(z, "z")?;
    check_finite(t, "t")?;
    check_finite(h, "h")?;
    if substeps == 0 {
        return Err(Error::bad_config("substeps", "must be at least 1"));
    }
    check_room(
        workspace,
        rk4_flow_workspace_len(dynamics, rows),
        "workspace",
    )?;
    let (stages, model_ws) = workspace.split_at_mut(rk4_stages_len(rows, d));
    let mut stages = Rk4Stages::carve(stages, rows, d);
    out.copy_from_slice(z);
    for step in 0..substeps {
        rk4_substep(dynamics, t, h, step, substeps, out, &mut stages, model_ws);
    }
    Ok(())
}

/// The stage buffers of one RK4 substep over a block of `rows` states: four
/// slopes and the stage state (`rows×d` each) and the stage times (`rows`).
pub(crate) struct Rk4Stages<'a, F> {
    pub k1: &'a mut [F],
    pub k2: &'a mut [F],
    pub k3: &'a mut [F],
    pub k4: &'a mut [F],
    pub stage: &'a mut [F],
    pub times: &'a mut [F],
}

/// Elements [`Rk4Stages::carve`] takes for `rows` states of dimension `d`.
pub(crate) fn rk4_stages_len(rows: usize, d: usize) -> usize {
    rows.saturating_mul(d)
        .saturating_mul(5)
        .saturating_add(rows)
}

impl<'a, F> Rk4Stages<'a, F> {
    /// Splits the first [`rk4_stages_len`] elements of `buf`.
    pub fn carve(buf: &'a mut [F], rows: usize, d: usize) -> Self {
        let len = rows * d;
        let (k1, rest) = buf.split_at_mut(len);
        let (k2, rest) = rest.split_at_mut(len);
        let (k3, rest) = rest.split_at_mut(len);
        let (k4, rest) = rest.split_at_mut(len);
        let (stage, rest) = rest.split_at_mut(len);
        Rk4Stages {
            k1,
            k2,
            k3,
            k4,
            stage,
            times: &mut rest[..rows],
        }
    }
}

/// Substep `step` (of `substeps`) of [`rk4_flow`] on `cur` (`rows×d`) in
/// place: the step from `t_r + h_r·step/N` to `t_r + h_r·(step+1)/N`.
/// Shared by every caller that needs the flow bit-identical to
/// [`rk4_flow`]'s.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rk4_substep<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    t: &[F],
    h: &[F],
    step: usize,
    substeps: usize,
    cur: &mut [F],
    stages: &mut Rk4Stages<'_, F>,
    model_ws: &mut [F],
) {
    rk4_substep_with(
        dynamics.dim(),
        t,
        h,
        step,
        substeps,
        cur,
        stages,
        |_, z, times, k| dynamics.drift(z, times, k, model_ws),
    );
}

/// [`rk4_substep`] with the drift evaluated by `slope(stage, z, times, k)`
/// (`stage` 0..4 in RK4 order, `k` the stage's slope out), for callers
/// that compute more than the drift at each stage.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rk4_substep_with<F: Float>(
    d: usize,
    t: &[F],
    h: &[F],
    step: usize,
    substeps: usize,
    cur: &mut [F],
    s: &mut Rk4Stages<'_, F>,
    mut slope: impl FnMut(usize, &[F], &[F], &mut [F]),
) {
    let inv = F::ONE / F::from_usize(substeps);
    let sixth = F::ONE / F::from_f64(6.0);
    let frac = F::from_usize(step) * inv;
    for r in 0..t.len() {
        s.times[r] = t[r] + h[r] * frac;
    }
    slope(0, cur, s.times, s.k1);
    rk4_stage(cur, s.k1, h, inv * F::HALF, d, s.stage);
    for r in 0..t.len() {
        s.times[r] = t[r] + h[r] * (frac + inv * F::HALF);
    }
    slope(1, s.stage, s.times, s.k2);
    rk4_stage(cur, s.k2, h, inv * F::HALF, d, s.stage);
    slope(2, s.stage, s.times, s.k3);
    rk4_stage(cur, s.k3, h, inv, d, s.stage);
    for r in 0..t.len() {
        s.times[r] = t[r] + h[r] * (frac + inv);
    }
    slope(3, s.stage, s.times, s.k4);
    let (k1, k2, k3, k4) = (&*s.k1, &*s.k2, &*s.k3, &*s.k4);
    for (r, &hr) in h.iter().enumerate() {
        let dt = hr * inv * sixth;
        for c in r * d..(r + 1) * d {
            cur[c] += dt * (k1[c] + F::TWO * (k2[c] + k3[c]) + k4[c]);
        }
    }
}

/// `stage_r = z_r + (h_r · frac) k_r` for every row.
pub(crate) fn rk4_stage<F: Float>(z: &[F], k: &[F], h: &[F], frac: F, d: usize, stage: &mut [F]) {
    for (r, &hr) in h.iter().enumerate() {
        let dt = hr * frac;
        for c in r * d..(r + 1) * d {
            stage[c] = z[c] + dt * k[c];
        }
    }
}

/// Work counts of a path, summed over rows: accepted and rejected steps,
/// drift evaluations (one per row per evaluated stage) and rows stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    pub accepted: u64,
    pub rejected: u64,
    pub evaluations: u64,
    /// Rows that stopped early (non-finite state, step-size underflow or
    /// step cap); their times are in the path's `stop_times`.
    pub stopped: u64,
}

impl core::ops::Add for StepStats {
    type Output = StepStats;
    fn add(self, o: StepStats) -> StepStats {
        StepStats {
            accepted: self.accepted + o.accepted,
            rejected: self.rejected + o.rejected,
            evaluations: self.evaluations + o.evaluations,
            stopped: self.stopped + o.stopped,
        }
    }
}

/// Most substeps one output gap may take (guards against `h` tiny compared
/// with the time span).
pub const MAX_SUBSTEPS_PER_GAP: usize = 1 << 30;

/// Checks a path's shapes and times and returns `(rows, K)`: `z0` is
/// `rows×d` and finite, `rows ≥ 1`, `t0` finite, `times` finite, non-empty,
/// `t0 ≤ times[0]` and strictly increasing; `out` is `rows×K×d` and
/// `stop_times` has `rows` entries.
pub(crate) fn check_path<F: Float>(
    d: usize,
    z0: &[F],
    t0: F,
    times: &[F],
    out: &[F],
    stop_times: &[F],
) -> Result<(usize, usize)> {
    if d == 0 {
        return Err(Error::bad_dim("dynamics", "state dimension is zero"));
    }
    let rows = stop_times.len();
    if rows == 0 {
        return Err(Error::bad_dim("stop_times", "no trajectories (rows = 0)"));
    }
    check_len(z0, checked_mul(rows, d, "z0")?, "z0")?;
    check_finite(z0, "z0")?;
    if !t0.is_finite() {
        return Err(Error::new(ErrorKind::NonFinite, "t0", "is NaN or infinite"));
    }
    check_finite(times, "times")?;
    let k = times.len();
    if k == 0 {
        return Err(Error::bad_dim("times", "no output times"));
    }
    if times[0] < t0 {
        return Err(Error::bad_config("times", "first output time is before t0"));
    }
    if let Some(i) = times.windows(2).position(|w| w[1] <= w[0]) {
        return Err(
            Error::bad_config("times", "output times are not strictly increasing")
                .with(Detail::Index(i + 1)),
        );
    }
    check_len(
        out,
        checked_mul(checked_mul(rows, k, "out")?, d, "out")?,
        "out",
    )?;
    Ok((rows, k))
}

/// A step bound `h` (named `arg`) must be finite and positive.
pub(crate) fn check_step<F: Float>(h: F, arg: &'static str) -> Result<()> {
    if !(h.is_finite() && h > F::ZERO) {
        return Err(
            Error::bad_config(arg, "must be finite and positive").with(Detail::Value(h.to_f64()))
        );
    }
    Ok(())
}

/// Number of equal substeps of size at most `h_max` that cover `gap ≥ 0`
/// (0 for a zero gap). A ratio within a few rounding errors above an
/// integer counts as that integer (0.5/0.01 in f32 is 50.0000007: 50
/// steps, not 51).
pub(crate) fn substep_count<F: Float>(gap: F, h_max: F) -> Result<usize> {
    let ratio = gap.to_f64() / h_max.to_f64();
    let n = libm::ceil(ratio * (1.0 - 4.0 * F::EPSILON.to_f64()));
    // Also catches NaN (a NaN gap or step never compares as in range).
    if n.is_nan() || n > MAX_SUBSTEPS_PER_GAP as f64 {
        return Err(Error::bad_config(
            "h_max",
            "step too small for the time span (more than 2^30 substeps per gap)",
        ));
    }
    Ok(if gap > F::ZERO {
        (n as usize).max(1)
    } else {
        0
    })
}

/// The fixed substeps of one output gap `[start, end]`: `steps` equal
/// substeps of size `h` ([`substep_count`] of them, none for a zero gap).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gap<F> {
    pub start: F,
    pub end: F,
    pub h: F,
    pub steps: usize,
}

impl<F: Float> Gap<F> {
    /// The substeps from `start` to `end ≥ start` no larger than `h_max`.
    pub fn new(start: F, end: F, h_max: F) -> Result<Self> {
        let steps = substep_count(end - start, h_max)?;
        let h = if steps > 0 {
            (end - start) / F::from_usize(steps)
        } else {
            F::ZERO
        };
        Ok(Gap {
            start,
            end,
            h,
            steps,
        })
    }

    /// Time at the start of substep `s` (`end` exactly for `s = steps`).
    pub fn time(&self, s: usize) -> F {
        if s == self.steps {
            self.end
        } else {
            self.start + self.h * F::from_usize(s)
        }
    }
}

/// Moves each running row's state `next_r` into `z_r` when it is finite;
/// a running row whose next state is not stops at time `t` (its `z_r`
/// keeps the last finite state). Rows are `d` wide.
pub(crate) fn accept_finite<F: Float>(
    z: &mut [F],
    next: &[F],
    stop_times: &mut [F],
    d: usize,
    t: F,
    stats: &mut StepStats,
) {
    for ((zr, nr), stop) in z
        .chunks_exact_mut(d)
        .zip(next.chunks_exact(d))
        .zip(stop_times.iter_mut())
    {
        if *stop != F::INFINITY {
            continue;
        }
        if nr.iter().all(|x| x.is_finite()) {
            zr.copy_from_slice(nr);
        } else {
            *stop = t;
            stats.stopped += 1;
        }
    }
}

/// Rows still running (stop time `+∞`).
pub(crate) fn running<F: Float>(stop_times: &[F]) -> u64 {
    stop_times.iter().filter(|&&s| s == F::INFINITY).count() as u64
}

/// Writes row `r`'s state `z_r` (or NaN when the row has stopped) as its
/// output `k` of `K`.
pub(crate) fn record_outputs<F: Float>(
    z: &[F],
    stop_times: &[F],
    k: usize,
    big_k: usize,
    d: usize,
    out: &mut [F],
) {
    for (r, &stop) in stop_times.iter().enumerate() {
        let dst = &mut out[(r * big_k + k) * d..][..d];
        if stop == F::INFINITY {
            dst.copy_from_slice(&z[r * d..(r + 1) * d]);
        } else {
            dst.fill(F::from_f64(f64::NAN));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dz/dt = A z with A = [[-0.5, 2], [-2, -0.5]] (damped rotation) plus a
    /// time-dependent forcing (0, cos t), to exercise the stage times. Shared
    /// with the ODE path tests.
    pub(super) struct DampedRotation;

    impl Dynamics<f64> for DampedRotation {
        fn dim(&self) -> usize {
            2
        }
        fn noise_dim(&self) -> usize {
            0
        }
        fn workspace_len(&self, _rows: usize) -> usize {
            0
        }
        fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
            for r in 0..t.len() {
                let (x, y) = (z[2 * r], z[2 * r + 1]);
                f[2 * r] = -0.5 * x + 2.0 * y;
                f[2 * r + 1] = -2.0 * x - 0.5 * y + libm::cos(t[r]);
            }
        }
        fn drift_and_factor(
            &self,
            _: &[f64],
            _: &[f64],
            _: &mut [f64],
            _: &mut [f64],
            _: &mut [f64],
        ) {
            unreachable!("no diffusion")
        }
    }

    /// Reference by a very fine RK4 of the same ODE (independent of substep
    /// count), cross-checked by the convergence order below.
    fn flow_err(substeps: usize) -> f64 {
        let z = [1.0, 0.5, -0.3, 2.0];
        let t = [0.0, 1.0];
        let h = [0.7, -0.4];
        let mut ws = [f64::NAN; 64];
        let mut coarse = [0.0; 4];
        rk4_flow(&DampedRotation, &z, &t, &h, substeps, &mut coarse, &mut ws).unwrap();
        let mut fine = [0.0; 4];
        rk4_flow(&DampedRotation, &z, &t, &h, 4096, &mut fine, &mut ws).unwrap();
        coarse
            .iter()
            .zip(&fine)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn substeps_absorb_rounding_but_not_real_excess() {
        assert_eq!(substep_count(0.5f32, 0.01).unwrap(), 50);
        assert_eq!(substep_count(0.51f32, 0.01).unwrap(), 51);
        assert_eq!(substep_count(0.3f64, 0.1).unwrap(), 3);
        assert_eq!(substep_count(1e-30f64, 0.1).unwrap(), 1);
        assert_eq!(substep_count(0.0f64, 0.1).unwrap(), 0);
        assert_eq!(substep_count(1.0f64, 1e-12).unwrap_err().arg, "h_max");
    }

    #[test]
    fn rk4_flow_is_fourth_order() {
        let e1 = flow_err(4);
        let e2 = flow_err(8);
        let order = libm::log2(e1 / e2);
        assert!((order - 4.0).abs() < 0.3, "order {order}");
    }

    #[test]
    fn rk4_flow_matches_closed_form_without_forcing() {
        // Without forcing the flow is exp(A h) z = e^{-h/2} R(2h) z.
        struct Linear;
        impl Dynamics<f64> for Linear {
            fn dim(&self) -> usize {
                2
            }
            fn noise_dim(&self) -> usize {
                0
            }
            fn workspace_len(&self, _rows: usize) -> usize {
                0
            }
            fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
                for r in 0..t.len() {
                    f[2 * r] = -0.5 * z[2 * r] + 2.0 * z[2 * r + 1];
                    f[2 * r + 1] = -2.0 * z[2 * r] - 0.5 * z[2 * r + 1];
                }
            }
            fn drift_and_factor(
                &self,
                _: &[f64],
                _: &[f64],
                _: &mut [f64],
                _: &mut [f64],
                _: &mut [f64],
            ) {
                unreachable!("no diffusion")
            }
        }
        let (x, y, h) = (1.0, 0.5, 0.9);
        let mut out = [0.0; 2];
        let mut ws = [f64::NAN; 16];
        rk4_flow(&Linear, &[x, y], &[0.0], &[h], 512, &mut out, &mut ws).unwrap();
        let (s, c) = libm::sincos(2.0 * h);
        let decay = libm::exp(-0.5 * h);
        assert!((out[0] - decay * (c * x + s * y)).abs() < 1e-10);
        assert!((out[1] - decay * (-s * x + c * y)).abs() < 1e-10);
    }

    #[test]
    fn rk4_flow_rejects_bad_input() {
        let mut ws = [0.0; 64];
        let mut out = [0.0; 2];
        let e = rk4_flow(
            &DampedRotation,
            &[f64::NAN, 0.0],
            &[0.0],
            &[1.0],
            2,
            &mut out,
            &mut ws,
        );
        assert_eq!(e.unwrap_err().arg, "z");
        let e = rk4_flow(
            &DampedRotation,
            &[0.0, 0.0],
            &[0.0],
            &[1.0],
            0,
            &mut out,
            &mut ws,
        );
        assert_eq!(e.unwrap_err().arg, "substeps");
        let e = rk4_flow(
            &DampedRotation,
            &[0.0, 0.0],
            &[0.0],
            &[1.0],
            1,
            &mut out,
            &mut ws[..3],
        );
        assert_eq!(e.unwrap_err().arg, "workspace");
    }
}
