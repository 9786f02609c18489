//! The scoring and the two baselines of the held-out-time task:
//! - [`w1`]: the exact Wasserstein-1 distance (Euclidean cost) between two
//!   uniform clouds, the task's score;
//! - [`OtInterpolation`]: displacement interpolation between the bins on
//!   either side of the held-out time — the exact optimal coupling for the
//!   squared Euclidean cost (uniform weights), each coupled pair `(x_i,
//!   y_j)` moved to `(1 − λ) x_i + λ y_j` at the held-out time's fraction
//!   `λ` of the gap, carrying the coupling's mass `π_ij`;
//! - [`nearest_bin`]: the observed neighbour nearer in time (the earlier on
//!   a tie), used as the prediction as it is.

use morphosde_core::metrics::{GroundCost, PlanEntry, emd, emd_workspace_len};
use morphosde_core::rng::{Family, Rng};

/// Exact W1 between the uniform clouds `a` (`n×d`) and `b` (`m×d`).
pub fn w1(a: &[f32], b: &[f32], d: usize) -> Result<f64, String> {
    let len = emd_workspace_len(a.len() / d, b.len() / d);
    let (mut floats, mut indices) = (vec![0.0; len.floats], vec![0u32; len.indices]);
    let ground = GroundCost::Euclidean;
    emd(a, None, b, None, d, ground, None, &mut floats, &mut indices)
        .map(|out| out.cost)
        .map_err(|e| format!("Wasserstein-1: {e}"))
}

/// Displacement interpolation between two clouds at one fraction: the
/// support points of the interpolated measure and their masses.
#[derive(Clone, Debug, PartialEq)]
pub struct OtInterpolation {
    pub d: usize,
    /// `k×d`, one row per coupled pair with positive mass.
    pub points: Vec<f32>,
    /// `k` masses summing to one.
    pub mass: Vec<f64>,
}

impl OtInterpolation {
    /// The interpolation between `before` (`n×d`) and `after` (`m×d`) at
    /// fraction `lambda` (0 = `before`, 1 = `after`).
    pub fn new(before: &[f32], after: &[f32], d: usize, lambda: f64) -> Result<Self, String> {
        let (n, m) = (before.len() / d, after.len() / d);
        let len = emd_workspace_len(n, m);
        let (mut floats, mut indices) = (vec![0.0; len.floats], vec![0u32; len.indices]);
        let mut plan = vec![PlanEntry::default(); n + m - 1];
        let out = emd(
            before,
            None,
            after,
            None,
            d,
            GroundCost::SquaredEuclidean,
            Some(&mut plan),
            &mut floats,
            &mut indices,
        )
        .map_err(|e| format!("OT coupling: {e}"))?;
        let plan = &plan[..out.plan_len];
        let mut points = Vec::with_capacity(plan.len() * d);
        for e in plan {
            let x = &before[e.source as usize * d..][..d];
            let y = &after[e.target as usize * d..][..d];
            points.extend(
                x.iter()
                    .zip(y)
                    .map(|(&p, &q)| ((1.0 - lambda) * p as f64 + lambda * q as f64) as f32),
            );
        }
        Ok(OtInterpolation {
            d,
            points,
            mass: plan.iter().map(|e| e.mass).collect(),
        })
    }

    /// `count` points drawn independently with probabilities `mass` from
    /// stream `(seed, Projection, 0)`.
    pub fn sample(&self, count: usize, seed: u64) -> Vec<f32> {
        let mut cumulative = Vec::with_capacity(self.mass.len());
        let mut total = 0.0;
        for &m in &self.mass {
            total += m;
            cumulative.push(total);
        }
        let mut rng = Rng::stream(seed, Family::Projection, 0);
        let mut out = Vec::with_capacity(count * self.d);
        for _ in 0..count {
            let u = rng.uniform() * total;
            let k = cumulative
                .partition_point(|&c| c <= u)
                .min(self.mass.len() - 1);
            out.extend_from_slice(&self.points[k * self.d..(k + 1) * self.d]);
        }
        out
    }
}

/// Which neighbour of the held-out time `t` (between `before` and `after`)
/// is nearer in time: `false` for `before` (also on a tie), `true` for
/// `after`.
pub fn nearest_bin(before: f64, t: f64, after: f64) -> bool {
    after - t < t - before
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cloud of `n` points in 2-D spread over about ±0.1.
    fn cloud(n: usize) -> Vec<f32> {
        let mut rng = Rng::stream(7, Family::Data, 0);
        (0..2 * n).map(|_| 0.05 * rng.normal() as f32).collect()
    }

    fn shifted(c: &[f32], by: [f32; 2]) -> Vec<f32> {
        c.iter().enumerate().map(|(k, v)| v + by[k % 2]).collect()
    }

    #[test]
    fn ot_interpolation_recovers_a_translating_cloud_and_nearest_bin_misses_it() {
        // Bins at t = 0, 1, 2: the cloud moves by (1, 0.5) per unit time.
        let x = cloud(150);
        let (held, after) = (shifted(&x, [1.0, 0.5]), shifted(&x, [2.0, 1.0]));
        let interp = OtInterpolation::new(&x, &after, 2, 0.5).unwrap();
        // The coupling of a translation is the identity: the interpolated
        // measure is the held-out cloud itself.
        assert_eq!(interp.mass.len(), 150);
        let support = w1(&interp.points, &held, 2).unwrap();
        assert!(support < 1e-6, "{support}");
        // Sampled (with repeats) it stays close; the nearest bin is off by
        // the translation's length, exactly.
        let sampled = w1(&interp.sample(150, 3), &held, 2).unwrap();
        let step = (1.0f64 + 0.25).sqrt();
        assert!(sampled < 0.1 * step, "{sampled}");
        assert_ne!(interp.sample(150, 3), interp.sample(150, 4));
        assert!(!nearest_bin(0.0, 1.0, 2.0));
        assert!((w1(&x, &held, 2).unwrap() - step).abs() < 1e-5);
    }

    #[test]
    fn interpolation_fraction_and_nearest_side() {
        // Two points each side, fraction 0.25: a quarter of the way.
        let before = [0.0f32, 0.0, 1.0, 0.0];
        let after = [0.0f32, 4.0, 1.0, 4.0];
        let interp = OtInterpolation::new(&before, &after, 2, 0.25).unwrap();
        let mut ys: Vec<f32> = interp.points.iter().skip(1).step_by(2).copied().collect();
        ys.sort_by(f32::total_cmp);
        assert_eq!(ys, [1.0, 1.0]);
        assert!((interp.mass.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(nearest_bin(0.0, 1.5, 2.0));
        assert!(!nearest_bin(0.0, 0.5, 2.0));
    }
}
