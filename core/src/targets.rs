//! Covariance targets `D̂` for the diffusion loss (targets: no gradient flows
//! through them). Every target is a `d×d` covariance *rate* (per unit time).
//!
//! Both options start from a predicted end point `p_i` of source `x_i` over
//! its gap `h_i` and measure the spread of the observed end points around it:
//! - one-step (the seed's): `p_i = x_i + f_i h_i` with `f_i` the drift at
//!   `(x_i, t_i)` ([`predict_one_step`]). Exact only as `h → 0`: when the
//!   drift rotates, contracts or bends over the gap, `f·h` misses the mean
//!   end point by `O(h²)` per unit of spread, which shows up in `D̂` as a
//!   bias of relative size `O(h ‖∂f‖)` — tens of percent at imaging gaps.
//! - flow: `p_i = φ_{h_i}(x_i)`, the drift's own flow over the gap, by
//!   [`crate::integrate::rk4_flow`] (any [`crate::dynamics::Dynamics`], e.g.
//!   the learned model). Its residual `z_{t+h} − φ_h(z_t)` has covariance
//!   `∫₀ʰ J D Jᵀ ds` (J the flow's Jacobian), so `D̂ − D = O(h ‖∂f‖)` only
//!   through the propagation of the noise, not through the drift's curvature
//!   over the whole spread of the sources.
//!
//! Targets:
//! - pairwise (Option A, [`pairwise_targets`]): matched pairs `(x_i, y_i)`
//!   (tracked next frame or UOT-matched), `r_i = y_i − p_i`,
//!   `D̂_i = mean_{j ∈ N_k(i)} r_j r_jᵀ / h_j` over the `k` nearest sources
//!   of `x_i` in the minibatch (itself included, ties by index).
//! - plan-weighted (Option B, [`plan_weighted_targets`]): every target
//!   `y_j` weighted by the plan row, `r_ij = y_j − p_i`,
//!   `D̂_i = Σ_j Π_ij r_ij r_ijᵀ / (h_i Σ_j Π_ij)`. With `p_i` the plan's
//!   barycentre (`x_i + v̂_i h_i`, `v̂` the teacher velocity), this is the
//!   plan's conditional covariance of `y` given `x_i`, divided by `h_i`.
//!
//! **Entropic blur in Option B.** An entropic plan (cost `‖x−y‖²`,
//! regularisation `ε`) is never a sharp map: its conditional law of `y`
//! given `x` has a spread of its own. For Gaussian clouds of per-axis
//! variance `a` and `b` the plan is Gaussian with cross-covariance
//! `c = (−ε + √(ε² + 16ab))/4`, so `Var(y | x) = b − c²/a`. When the noise
//! over the gap is small against the cloud (`b = a + Dh`, `a ≫ Dh, ε`) this
//! is `≈ ε/2` per axis whatever `D` is: Option B reads `≈ ε/(2h) · I`, the
//! plan's blur, with `D` entering only at relative order `Dh/a`. It reads
//! `D` exactly at `ε = 2Dh` (then `c = a`: the plan is the Schrödinger-bridge
//! coupling of the true noise); a smaller `ε` under-reads `D` (the plan
//! tends to a map), a larger one over-reads it. Measured on a Brownian
//! process in `tests/plan_blur.rs`; the unit test
//! `plan_blur_enters_as_epsilon_over_two_h` is the `D = 0` case. Training
//! can set `ε = 2σ²h` from the learned noise between epochs
//! ([`crate::train::FitConfig::bridge_epsilon`]).
//!
//! Every target is then shrunk and regularised ([`shrink_target`]):
//! `D̂ ← (1−α) D̂ + α (tr D̂ / d) I + ε_t I`.

