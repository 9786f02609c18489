//! The last line of the divergence guard: a trained model is accepted only
//! if its rollouts from the training data stay inside the data's range.
//!
//! A fit can end with finite, normal-looking losses and still hold a model
//! whose drift is huge where the losses did not look (the loss of noisy
//! teachers is mostly their noise). [`check_rollouts`] rolls the model out
//! the way it will be used — Euler–Maruyama when it has a diffusion factor,
//! RK4 when not — in two ways, from up to `rows_per_bin` observations of a
//! bin (evenly spaced among its rows):
//! - over one frame gap, from every bin but the last to the next;
//! - from the first bin through every later bin, continuing the same
//!   trajectories gap by gap.
//!
//! Every end point is compared with the data's range per coordinate, widened
//! on each side by `margin` times its width; a non-finite end point counts
//! as outside. The model is refused ([`ErrorKind::Diverged`]) when more than
//! `max_outside` of the end points of any one rollout are outside.
//!
//! Cost: `O(B·R·s)` model evaluations for `B` bins, `R = rows_per_bin` and
//! `s = steps_per_gap`, plus `O(n·B)` to find the bins of `n` observations.

use super::fit::Observations;
use crate::dynamics::Dynamics;
use crate::error::{Arena, Detail, Error, ErrorKind, Result, check_len, checked_mul};
use crate::float::Float;
use crate::integrate::rollout::{
    MAX_BLOCK_ROWS, Method, RolloutConfig, Start, rollout, rollout_workspace_len,
};
use crate::integrate::sde::SdeConfig;
use crate::minibatch::next_time;

/// Settings of [`check_rollouts`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeCheck {
    /// Width added on each side of the data's range of a coordinate, as a
    /// multiple of that range (≥ 0; 1 allows a box three times as wide).
    pub margin: f64,
    /// Largest fraction of one rollout's end points allowed outside, in
    /// `[0, 1)`.
    pub max_outside: f64,
    /// Start states per bin (≥ 1).
    pub rows_per_bin: usize,
    /// Integration steps per frame gap (≥ 1).
    pub steps_per_gap: usize,
    /// Seed of the Euler–Maruyama noise.
    pub seed: u64,
}

impl Default for RangeCheck {
    /// Margin 1, at most 1% outside, 256 start states per bin, 20 steps per
    /// gap, seed 0.
    fn default() -> Self {
        RangeCheck {
            margin: 1.0,
            max_outside: 0.01,
            rows_per_bin: 256,
            steps_per_gap: 20,
            seed: 0,
        }
    }
}

/// The farthest end point outside the widened range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Excursion<F> {
    /// Time the rollout started from and the time of the end point.
    pub from: F,
    pub at: F,
    /// Coordinate, its value (NaN when the trajectory turned non-finite)
    /// and the widened range it left.
    pub coordinate: usize,
    pub value: F,
    pub low: F,
    pub high: F,
}

/// What [`check_rollouts`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeReport<F> {
    /// End points checked, and how many were outside.
    pub checked: usize,
    pub outside: usize,
    /// The largest fraction outside of any one rollout.
    pub worst_fraction: f64,
    /// The farthest end point outside, if any.
    pub worst: Option<Excursion<F>>,
}

impl RangeCheck {
    fn validate(&self) -> Result<()> {
        if !(self.margin >= 0.0 && self.margin.is_finite()) {
            return Err(Error::bad_config("margin", "must be finite and >= 0")
                .with(Detail::Value(self.margin)));
        }
        if !(self.max_outside >= 0.0 && self.max_outside < 1.0) {
            return Err(Error::bad_config("max_outside", "must be in [0, 1)")
                .with(Detail::Value(self.max_outside)));
        }
        if self.rows_per_bin == 0 || self.steps_per_gap == 0 {
            return Err(Error::bad_config(
                "rows_per_bin",
                "rows_per_bin and steps_per_gap must be at least 1",
            ));
        }
        Ok(())
    }

    fn method<F: Float, S: Dynamics<F>>(&self, dynamics: &S, gap: F) -> Method<F> {
        let step = gap / F::from_usize(self.steps_per_gap);
        if dynamics.noise_dim() > 0 {
            Method::EulerMaruyama(SdeConfig {
                h_max: step,
                trace_clip: None,
            })
        } else {
            Method::Rk4 { h: step }
        }
    }
}

/// Workspace elements [`check_rollouts`] needs for `n` observations in `d`
/// dimensions with `workers` rollout workers.
pub fn check_rollouts_workspace_len<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    n: usize,
    check: &RangeCheck,
    workers: usize,
) -> usize {
    let (d, r) = (dynamics.dim(), check.rows_per_bin);
    // The widest method's workspace (a gap of 1 stands for any gap).
    let cfg = RolloutConfig {
        method: check.method(dynamics, F::ONE),
        seed: 0,
        block_rows: MAX_BLOCK_ROWS,
    };
    n.saturating_add(2 * d)
        .saturating_add(r.saturating_mul(3 * d + 1))
        .saturating_add(rollout_workspace_len(dynamics, &cfg, workers))
}

