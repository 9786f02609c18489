//! Local calibration of the learned diffusion: how far the predicted
//! covariance rate `D_pred` is from the minibatch targets `D̂`.

use crate::error::{Arena, Detail, Error, ErrorKind, Result, check_finite, check_len, checked_mul};
use crate::float::Float;

/// Means of the two errors [`calibration_summary`] reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationSummary<F> {
    /// Mean over minibatches of `‖D_pred − D̂‖_F`.
    pub mean_abs: F,
    /// Mean over minibatches of `‖D_pred − D̂‖_F / ‖D̂‖_F`.
    pub mean_rel: F,
}

/// Workspace elements of [`calibration_summary`] for `batches` minibatches.
pub fn calibration_workspace_len(batches: usize) -> usize {
    batches.saturating_mul(2)
}

/// Calibration over `B` minibatches: `d_pred` and `d_hat` are `B×d×d`
/// (minibatch `b`'s predicted and target `D`, row-major); for each the
/// Frobenius error `e_b = ‖D_pred,b − D̂_b‖_F` and relative error
/// `e_b / ‖D̂_b‖_F`. Writes their quantiles at `levels` (each in `[0, 1]`,
/// NumPy's default linear interpolation) to `abs_quantiles` and
/// `rel_quantiles` (one per level) and returns the means. A zero target
/// (relative error undefined) is an error naming `d_hat` and the minibatch.
#[allow(clippy::too_many_arguments)]
pub fn calibration_summary<F: Float>(
    d_pred: &[F],
    d_hat: &[F],
    d: usize,
    levels: &[F],
    abs_quantiles: &mut [F],
    rel_quantiles: &mut [F],
    workspace: &mut [F],
) -> Result<CalibrationSummary<F>> {
    let dd = checked_mul(d, d, "d")?;
    if dd == 0 {
        return Err(Error::bad_dim("d", "dimension is zero"));
    }
    let batches = d_pred.len() / dd;
    if batches == 0 {
        return Err(Error::bad_dim("d_pred", "no minibatches"));
    }
    check_len(d_pred, batches * dd, "d_pred")?;
    check_len(d_hat, batches * dd, "d_hat")?;
    check_finite(d_pred, "d_pred")?;
    check_finite(d_hat, "d_hat")?;
    check_len(abs_quantiles, levels.len(), "abs_quantiles")?;
    check_len(rel_quantiles, levels.len(), "rel_quantiles")?;
    if let Some(i) = levels
        .iter()
        .position(|&q| !(q.is_finite() && q >= F::ZERO && q <= F::ONE))
    {
        return Err(Error::bad_config("levels", "must lie in [0, 1]").with(Detail::Index(i)));
    }
    let mut arena = Arena::new(workspace);
    let abs = arena.take(batches)?;
    let rel = arena.take(batches)?;
    let (mut sum_abs, mut sum_rel) = (0.0f64, 0.0f64);
    for (b, (p, h)) in d_pred
        .chunks_exact(dd)
        .zip(d_hat.chunks_exact(dd))
        .enumerate()
    {
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (&pv, &hv) in p.iter().zip(h) {
            let e = (pv - hv).to_f64();
            diff += e * e;
            norm += hv.to_f64() * hv.to_f64();
        }
        if norm == 0.0 {
            return Err(Error::new(
                ErrorKind::BadConfig,
                "d_hat",
                "target is zero: relative error undefined",
            )
            .with(Detail::Index(b)));
        }
        let e = libm::sqrt(diff);
        let r = e / libm::sqrt(norm);
        sum_abs += e;
        sum_rel += r;
        abs[b] = F::from_f64(e);
        rel[b] = F::from_f64(r);
    }
    let by_value = |a: &F, b: &F| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal);
    abs.sort_unstable_by(by_value);
    rel.sort_unstable_by(by_value);
    for ((&q, qa), qr) in levels.iter().zip(abs_quantiles).zip(rel_quantiles) {
        *qa = quantile_sorted(abs, q);
        *qr = quantile_sorted(rel, q);
    }
    let count = batches as f64;
    Ok(CalibrationSummary {
        mean_abs: F::from_f64(sum_abs / count),
        mean_rel: F::from_f64(sum_rel / count),
    })
}

/// Quantile `q ∈ [0, 1]` of ascending non-empty `sorted` by linear
/// interpolation between the order statistics at `q (len − 1)` (NumPy's
/// default method).
pub fn quantile_sorted<F: Float>(sorted: &[F], q: F) -> F {
    let last = sorted.len() - 1;
    let pos = q.to_f64() * last as f64;
    let lo = (libm::floor(pos) as usize).min(last);
    let hi = (lo + 1).min(last);
    let frac = F::from_f64(pos - lo as f64);
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}
