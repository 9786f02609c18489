//! Energy distance between two clouds.

use super::check_cloud;
use crate::error::{Result, check_len};
use crate::float::Float;
use crate::linalg::squared_distance;

/// Energy distance `E = 2·mean‖xᵢ−yⱼ‖ − mean‖xᵢ−xᵢ′‖ − mean‖yⱼ−yⱼ′‖`
/// between the clouds `x` (`n×d`) and `y` (`m×d`), every mean over all
/// ordered pairs including `i = i′` (V-statistic, `dcor.energy_distance`'s
/// default), not its square root (scipy's 1-D `energy_distance` returns
/// `√E`). `E ≥ 0`, zero iff the clouds are equal as
/// distributions. Distances in `F`, sums in `f64`. Cost `O((n+m)² d)`.
pub fn energy_distance<F: Float>(x: &[F], y: &[F], d: usize) -> Result<F> {
    check_cloud(x, d, "x")?;
    check_cloud(y, d, "y")?;
    let between = mean_distance(x, y, d, false);
    let within_x = mean_distance(x, x, d, true);
    let within_y = mean_distance(y, y, d, true);
    Ok(F::from_f64(2.0 * between - within_x - within_y))
}

/// [`energy_distance`] and its gradient with respect to the first cloud:
/// `grad_x` (`n×d`, overwritten) receives
/// `∂E/∂xᵢ = (2/nm) Σⱼ u(xᵢ−yⱼ) − (2/n²) Σᵢ′ u(xᵢ−xᵢ′)` with
/// `u(v) = v/‖v‖` (0 at `v = 0`, the subgradient that keeps coincident
/// points where they are). What a loss that moves simulated points `x`
/// toward an observed cloud `y` needs. Sums in `f64`. Cost `O(n(n+m)d)`.
pub fn energy_distance_gradient<F: Float>(
    x: &[F],
    y: &[F],
    d: usize,
    grad_x: &mut [F],
) -> Result<F> {
    check_cloud(x, d, "x")?;
    check_cloud(y, d, "y")?;
    check_len(grad_x, x.len(), "grad_x")?;
    let (n, m) = ((x.len() / d) as f64, (y.len() / d) as f64);
    let within_y = mean_distance(y, y, d, true);
    let (mut between, mut within_x) = (0.0f64, 0.0f64);
    for (xi, gi) in x.chunks_exact(d).zip(grad_x.chunks_exact_mut(d)) {
        gi.fill(F::ZERO);
        between += pull(xi, y, d, F::from_f64(2.0 / (n * m)), gi);
        within_x += pull(xi, x, d, F::from_f64(-2.0 / (n * n)), gi);
    }
    Ok(F::from_f64(
        2.0 * between / (n * m) - within_x / (n * n) - within_y,
    ))
}

/// `g += w Σⱼ u(xᵢ−bⱼ)` over the rows `bⱼ` of `b`; returns `Σⱼ ‖xᵢ−bⱼ‖`.
fn pull<F: Float>(xi: &[F], b: &[F], d: usize, w: F, g: &mut [F]) -> f64 {
    let mut total = 0.0f64;
    for bj in b.chunks_exact(d) {
        let r = squared_distance(xi, bj).sqrt();
        if r > F::ZERO {
            total += r.to_f64();
            let scale = w / r;
            for ((g, &a), &c) in g.iter_mut().zip(xi).zip(bj) {
                *g += scale * (a - c);
            }
        }
    }
    total
}

/// Mean Euclidean distance over all ordered pairs of rows of `a` and `b`;
/// `same` (when `a` is `b`) sums each unordered pair once and doubles it.
fn mean_distance<F: Float>(a: &[F], b: &[F], d: usize, same: bool) -> f64 {
    let (n, m) = (a.len() / d, b.len() / d);
    let mut total = 0.0f64;
    for (i, ai) in a.chunks_exact(d).enumerate() {
        let start = if same { i + 1 } else { 0 };
        let mut row = 0.0f64;
        for bj in b.chunks_exact(d).skip(start) {
            row += squared_distance(ai, bj).sqrt().to_f64();
        }
        total += row;
    }
    if same {
        total *= 2.0;
    }
    total / (n as f64 * m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Family, Rng};

    /// The gradient against central differences of [`energy_distance`] in
    /// f64, and the value against it, on clouds of unequal sizes.
    #[test]
    fn gradient_matches_finite_differences_in_f64() {
        let (n, d) = (7, 3);
        let mut rng = Rng::stream(3, Family::Data, 0);
        let mut x = [0.0f64; 21];
        let mut y = [0.0f64; 15]; // m = 5 rows
        rng.fill_normal(&mut x);
        rng.fill_normal(&mut y);
        let mut g = [0.0f64; 21];
        let e = energy_distance_gradient(&x, &y, d, &mut g).unwrap();
        let reference = energy_distance(&x, &y, d).unwrap();
        assert!((e - reference).abs() <= 1e-14 * reference.abs().max(1.0));
        assert!(e > 0.0);
        let step = 1e-6;
        for i in 0..n * d {
            let keep = x[i];
            x[i] = keep + step;
            let up = energy_distance(&x, &y, d).unwrap();
            x[i] = keep - step;
            let down = energy_distance(&x, &y, d).unwrap();
            x[i] = keep;
            let fd = (up - down) / (2.0 * step);
            assert!(
                (g[i] - fd).abs() <= 1e-7,
                "coordinate {i}: {} vs {fd}",
                g[i]
            );
        }
    }
}