/// Per-coordinate widened range of the data.
struct Range<'a, F> {
    low: &'a [F],
    high: &'a [F],
}

impl<F: Float> Range<'_, F> {
    /// Counts the end points `z` (`rows×d`) outside, keeping the farthest.
    fn count(&self, z: &[F], from: F, at: F, worst: &mut Option<(F, Excursion<F>)>) -> usize {
        let d = self.low.len();
        let mut outside = 0;
        for row in z.chunks_exact(d) {
            let mut out = false;
            for (k, &v) in row.iter().enumerate() {
                let (lo, hi) = (self.low[k], self.high[k]);
                if v.is_finite() && v >= lo && v <= hi {
                    continue;
                }
                out = true;
                // Distance outside in widths of the range (∞ for NaN).
                let width = hi - lo;
                let far = if v.is_finite() {
                    (v - hi).max(lo - v) / width.max(F::EPSILON)
                } else {
                    F::INFINITY
                };
                if worst.as_ref().is_none_or(|(w, _)| far > *w) {
                    *worst = Some((
                        far,
                        Excursion {
                            from,
                            at,
                            coordinate: k,
                            value: v,
                            low: lo,
                            high: hi,
                        },
                    ));
                }
            }
            outside += usize::from(out);
        }
        outside
    }
}

