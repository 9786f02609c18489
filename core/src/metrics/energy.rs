//! Energy distance between two clouds.

use super::check_cloud;
use crate::error::Result;
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