use crate::error::{Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::linalg::squared_distance;
use crate::model::config::MAX_DIM;

/// Largest neighbourhood `k` of [`pairwise_targets`].
pub const MAX_NEIGHBOURS: usize = 64;

/// `p_i = x_i + v_i h_i` for every row (`x`, `v`, `p` are `n×d`, `h` `n`).
pub fn predict_one_step<F: Float>(x: &[F], v: &[F], h: &[F], d: usize, p: &mut [F]) -> Result<()> {
    let n = h.len();
    let len = checked_mul(n, d, "x")?;
    check_len(x, len, "x")?;
    check_len(v, len, "v")?;
    check_len(p, len, "p")?;
    for (i, &hi) in h.iter().enumerate() {
        for c in i * d..(i + 1) * d {
            p[c] = x[c] + v[c] * hi;
        }
    }
    Ok(())
}

/// `D ← (1−α) D + α (tr D / d) I + ε I` for one `d×d` matrix.
pub fn shrink_target<F: Float>(dhat: &mut [F], d: usize, alpha: F, epsilon: F) {
    let mut trace = F::ZERO;
    for i in 0..d {
        trace += dhat[i * d + i];
    }
    let iso = alpha * trace / F::from_usize(d);
    for v in dhat.iter_mut() {
        *v *= F::ONE - alpha;
    }
    for i in 0..d {
        dhat[i * d + i] += iso + epsilon;
    }
}

/// `1 ≤ d ≤` [`MAX_DIM`].
fn check_dim(d: usize) -> Result<()> {
    if d == 0 || d > MAX_DIM {
        return Err(Error::bad_dim("d", "must be in 1..=64"));
    }
    Ok(())
}

/// Checks gaps: finite and positive.
fn check_gaps<F: Float>(h: &[F]) -> Result<()> {
    check_finite(h, "h")?;
    match h.iter().position(|&v| v <= F::ZERO) {
        None => Ok(()),
        Some(i) => {
            Err(Error::bad_dim("h", "gaps must be positive").with(crate::error::Detail::Index(i)))
        }
    }
}

/// Option A: `out` (`n×d×d`) receives `D̂_i`, the mean of `r_j r_jᵀ / h_j`
/// with `r_j = y_j − p_j` over the `k` nearest sources `x_j` of `x_i`
/// (`min(k, n)`, itself included; ties broken by lower index), shrunk by
/// `alpha` and regularised by `epsilon` ([`shrink_target`]).
///
/// Shapes: `x`, `y`, `p` are `n×d`, `h` has `n` positive entries;
/// `1 ≤ k ≤` [`MAX_NEIGHBOURS`]. Cost `O(n² (d + k) + n k d²)`.
#[allow(clippy::too_many_arguments)]
pub fn pairwise_targets<F: Float>(
    x: &[F],
    y: &[F],
    p: &[F],
    h: &[F],
    d: usize,
    k: usize,
    alpha: F,
    epsilon: F,
    out: &mut [F],
) -> Result<()> {
    check_dim(d)?;
    let n = h.len();
    let len = checked_mul(n, d, "x")?;
    check_len(x, len, "x")?;
    check_len(y, len, "y")?;
    check_len(p, len, "p")?;
    check_len(out, checked_mul(len, d, "out")?, "out")?;
    check_finite(x, "x")?;
    check_finite(y, "y")?;
    check_finite(p, "p")?;
    check_gaps(h)?;
    if k == 0 || k > MAX_NEIGHBOURS {
        return Err(Error::bad_config("k_neighbours", "must be in 1..=64"));
    }
    let k = k.min(n);
    let mut near = [(F::ZERO, 0usize); MAX_NEIGHBOURS];
    for i in 0..n {
        // Keep the k smallest (distance, index) in sorted order.
        let mut count = 0;
        let xi = &x[i * d..(i + 1) * d];
        for j in 0..n {
            let dist = squared_distance(xi, &x[j * d..(j + 1) * d]);
            if count == k && dist >= near[k - 1].0 {
                continue;
            }
            let mut pos = count.min(k - 1);
            while pos > 0 && near[pos - 1].0 > dist {
                near[pos] = near[pos - 1];
                pos -= 1;
            }
            near[pos] = (dist, j);
            count = (count + 1).min(k);
        }
        let dhat = &mut out[i * d * d..(i + 1) * d * d];
        dhat.fill(F::ZERO);
        let inv_k = F::ONE / F::from_usize(k);
        for &(_, j) in &near[..k] {
            let w = inv_k / h[j];
            add_outer(dhat, &y[j * d..(j + 1) * d], &p[j * d..(j + 1) * d], w, d);
        }
        shrink_target(dhat, d, alpha, epsilon);
    }
    Ok(())
}

/// `dhat += w (a − b)(a − b)ᵀ` (`d ≤` [`MAX_DIM`]).
fn add_outer<F: Float>(dhat: &mut [F], a: &[F], b: &[F], w: F, d: usize) {
    let mut diff = [F::ZERO; MAX_DIM];
    let diff = &mut diff[..d];
    for ((o, &x), &y) in diff.iter_mut().zip(a).zip(b) {
        *o = x - y;
    }
    for (row, &dr) in dhat.chunks_exact_mut(d).zip(diff.iter()) {
        let wr = w * dr;
        for (o, &dc) in row.iter_mut().zip(diff.iter()) {
            *o += wr * dc;
        }
    }
}

/// Option B: `out` (`n×d×d`) receives
/// `D̂_i = Σ_j Π_ij (y_j − p_i)(y_j − p_i)ᵀ / (h_i Σ_j Π_ij)`, shrunk and
/// regularised ([`shrink_target`]). A row with no plan mass gets the
/// regularisation alone (`ε I`).
///
/// Shapes: `p` `n×d`, `y` `m×d`, `plan` `n×m` (non-negative), `h` `n`.
#[allow(clippy::too_many_arguments)]
pub fn plan_weighted_targets<F: Float>(
    p: &[F],
    y: &[F],
    plan: &[F],
    h: &[F],
    d: usize,
    alpha: F,
    epsilon: F,
    out: &mut [F],
) -> Result<()> {
    check_dim(d)?;
    let n = h.len();
    check_len(p, checked_mul(n, d, "p")?, "p")?;
    if !y.len().is_multiple_of(d) {
        return Err(Error::bad_dim("y", "length is not a multiple of d"));
    }
    let m = y.len() / d;
    check_len(plan, checked_mul(n, m, "plan")?, "plan")?;
    check_len(out, checked_mul(n * d, d, "out")?, "out")?;
    check_finite(p, "p")?;
    check_finite(y, "y")?;
    check_finite(plan, "plan")?;
    check_gaps(h)?;
    if let Some(j) = plan.iter().position(|&v| v < F::ZERO) {
        return Err(Error::bad_dim("plan", "entries must be non-negative")
            .with(crate::error::Detail::Index(j)));
    }
    for i in 0..n {
        let row = &plan[i * m..(i + 1) * m];
        let mass: F = row.iter().copied().sum();
        let dhat = &mut out[i * d * d..(i + 1) * d * d];
        dhat.fill(F::ZERO);
        if mass > F::ZERO {
            let scale = F::ONE / (mass * h[i]);
            let pi = &p[i * d..(i + 1) * d];
            for (j, &pij) in row.iter().enumerate() {
                if pij > F::ZERO {
                    add_outer(dhat, &y[j * d..(j + 1) * d], pi, pij * scale, d);
                }
            }
        }
        shrink_target(dhat, d, alpha, epsilon);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
