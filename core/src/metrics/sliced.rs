//! Sliced Wasserstein distance of order 2 between two clouds.

use super::check_cloud;
use crate::error::{Arena, Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::rng::{Family, Rng};

/// Workspace elements of [`sliced_wasserstein`] (`projections` directions
/// in `d` dimensions, clouds of `n` and `m` points);
/// [`sliced_wasserstein_with`] needs `n + m`.
pub fn sliced_wasserstein_workspace_len(n: usize, m: usize, d: usize, projections: usize) -> usize {
    projections
        .saturating_mul(d)
        .saturating_add(n)
        .saturating_add(m)
}

/// `projections` random unit directions in `d` dimensions into `out`
/// (`projections×d`, row `l` is direction `l`): row `l` is a standard normal
/// vector from stream `(seed, Projection, l)`, normalised.
pub fn random_directions<F: Float>(d: usize, seed: u64, out: &mut [F]) -> Result<()> {
    if d == 0 {
        return Err(Error::bad_dim("d", "dimension is zero"));
    }
    if !out.len().is_multiple_of(d) {
        return Err(Error::bad_dim(
            "directions",
            "length is not a multiple of d",
        ));
    }
    let mut cursor = Rng::stream(seed, Family::Projection, 0);
    for row in out.chunks_exact_mut(d) {
        let mut rng = cursor.clone();
        cursor.jump_to_next_index();
        // A zero vector has probability zero; draw again if it happens.
        loop {
            rng.fill_normal(row);
            let norm = row.iter().map(|&x| x * x).sum::<F>().sqrt();
            if norm > F::ZERO {
                row.iter_mut().for_each(|x| *x /= norm);
                break;
            }
        }
    }
    Ok(())
}

/// Sliced Wasserstein distance of order 2 with `projections` seeded random
/// directions ([`random_directions`]); see [`sliced_wasserstein_with`].
pub fn sliced_wasserstein<F: Float>(
    x: &[F],
    y: &[F],
    d: usize,
    projections: usize,
    seed: u64,
    workspace: &mut [F],
) -> Result<F> {
    let n = check_cloud(x, d, "x")?;
    let m = check_cloud(y, d, "y")?;
    if projections == 0 {
        return Err(Error::bad_config("projections", "must be at least 1"));
    }
    let mut arena = Arena::new(workspace);
    let directions = arena.take(checked_mul(projections, d, "projections")?)?;
    let rest = arena.take(n + m)?;
    random_directions(d, seed, directions)?;
    sliced_wasserstein_with(x, y, d, directions, rest)
}

/// `(mean over directions θ of W₂²(θ#μ, θ#ν))^½` for the uniform empirical
/// measures `μ` of `x` (`n×d`) and `ν` of `y` (`m×d`), given the directions
/// (`L×d`, used as given, like POT's `projections` argument, transposed).
/// The 1-D `W₂²` is exact for `n ≠ m` (integral of the squared difference
/// of the quantile functions). Workspace: `n + m` elements.
pub fn sliced_wasserstein_with<F: Float>(
    x: &[F],
    y: &[F],
    d: usize,
    directions: &[F],
    workspace: &mut [F],
) -> Result<F> {
    let n = check_cloud(x, d, "x")?;
    let m = check_cloud(y, d, "y")?;
    let l = directions.len() / d;
    if l == 0 {
        return Err(Error::bad_dim("directions", "no directions"));
    }
    check_len(directions, l * d, "directions")?;
    check_finite(directions, "directions")?;
    let mut arena = Arena::new(workspace);
    let px = arena.take(n)?;
    let py = arena.take(m)?;
    let mut total = 0.0f64;
    for theta in directions.chunks_exact(d) {
        project(x, theta, px);
        project(y, theta, py);
        total += w2_squared_sorted(px, py);
    }
    Ok(F::from_f64(libm::sqrt(total / l as f64)))
}

/// `out_i = ⟨row_i, θ⟩`, then sorted ascending.
fn project<F: Float>(cloud: &[F], theta: &[F], out: &mut [F]) {
    for (o, row) in out.iter_mut().zip(cloud.chunks_exact(theta.len())) {
        *o = row.iter().zip(theta).map(|(&a, &b)| a * b).sum();
    }
    // Finite inputs give finite projections (or ±inf on overflow, which
    // still compare); NaN cannot occur, so the order is total.
    out.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
}

/// `∫₀¹ (U⁻¹(s) − V⁻¹(s))² ds` for sorted samples `u` (n) and `v` (m) with
/// uniform weights: the quantile functions are step functions with breaks at
/// `i/n` and `j/m`; positions are counted in units of `1/(n m)` exactly.
fn w2_squared_sorted<F: Float>(u: &[F], v: &[F]) -> f64 {
    let (n, m) = (u.len() as u64, v.len() as u64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut pos = 0u64;
    let mut total = 0.0f64;
    while i < u.len() && j < v.len() {
        let end_u = (i as u64 + 1) * m;
        let end_v = (j as u64 + 1) * n;
        let end = end_u.min(end_v);
        let diff = u[i].to_f64() - v[j].to_f64();
        total += (end - pos) as f64 * diff * diff;
        pos = end;
        if end_u == end {
            i += 1;
        }
        if end_v == end {
            j += 1;
        }
    }
    total / (n as f64 * m as f64)
}
