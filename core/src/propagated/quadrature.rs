//! The nodes of a gap: the weights of the quadrature over the substep
//! nodes `s_k = k h/N`, the nodes' times, the gap's midpoint state, and the
//! checks on substeps and gaps every part of the propagated map makes.

use crate::error::{Detail, Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;

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
/// [`propagate`](super::propagate)'s node states are reached, for evaluating `D` along the path.
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

/// Each row's state at the middle of its gap from [`propagate`](super::propagate)'s node
/// states (`rows×(N+1)×d`): node `N/2` for even `N`, the mean of nodes
/// `(N−1)/2` and `(N+1)/2` for odd `N` (the midpoint to `O(h²)`), into
/// `z_mid` (`rows×d`), and the time `t_r + h_r/2` into `t_mid` (`rows`).
/// Where [`propagate_frozen`](super::propagate_frozen) freezes the Jacobian and where a `D` held
/// constant over the gap ([`DiffusionAt::Constant`](super::DiffusionAt::Constant)) stands for the path's
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
pub(super) fn write_midpoints<F: Float>(
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

pub(super) fn check_substeps(substeps: usize) -> Result<()> {
    if substeps == 0 {
        return Err(Error::bad_config("substeps", "must be at least 1"));
    }
    if substeps.checked_add(1).is_none() {
        return Err(Error::bad_config("substeps", "too large"));
    }
    Ok(())
}

/// Every gap finite and positive.
pub(super) fn check_gaps<F: Float>(h: &[F]) -> Result<()> {
    check_finite(h, "h")?;
    match h.iter().position(|&x| x <= F::ZERO) {
        None => Ok(()),
        Some(i) => {
            Err(Error::bad_config("h", "frame gaps must be positive").with(Detail::Index(i)))
        }
    }
}
