//! ODE paths `dz/dt = f(z, t)` of a block of rows with states at output
//! times: classic RK4 with a fixed step and Dormand–Prince 5(4) with
//! adaptive steps (see the module docs of [`crate::integrate`] for the
//! shared shapes and the stop rules).

use super::{
    Dynamics, Gap, StepStats, accept_finite, check_path, check_step, record_outputs, rk4_flow,
    rk4_flow_workspace_len, running,
};
use crate::error::{Arena, Detail, Error, Result};
use crate::float::Float;
use crate::size::Size;

/// Workspace elements [`rk4_path`] needs for `rows` states.
pub fn rk4_path_workspace_len<F: Float, S: Dynamics<F>>(dynamics: &S, rows: usize) -> usize {
    // Current and next states, per-row times and steps, and the flow's own.
    (Size(rows) * (2 * dynamics.dim() + 2) + rk4_flow_workspace_len(dynamics, rows)).get()
}

/// RK4 path of `rows` states from `z0` at `t0`: each output gap is covered
/// by equal steps of the largest size `≤ h`, so the output times are hit
/// exactly. A row whose state turns non-finite stops at the end of that step.
///
/// Shapes: `z0` `rows×d`, `times` `K`, `out` `rows×K×d`, `stop_times` `rows`
/// (sets `rows`); workspace at least [`rk4_path_workspace_len`].
#[allow(clippy::too_many_arguments)]
pub fn rk4_path<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    z0: &[F],
    t0: F,
    times: &[F],
    h: F,
    out: &mut [F],
    stop_times: &mut [F],
    workspace: &mut [F],
) -> Result<StepStats> {
    let d = dynamics.dim();
    let (rows, big_k) = check_path(d, z0, t0, times, out, stop_times)?;
    check_step(h, "h")?;
    let mut arena = Arena::new(workspace);
    let z = arena.take(rows * d)?;
    let next = arena.take(rows * d)?;
    let row_t = arena.take(rows)?;
    let row_h = arena.take(rows)?;
    let flow_ws = arena.take(rk4_flow_workspace_len(dynamics, rows))?;
    z.copy_from_slice(z0);
    stop_times.fill(F::INFINITY);
    let mut stats = StepStats::default();
    let mut t = t0;
    for (k, &t_out) in times.iter().enumerate() {
        let gap = Gap::new(t, t_out, h)?;
        for s in 0..gap.steps {
            let (t_prev, t_next) = (gap.time(s), gap.time(s + 1));
            let active = running(stop_times);
            for r in 0..rows {
                row_t[r] = t_prev;
                row_h[r] = if stop_times[r] == F::INFINITY {
                    t_next - t_prev
                } else {
                    F::ZERO
                };
            }
            rk4_flow(dynamics, z, row_t, row_h, 1, next, flow_ws)?;
            stats.accepted += active;
            stats.evaluations += 4 * active;
            accept_finite(z, next, stop_times, d, t_next, &mut stats);
        }
        t = t_out;
        record_outputs(z, stop_times, k, big_k, d, out);
    }
    Ok(stats)
}

/// Settings of [`dopri5_path`]. Every row has its own step size; a step is
/// accepted when the RMS over the row's `d` components of
/// `err_c / (atol + rtol·max(|z_c|, |z_new,c|))` is at most 1 (Hairer,
/// Nørsett & Wanner, *Solving ODEs I*, II.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dopri5Config<F> {
    /// Relative tolerance, > 0.
    pub rtol: F,
    /// Absolute tolerance (state units), > 0.
    pub atol: F,
    /// Smallest step size (time units, ≥ 0): a row whose controller asks for
    /// less stops (stiff region or blow-up).
    pub h_min: F,
    /// Step cap: most attempted steps (accepted + rejected) per row per
    /// call; a row reaching it stops.
    pub max_steps: u64,
}

impl<F: Float> Dopri5Config<F> {
    /// Tolerances `rtol`, `atol`, no minimum step, 100,000 steps per row.
    pub fn new(rtol: F, atol: F) -> Self {
        Dopri5Config {
            rtol,
            atol,
            h_min: F::ZERO,
            max_steps: 100_000,
        }
    }

