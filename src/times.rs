//! Time values of snapshot tables and rollout files: their distinct times,
//! and matching a time given on the command line (`--exclude-times 0.6`,
//! `--t0 1`, `--t 0.6`) to one of them.
//!
//! A typed time matches a time of the data when it is within the grid's
//! tolerance of it: 1% of the smallest gap between the data's distinct
//! times, so `0.6` finds the bin stored as `0.6000000238` (f32) and never
//! its neighbour.

/// Fraction of the smallest gap between distinct times within which a
/// typed time matches.
const GAP_FRACTION: f64 = 0.01;

/// The distinct times of a table, ascending, and the matching tolerance.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeGrid {
    pub times: Vec<f64>,
    /// Half-width of the matching window: `GAP_FRACTION` of the smallest
    /// gap, or `1e-6 · max(1, |t|)` when there is only one time.
    pub tolerance: f64,
}

impl TimeGrid {
    /// The grid of the (finite) times `t`.
    pub fn new(t: impl IntoIterator<Item = f64>) -> Self {
        let mut times: Vec<f64> = t.into_iter().collect();
        times.sort_by(f64::total_cmp);
        times.dedup();
        let gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min);
        let tolerance = if gap.is_finite() {
            GAP_FRACTION * gap
        } else {
            1e-6 * times.first().map_or(1.0, |t| t.abs().max(1.0))
        };
        TimeGrid { times, tolerance }
    }

    /// Index of the time `want` matches, or an error that names `what` and
    /// lists the times.
    pub fn find(&self, want: f64, what: &str) -> Result<usize, String> {
        self.times
            .iter()
            .position(|&t| self.matches(t, want))
            .ok_or_else(|| {
                format!(
                    "{what}: no time of the data matches {want} (times: {})",
                    self.list()
                )
            })
    }

    /// Whether the time `t` of the data lies in the window around `at`.
    pub fn matches(&self, t: f64, at: f64) -> bool {
        (t - at).abs() <= self.tolerance
    }

    /// The times as `a, b, c`.
    pub fn list(&self) -> String {
        self.times
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_times_match_f32_bins_and_nothing_else() {
        let data = [0.0f32, 0.2, 0.4, 0.6, 0.6, 0.8];
        let grid = TimeGrid::new(data.iter().map(|&t| t as f64));
        assert_eq!(grid.times.len(), 5);
        assert_eq!(grid.find(0.6, "--t0").unwrap(), 3);
        assert_eq!(grid.find(0.0, "--t0").unwrap(), 0);
        let e = grid.find(0.5, "--exclude-times").unwrap_err();
        assert!(
            e.contains("--exclude-times: no time of the data matches 0.5"),
            "{e}"
        );
        assert!(e.contains("0.6000000238418579"), "{e}");
        assert!(grid.matches(0.6f32 as f64, 0.6));
        assert!(!grid.matches(0.4f32 as f64, 0.6));
        // One time: a relative window.
        let one = TimeGrid::new([7.0]);
        assert_eq!(one.find(7.0 + 1e-9, "t").unwrap(), 0);
        assert!(one.find(7.1, "t").is_err());
    }
}