/// Rolls `dynamics` out from the data (see the module docs) and reports how
/// many end points left the widened range ([`RangeReport::verdict`] then
/// accepts or refuses the model). `data` needs at least two distinct
/// times; its values are assumed checked (finite) by the fit that made the
/// model. The workspace is at least [`check_rollouts_workspace_len`] long
/// (its size sets the worker count).
pub fn check_rollouts<F: Float, S: Dynamics<F> + Sync>(
    dynamics: &S,
    data: &Observations<'_, F>,
    check: &RangeCheck,
    workspace: &mut [F],
) -> Result<RangeReport<F>> {
    check.validate()?;
    let (n, d) = (data.t.len(), data.d);
    if d != dynamics.dim() {
        return Err(Error::bad_dim("d", "differs from the model's dimension"));
    }
    check_len(data.z, checked_mul(n, d, "d")?, "z")?;
    let r_max = check.rows_per_bin;
    let mut arena = Arena::new(workspace);
    let bins = arena.take(n)?;
    let mut count = 0;
    let mut last = None;
    while let Some(tb) = next_time(data.t, last) {
        bins[count] = tb;
        count += 1;
        last = Some(tb);
    }
    let bins = &bins[..count];
    if count < 2 {
        return Err(Error::bad_dim("t", "needs at least two distinct times"));
    }
    let low = arena.take(d)?;
    let high = arena.take(d)?;
    for k in 0..d {
        let (lo, hi) = data
            .z
            .iter()
            .skip(k)
            .step_by(d)
            .fold((F::INFINITY, F::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let pad = F::from_f64(check.margin) * (hi - lo);
        low[k] = lo - pad;
        high[k] = hi + pad;
    }
    let range = Range { low, high };
    let carried = arena.take(r_max * d)?;
    let starts = arena.take(r_max * d)?;
    let out = arena.take(r_max * d)?;
    let stops = arena.take(r_max)?;
    let ws = arena.rest();
    // Up to r_max rows of bin `tb`, evenly spaced, into `into`; their count.
    let gather = |tb: F, into: &mut [F]| {
        let size = data.t.iter().filter(|&&v| v == tb).count();
        let take = size.min(r_max);
        let mut rows = (0..n).filter(|&i| data.t[i] == tb);
        let (mut next, mut seen, mut kept) = (0, 0, 0);
        while kept < take {
            let Some(i) = rows.next() else { break };
            if seen == next {
                into[kept * d..(kept + 1) * d].copy_from_slice(&data.z[i * d..(i + 1) * d]);
                kept += 1;
                next = kept * size / take;
            }
            seen += 1;
        }
        take
    };
    let mut report = RangeReport {
        checked: 0,
        outside: 0,
        worst_fraction: 0.0,
        worst: None,
    };
    let mut worst = None;
    let mut carried_rows = gather(bins[0], carried);
    for (b, w) in bins.windows(2).enumerate() {
        let (t0, t1) = (w[0], w[1]);
        let rows = gather(t0, starts);
        for (group, (from, states, rows)) in [
            (t0, &mut *starts, rows),
            (bins[0], &mut *carried, carried_rows),
        ]
        .into_iter()
        .enumerate()
        {
            if rows == 0 {
                continue;
            }
            let cfg = RolloutConfig {
                method: check.method(dynamics, t1 - t0),
                seed: check.seed ^ ((2 * b + group) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                block_rows: MAX_BLOCK_ROWS,
            };
            let end = &mut out[..rows * d];
            rollout(
                dynamics,
                Start::Cloud(&states[..rows * d]),
                t0,
                &[t1],
                &cfg,
                end,
                &mut stops[..rows],
                ws,
            )?;
            let outside = range.count(end, from, t1, &mut worst);
            report.checked += rows;
            report.outside += outside;
            report.worst_fraction = report.worst_fraction.max(outside as f64 / rows as f64);
            if group == 1 {
                // Carried on: the rows still finite (a stopped row was
                // counted outside above; it cannot start the next leg).
                let mut kept = 0;
                for row in end
                    .chunks_exact(d)
                    .filter(|r| r.iter().all(|v| v.is_finite()))
                {
                    states[kept * d..(kept + 1) * d].copy_from_slice(row);
                    kept += 1;
                }
                carried_rows = kept;
            }
        }
    }
    report.worst = worst.map(|(_, e)| e);
    Ok(report)
}

impl<F> RangeReport<F> {
    /// Accepts the model (`Ok`) or refuses it with [`ErrorKind::Diverged`]
    /// (argument `"rollouts"`, the worst fraction outside as the detail)
    /// when more than `check.max_outside` of one rollout's end points left
    /// the widened range.
    pub fn verdict(&self, check: &RangeCheck) -> Result<()> {
        if self.worst_fraction > check.max_outside {
            return Err(Error::new(
                ErrorKind::Diverged,
                "rollouts",
                "the trained model's rollouts from the data leave the data's range",
            )
            .with(Detail::Value(self.worst_fraction)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::LinearSde;
    use std::vec;
    use std::vec::Vec;

    /// `dz = a z dt + σ dW` in one dimension (an ODE when `sigma` is empty).
    fn linear<'a>(a: &'a [f64], sigma: &'a [f64]) -> LinearSde<'a> {
        LinearSde::new(1, a, &[], sigma, sigma.len()).unwrap()
    }

    /// 100 points `i/99` at each of the times 0, 0.2, 0.4.
    fn data() -> (Vec<f64>, Vec<f64>) {
        let z: Vec<f64> = (0..3)
            .flat_map(|_| (0..100).map(|i| i as f64 / 99.0))
            .collect();
        let t: Vec<f64> = [0.0, 0.2, 0.4].iter().flat_map(|&tb| [tb; 100]).collect();
        (z, t)
    }

    fn check(dynamics: &LinearSde<'_>) -> (RangeReport<f64>, Result<()>) {
        let (z, t) = data();
        let track = vec![crate::minibatch::UNTRACKED; t.len()];
        let data = Observations {
            z: &z,
            t: &t,
            track: &track,
            d: 1,
        };
        let cfg = RangeCheck::default();
        let mut ws =
            vec![f64::NAN; check_rollouts_workspace_len::<f64, _>(dynamics, t.len(), &cfg, 2)];
        let report = check_rollouts(dynamics, &data, &cfg, &mut ws).unwrap();
        (report, report.verdict(&cfg))
    }

    #[test]
    fn a_model_that_stays_put_or_wanders_a_little_is_accepted() {
        for sigma in [&[][..], &[0.1]] {
            let (report, verdict) = check(&linear(&[0.0], sigma));
            assert_eq!(
                (report.checked, report.outside, report.worst),
                (400, 0, None)
            );
            assert!(verdict.is_ok());
        }
    }

    #[test]
    fn an_exploding_flow_is_refused_with_the_farthest_excursion() {
        // z·e^{5t} against the widened range [−1, 2]: over one gap
        // (×e) the points above 2/e leave it — i ≥ 73, 27 of 100 from each
        // bin; carried from t = 0 over two gaps (×e²) those above 2/e² —
        // i ≥ 27, 73 of 100 at t = 0.4 (27 at t = 0.2).
        let (report, verdict) = check(&linear(&[5.0], &[]));
        assert_eq!(report.checked, 400);
        assert_eq!(report.outside, 27 + 27 + 27 + 73);
        assert!((report.worst_fraction - 0.73).abs() < 1e-12);
        let w = report.worst.unwrap();
        assert_eq!(
            (w.from, w.at, w.coordinate, w.low, w.high),
            (0.0, 0.4, 0, -1.0, 2.0)
        );
        assert!((w.value - 2f64.exp()).abs() < 1e-6, "{}", w.value);
        let e = verdict.unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::Diverged, "rollouts"));
        assert_eq!(e.detail, Detail::Value(0.73));
    }

    #[test]
    fn bad_settings_and_data_are_errors() {
        let (z, t) = data();
        let track = vec![crate::minibatch::UNTRACKED; t.len()];
        let model = linear(&[0.0], &[]);
        let mut ws =
            vec![
                0.0;
                check_rollouts_workspace_len::<f64, _>(&model, t.len(), &RangeCheck::default(), 1)
            ];
        let data = Observations {
            z: &z,
            t: &t,
            track: &track,
            d: 1,
        };
        for bad in [
            RangeCheck {
                margin: -1.0,
                ..RangeCheck::default()
            },
            RangeCheck {
                max_outside: 1.0,
                ..RangeCheck::default()
            },
            RangeCheck {
                rows_per_bin: 0,
                ..RangeCheck::default()
            },
        ] {
            let e = check_rollouts(&model, &data, &bad, &mut ws).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadConfig);
        }
        let one_bin = vec![0.0; t.len()];
        let flat = Observations {
            t: &one_bin,
            ..data
        };
        let e = check_rollouts(&model, &flat, &RangeCheck::default(), &mut ws).unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BadDimension, "t"));
    }
}