    fn check(&self) -> Result<()> {
        check_step(self.rtol, "rtol")?;
        check_step(self.atol, "atol")?;
        if !(self.h_min.is_finite() && self.h_min >= F::ZERO) {
            return Err(
                Error::bad_config("h_min", "must be finite and non-negative")
                    .with(Detail::Value(self.h_min.to_f64())),
            );
        }
        if self.max_steps == 0 {
            return Err(Error::bad_config("max_steps", "must be at least 1"));
        }
        Ok(())
    }
}

/// Dormand–Prince 5(4) nodes, coupling rows and error weights (5th-order
/// solution minus the embedded 4th-order one). Row `a[i]` gives stage
/// `i + 2`; the last row is also the 5th-order weights (FSAL).
const C: [f64; 6] = [0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 6] = [
    [0.2, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// Workspace elements [`dopri5_path`] needs for `rows` states.
pub fn dopri5_path_workspace_len<F: Float, S: Dynamics<F>>(dynamics: &S, rows: usize) -> usize {
    // Seven stage slopes, state, stage state; per-row time, proposed step,
    // used step, stage time and attempt count; the model's own.
    (Size(rows) * (9 * dynamics.dim() + 5) + dynamics.workspace_len(rows)).get()
}

/// Dopri5 path of `rows` states from `z0` at `t0` (adaptive steps per row,
/// first-same-as-last, each output time hit exactly by shortening the step
/// that would pass it; no dense output). The first step is chosen by
/// Hairer's rule (one extra evaluation). A row stops when its state turns
/// non-finite and the step cannot shrink further, when its step would fall
/// below `h_min`, or at the step cap.
///
/// Shapes as [`rk4_path`]; workspace at least [`dopri5_path_workspace_len`].
#[allow(clippy::too_many_arguments)]
pub fn dopri5_path<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    z0: &[F],
    t0: F,
    times: &[F],
    config: &Dopri5Config<F>,
    out: &mut [F],
    stop_times: &mut [F],
    workspace: &mut [F],
) -> Result<StepStats> {
    let d = dynamics.dim();
    let (rows, big_k) = check_path(d, z0, t0, times, out, stop_times)?;
    config.check()?;
    let len = rows * d;
    let mut arena = Arena::new(workspace);
    let mut k: [&mut [F]; 7] = [
        arena.take(len)?,
        arena.take(len)?,
        arena.take(len)?,
        arena.take(len)?,
        arena.take(len)?,
        arena.take(len)?,
        arena.take(len)?,
    ];
    let z = arena.take(len)?;
    let stage = arena.take(len)?;
    let row_t = arena.take(rows)?;
    let h_next = arena.take(rows)?;
    let h_used = arena.take(rows)?;
    let stage_t = arena.take(rows)?;
    let attempts = arena.take(rows)?;
    let model_ws = arena.take(dynamics.workspace_len(rows))?;
    z.copy_from_slice(z0);
    stop_times.fill(F::INFINITY);
    row_t.fill(t0);
    attempts.fill(F::ZERO);
    let mut stats = StepStats::default();
    let (rtol, atol) = (config.rtol, config.atol);
    // Error-weighted RMS of `v` over row r's components, scaled by `y`
    // (and `y2` when given).
    let rms = |v: &[F], y: &[F], y2: Option<&[F]>| -> F {
        let mut s = F::ZERO;
        for c in 0..d {
            let mut mag = y[c].abs();
            if let Some(y2) = y2 {
                mag = mag.max(y2[c].abs());
            }
            let e = v[c] / (atol + rtol * mag);
            s += e * e;
        }
        (s / F::from_usize(d)).sqrt()
    };

    // Initial slope and first step (Hairer's rule, per row).
    dynamics.drift(z, row_t, k[0], model_ws);
    let hundredth = F::from_f64(0.01);
    for r in 0..rows {
        let row = r * d..(r + 1) * d;
        let d0 = rms(&z[row.clone()], &z[row.clone()], None);
        let d1 = rms(&k[0][row.clone()], &z[row.clone()], None);
        h_used[r] = if d0 < F::from_f64(1e-5) || d1 < F::from_f64(1e-5) {
            F::from_f64(1e-6)
        } else {
            hundredth * d0 / d1
        };
        for c in row {
            stage[c] = z[c] + h_used[r] * k[0][c];
        }
        stage_t[r] = t0 + h_used[r];
    }
    dynamics.drift(stage, stage_t, k[1], model_ws);
    for r in 0..rows {
        let row = r * d..(r + 1) * d;
        let diff: F = {
            let mut acc = F::ZERO;
            for c in row.clone() {
                let e = (k[1][c] - k[0][c]) / (atol + rtol * z[c].abs());
                acc += e * e;
            }
            (acc / F::from_usize(d)).sqrt() / h_used[r]
        };
        let d1 = rms(&k[0][row.clone()], &z[row], None);
        let big = d1.max(diff);
        let h1 = if big <= F::from_f64(1e-15) || !big.is_finite() {
            (h_used[r] * F::from_f64(1e-3)).max(F::from_f64(1e-6))
        } else {
            F::from_f64(libm::pow(0.01 / big.to_f64(), 0.2))
        };
        h_next[r] = (F::from_f64(100.0) * h_used[r]).min(h1);
    }
    stats.evaluations += 2 * rows as u64;

    let min_factor = F::from_f64(0.2);
    let max_factor = F::from_f64(10.0);
    let safety = F::from_f64(0.9);
    let max_steps = F::from_f64(config.max_steps as f64);
    for (out_k, &t_out) in times.iter().enumerate() {
        loop {
            // Steps of this attempt: zero for rows done with the gap or stopped.
            let mut active = 0u64;
            for r in 0..rows {
                h_used[r] = if stop_times[r] == F::INFINITY && row_t[r] < t_out {
                    active += 1;
                    h_next[r].min(t_out - row_t[r])
                } else {
                    F::ZERO
                };
            }
            if active == 0 {
                break;
            }
            for s in 0..6 {
                for r in 0..rows {
                    let hr = h_used[r];
                    for c in r * d..(r + 1) * d {
                        let mut acc = F::ZERO;
                        for (j, kj) in k.iter().enumerate().take(s + 1) {
                            acc += F::from_f64(A[s][j]) * kj[c];
                        }
                        stage[c] = z[c] + hr * acc;
                    }
                    stage_t[r] = row_t[r] + F::from_f64(C[s]) * hr;
                }
                dynamics.drift(stage, stage_t, k[s + 1], model_ws);
            }
            stats.evaluations += 6 * active;
            // `stage` now holds the 5th-order solution, `k[6]` its slope.
            for r in 0..rows {
                let hr = h_used[r];
                if hr == F::ZERO {
                    continue;
                }
                let row = r * d..(r + 1) * d;
                let mut err = F::ZERO;
                let mut finite = true;
                for c in row.clone() {
                    let mut e = F::ZERO;
                    for (j, kj) in k.iter().enumerate() {
                        e += F::from_f64(E[j]) * kj[c];
                    }
                    let scaled = hr * e / (atol + rtol * z[c].abs().max(stage[c].abs()));
                    err += scaled * scaled;
                    finite &= stage[c].is_finite();
                }
                let err = (err / F::from_usize(d)).sqrt();
                attempts[r] += F::ONE;
                if finite && err <= F::ONE {
                    stats.accepted += 1;
                    z[row.clone()].copy_from_slice(&stage[row.clone()]);
                    let (first, rest) = k.split_at_mut(6);
                    first[0][row.clone()].copy_from_slice(&rest[0][row]);
                    row_t[r] = if hr == t_out - row_t[r] {
                        t_out
                    } else {
                        row_t[r] + hr
                    };
                    let factor = if err == F::ZERO {
                        max_factor
                    } else {
                        (safety * F::from_f64(libm::pow(err.to_f64(), -0.2))).min(max_factor)
                    };
                    let grown = hr * factor.max(min_factor);
                    // A step shortened to hit an output time does not
                    // lower the controller's earlier proposal.
                    h_next[r] = if hr < h_next[r] {
                        grown.max(h_next[r])
                    } else {
                        grown
                    };
                } else {
                    stats.rejected += 1;
                    let factor = if finite && err.is_finite() {
                        (safety * F::from_f64(libm::pow(err.to_f64(), -0.2))).max(min_factor)
                    } else {
                        min_factor
                    };
                    h_next[r] = hr * factor.min(F::ONE);
                    if h_next[r] < config.h_min || h_next[r] == F::ZERO {
                        stop_times[r] = row_t[r];
                        stats.stopped += 1;
                        continue;
                    }
                }
                if (attempts[r] >= max_steps || h_next[r] < config.h_min) && row_t[r] < t_out {
                    stop_times[r] = row_t[r];
                    stats.stopped += 1;
                }
            }
        }
        record_outputs(z, stop_times, out_k, big_k, d, out);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    use super::super::tests::DampedRotation;

    /// Three nonlinear scalar ODEs with closed forms: logistic `z' = z(1−z)`,
    /// cubic decay `z' = −z³`, Riccati `z' = 1 + z²` (blows up at
    /// `t = π/2 − atan z₀`).
    struct ClosedForms;

    impl ClosedForms {
        fn solution(z0: &[f64; 3], t: f64) -> [f64; 3] {
            [
                1.0 / (1.0 + (1.0 / z0[0] - 1.0) * libm::exp(-t)),
                z0[1] / libm::sqrt(1.0 + 2.0 * z0[1] * z0[1] * t),
                libm::tan(t + libm::atan(z0[2])),
            ]
        }
    }

    impl Dynamics<f64> for ClosedForms {
        fn dim(&self) -> usize {
            3
        }
        fn noise_dim(&self) -> usize {
            0
        }
        fn workspace_len(&self, _rows: usize) -> usize {
            0
        }
        fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
            for r in 0..t.len() {
                let (a, b, c) = (z[3 * r], z[3 * r + 1], z[3 * r + 2]);
                f[3 * r] = a * (1.0 - a);
                f[3 * r + 1] = -b * b * b;
                f[3 * r + 2] = 1.0 + c * c;
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

    const TIMES: [f64; 3] = [0.4, 0.8, 1.2];
    const Z0: [f64; 3] = [0.1, 2.0, 0.0];

    /// Largest error of a path of `ClosedForms` from `Z0` in units of
    /// `atol + rtol·|z|`, and in absolute terms.
    fn closed_form_errors(out: &[f64], rtol: f64, atol: f64) -> (f64, f64) {
        let (mut scaled, mut abs) = (0.0f64, 0.0f64);
        for (k, &t) in TIMES.iter().enumerate() {
            let exact = ClosedForms::solution(&Z0, t);
            for c in 0..3 {
                let e = (out[k * 3 + c] - exact[c]).abs();
                abs = abs.max(e);
                scaled = scaled.max(e / (atol + rtol * exact[c].abs()));
            }
        }
        (scaled, abs)
    }

    #[test]
    fn rk4_global_error_is_fourth_order() {
        // Linear ODE without forcing: z(t) = e^{-t/2} R(2t) z0.
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
        let times = [0.5, 1.0, 2.5];
        let (x, y) = (1.0, 0.5);
        let steps = [0.25, 0.125, 0.0625, 0.03125, 0.015625];
        let mut points = [(0.0f64, 0.0f64); 5];
        for (i, &h) in steps.iter().enumerate() {
            let mut out = [0.0; 6];
            let mut stop = [0.0];
            let mut ws = [f64::NAN; 64];
            let stats = rk4_path(
                &Linear,
                &[x, y],
                0.0,
                &times,
                h,
                &mut out,
                &mut stop,
                &mut ws,
            )
            .unwrap();
            assert_eq!(stats.accepted as f64, 2.5 / h);
            let mut err = 0.0f64;
            for (k, &t) in times.iter().enumerate() {
                let (s, c) = libm::sincos(2.0 * t);
                let decay = libm::exp(-0.5 * t);
                err = err.max((out[2 * k] - decay * (c * x + s * y)).abs());
                err = err.max((out[2 * k + 1] - decay * (-s * x + c * y)).abs());
            }
            points[i] = (libm::log(h), libm::log(err));
        }
        // Least-squares slope of log error against log step.
        let n = points.len() as f64;
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        let slope = sxy / sxx;
        assert!((slope - 4.0).abs() < 0.2, "observed order {slope}");
    }

    #[test]
    fn dopri5_meets_tolerance_with_fewer_evaluations_than_rk4() {
        let (rtol, atol) = (1e-8, 1e-8);
        let config = Dopri5Config::new(rtol, atol);
        let mut out = [0.0; 9];
        let mut stop = [0.0];
        let mut ws = [f64::NAN; 128];
        let stats = dopri5_path(
            &ClosedForms,
            &Z0,
            0.0,
            &TIMES,
            &config,
            &mut out,
            &mut stop,
            &mut ws,
        )
        .unwrap();
        let (scaled, dopri_err) = closed_form_errors(&out, rtol, atol);
        assert!(scaled <= 10.0, "error {scaled} tolerances");
        assert_eq!(stop[0], f64::INFINITY);
        assert!(stats.rejected < stats.accepted, "{stats:?}");
        // RK4 with the fewest steps that reach the same accuracy.
        let mut rk4_evals = None;
        for n in 1..4000 {
            let h = 1.2 / n as f64;
            let s = rk4_path(
                &ClosedForms,
                &Z0,
                0.0,
                &TIMES,
                h,
                &mut out,
                &mut stop,
                &mut ws,
            )
            .unwrap();
            if closed_form_errors(&out, rtol, atol).1 <= dopri_err {
                rk4_evals = Some(s.evaluations);
                break;
            }
        }
        let rk4_evals = rk4_evals.expect("RK4 reached Dopri5's accuracy");
        assert!(
            stats.evaluations < rk4_evals,
            "Dopri5 {} evaluations, RK4 {rk4_evals}",
            stats.evaluations
        );
    }

    #[test]
    fn dopri5_follows_time_dependent_forcing_and_rows_are_independent() {
        // Two rows with different states; each must match its own one-row
        // run bit for bit (per-row step control), and a fine RK4 reference.
        let z0 = [1.0, 0.5, -0.3, 2.0];
        let times = [0.3, 1.0, 2.0];
        let config = Dopri5Config::new(1e-10, 1e-10);
        let mut ws = [f64::NAN; 256];
        let mut out = [0.0; 12];
        let mut stop = [0.0; 2];
        dopri5_path(
            &DampedRotation,
            &z0,
            0.0,
            &times,
            &config,
            &mut out,
            &mut stop,
            &mut ws,
        )
        .unwrap();
        for r in 0..2 {
            let mut one = [0.0; 6];
            let mut stop1 = [0.0];
            dopri5_path(
                &DampedRotation,
                &z0[2 * r..2 * r + 2],
                0.0,
                &times,
                &config,
                &mut one,
                &mut stop1,
                &mut ws,
            )
            .unwrap();
            assert_eq!(one, out[6 * r..6 * r + 6]);
            let mut fine = [0.0; 6];
            rk4_path(
                &DampedRotation,
                &z0[2 * r..2 * r + 2],
                0.0,
                &times,
                1e-3,
                &mut fine,
                &mut stop1,
                &mut ws,
            )
            .unwrap();
            for (a, b) in one.iter().zip(&fine) {
                assert!((a - b).abs() < 1e-8, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn blown_up_row_stops_and_the_other_goes_on() {
        // Riccati rows from 0 (blows up at π/2) and from −10 (at π/2 + atan 10).
        let z0 = [0.5, 1.0, 0.0, 0.5, 1.0, -10.0];
        let times = [1.0, 2.0];
        let mut ws = [f64::NAN; 256];
        let config = Dopri5Config {
            h_min: 1e-9,
            ..Dopri5Config::new(1e-6, 1e-6)
        };
        for dopri in [false, true] {
            let mut out = [0.0; 12];
            let mut stop = [0.0; 2];
            let stats = if dopri {
                dopri5_path(
                    &ClosedForms,
                    &z0,
                    0.0,
                    &times,
                    &config,
                    &mut out,
                    &mut stop,
                    &mut ws,
                )
            } else {
                rk4_path(
                    &ClosedForms,
                    &z0,
                    0.0,
                    &times,
                    0.01,
                    &mut out,
                    &mut stop,
                    &mut ws,
                )
            }
            .unwrap();
            assert_eq!(stats.stopped, 1);
            let half_pi = core::f64::consts::FRAC_PI_2;
            // RK4 overflows a few steps past the pole; Dopri5 stalls at it.
            assert!(
                stop[0] >= half_pi - 1e-3 && stop[0] < half_pi + 0.1,
                "{dopri}: {}",
                stop[0]
            );
            assert!((out[2] - libm::tan(1.0)).abs() < 1e-4);
            assert!(out[3..6].iter().all(|x| x.is_nan()));
            assert_eq!(stop[1], f64::INFINITY);
            let exact = ClosedForms::solution(&[0.5, 1.0, -10.0], 2.0);
            for c in 0..3 {
                assert!((out[9 + c] - exact[c]).abs() < 1e-4 * (1.0 + exact[c].abs()));
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_naming_the_argument() {
        let mut ws = [0.0; 256];
        let mut out = [0.0; 3];
        let mut stop = [0.0];
        let z0 = [0.5, 1.0, 0.0];
        let ok = Dopri5Config::new(1e-6, 1e-6);
        let mut rk4 = |z0: &[f64], times: &[f64], h: f64, stop: &mut [f64]| {
            rk4_path(&ClosedForms, z0, 0.0, times, h, &mut out, stop, &mut ws).unwrap_err()
        };
        assert_eq!(rk4(&[0.5, f64::NAN, 0.0], &[1.0], 0.1, &mut stop).arg, "z0");
        assert_eq!(rk4(&z0, &[1.0], 0.0, &mut stop).arg, "h");
        assert_eq!(rk4(&z0, &[1.0], -0.1, &mut stop).arg, "h");
        assert_eq!(rk4(&z0, &[1.0], f64::NAN, &mut stop).arg, "h");
        assert_eq!(rk4(&z0, &[-1.0], 0.1, &mut stop).arg, "times");
        assert_eq!(rk4(&z0, &[], 0.1, &mut stop).arg, "times");
        assert_eq!(rk4(&z0, &[f64::INFINITY], 0.1, &mut stop).arg, "times");
        assert_eq!(rk4(&[], &[1.0], 0.1, &mut []).kind, ErrorKind::BadDimension);
        assert_eq!(rk4(&z0, &[1.0], 1e-12, &mut stop).arg, "h_max");
        let mut out2 = [0.0; 6];
        let e = rk4_path(
            &ClosedForms,
            &z0,
            0.0,
            &[1.0, 1.0],
            0.1,
            &mut out2,
            &mut stop,
            &mut ws,
        )
        .unwrap_err();
        assert_eq!((e.arg, e.detail), ("times", Detail::Index(1)));
        let e = rk4_path(
            &ClosedForms,
            &z0,
            0.0,
            &[1.0],
            0.1,
            &mut out,
            &mut stop,
            &mut ws[..5],
        )
        .unwrap_err();
        assert_eq!((e.arg, e.kind), ("workspace", ErrorKind::BufferTooSmall));
        for (config, arg) in [
            (Dopri5Config { rtol: 0.0, ..ok }, "rtol"),
            (Dopri5Config { atol: -1.0, ..ok }, "atol"),
            (
                Dopri5Config {
                    atol: f64::NAN,
                    ..ok
                },
                "atol",
            ),
            (Dopri5Config { h_min: -1.0, ..ok }, "h_min"),
            (Dopri5Config { max_steps: 0, ..ok }, "max_steps"),
        ] {
            let e = dopri5_path(
                &ClosedForms,
                &z0,
                0.0,
                &[1.0],
                &config,
                &mut out,
                &mut stop,
                &mut ws,
            )
            .unwrap_err();
            assert_eq!(e.arg, arg);
        }
    }
}
