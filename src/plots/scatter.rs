//! Point clouds per time bin: data against rollouts, on two coordinates or
//! on the data's two leading principal components.

use super::{DATA_COLOUR, FONT, PANEL, SIM_COLOUR, err, grid, padded_range, render};
use morphosde_core::linalg::sym_eigen;
use plotters::prelude::*;
use std::path::Path;

/// One panel per time bin: observed points and simulated points projected
/// on coordinates `axes` (both clouds `· × d` row-major).
pub fn rollouts_by_bin(
    path: &Path,
    d: usize,
    axes: (usize, usize),
    names: (&str, &str),
    bins: &[(f32, &[f32], &[f32])],
) -> Result<(), String> {
    let coords = |c: &[f32], a: usize| c.chunks(d).map(move |p| p[a] as f64).collect::<Vec<_>>();
    let all = |a: usize| {
        bins.iter()
            .flat_map(|(_, x, y)| coords(x, a).into_iter().chain(coords(y, a)))
            .collect::<Vec<_>>()
    };
    let (x_range, y_range) = (
        padded_range(all(axes.0).into_iter()),
        padded_range(all(axes.1).into_iter()),
    );
    let (rows, cols) = grid(bins.len());
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32);
    render(path, size, |root| {
        for (area, (t, data, sim)) in root.split_evenly((rows, cols)).iter().zip(bins) {
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("t = {t}: data (blue), model (orange)"),
                    ("sans-serif", FONT),
                )
                .margin(6)
                .x_label_area_size(28)
                .y_label_area_size(36)
                .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(names.0)
                .y_desc(names.1)
                .max_light_lines(0)
                .draw()
                .map_err(err)?;
            for (cloud, colour) in [(sim, SIM_COLOUR), (data, DATA_COLOUR)] {
                let pts = coords(cloud, axes.0).into_iter().zip(coords(cloud, axes.1));
                chart
                    .draw_series(pts.map(|p| Circle::new(p, 2, colour.mix(0.45).filled())))
                    .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// The plane of a cloud's two leading principal components.
pub struct PrincipalPlane {
    d: usize,
    mean: Vec<f64>,
    /// The two unit directions (`2 × d`).
    axes: Vec<f64>,
    /// Share of the total variance along each direction.
    pub explained: [f64; 2],
}

/// The two leading principal components of `points` (`n × d`, `n ≥ 2`,
/// `d ≥ 2`): eigenvectors of the sample covariance, `O(n d² + d³)`.
pub fn principal_plane(points: &[f32], d: usize) -> Result<PrincipalPlane, String> {
    let n = points.len() / d.max(1);
    if d < 2 || n < 2 {
        return Err(format!(
            "principal plane: needs d ≥ 2 and two points (d = {d}, n = {n})"
        ));
    }
    let mut mean = vec![0.0f64; d];
    for p in points.chunks_exact(d) {
        for (m, &x) in mean.iter_mut().zip(p) {
            *m += f64::from(x) / n as f64;
        }
    }
    let mut cov = vec![0.0f64; d * d];
    for p in points.chunks_exact(d) {
        for i in 0..d {
            let a = f64::from(p[i]) - mean[i];
            for j in 0..d {
                cov[i * d + j] += a * (f64::from(p[j]) - mean[j]) / (n - 1) as f64;
            }
        }
    }
    let (mut w, mut v) = (vec![0.0f64; d], vec![0.0f64; d * d]);
    sym_eigen(&mut cov, d, &mut w, &mut v).map_err(|e| format!("principal plane: {e}"))?;
    let total: f64 = w.iter().map(|x| x.max(0.0)).sum();
    let share = |k: usize| {
        if total > 0.0 {
            w[k].max(0.0) / total
        } else {
            0.0
        }
    };
    let axes = (0..2)
        .flat_map(|k| (0..d).map(move |i| (k, i)))
        .map(|(k, i)| v[i * d + k]);
    Ok(PrincipalPlane {
        d,
        mean,
        axes: axes.collect(),
        explained: [share(0), share(1)],
    })
}

impl PrincipalPlane {
    /// Coordinates of `cloud` (`m × d`) in the plane (`m × 2`).
    pub fn project(&self, cloud: &[f32]) -> Vec<f32> {
        let d = self.d;
        cloud
            .chunks_exact(d)
            .flat_map(|p| {
                (0..2).map(move |k| {
                    (0..d)
                        .map(|i| (f64::from(p[i]) - self.mean[i]) * self.axes[k * d + i])
                        .sum::<f64>() as f32
                })
            })
            .collect()
    }

    /// Axis names with the variance share, e.g. `PC1 (72%)`.
    pub fn names(&self) -> [String; 2] {
        [1, 2].map(|k| format!("PC{k} ({:.0}%)", 100.0 * self.explained[k - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp;
    use super::*;

    #[test]
    fn principal_plane_finds_the_spread_directions() {
        // Points on the line through (1, 2, 3) along (0, 0.6, 0.8), plus a
        // smaller spread along (1, 0, 0): PC1 is the line, PC2 the x axis.
        let mut pts = Vec::new();
        for k in 0..11 {
            let s = k as f32 - 5.0;
            let x = if k % 2 == 0 { 0.5 } else { -0.5 };
            pts.extend([1.0 + x, 2.0 + 0.6 * s, 3.0 + 0.8 * s]);
        }
        let plane = principal_plane(&pts, 3).unwrap();
        let proj = plane.project(&pts);
        for (k, p) in proj.chunks(2).enumerate() {
            let s = k as f32 - 5.0;
            let x: f32 = if k % 2 == 0 { 0.5 } else { -0.5 };
            let mean_x: f32 = (6.0 * 0.5 - 5.0 * 0.5) / 11.0;
            assert!((p[0].abs() - s.abs()).abs() < 1e-4, "{p:?}");
            assert!((p[1].abs() - (x - mean_x).abs()).abs() < 1e-4, "{p:?}");
        }
        assert!(plane.explained[0] > plane.explained[1]);
        assert!((plane.explained[0] + plane.explained[1] - 1.0).abs() < 1e-9);
        assert!(principal_plane(&pts[..3], 3).is_err());
    }

    #[test]
    fn rollouts_draw_every_point() {
        let p = temp("bins.svg");
        let data = [0.0f32, 0.0, 1.0, 1.0, 2.0, 0.5];
        let sim = [0.5f32, 0.1, 1.5, 1.2];
        rollouts_by_bin(
            &p,
            2,
            (0, 1),
            ("z0", "z1"),
            &[(0.0, &data, &sim), (0.2, &sim, &data)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert_eq!(svg.matches("<circle").count(), 2 * (3 + 2));
        assert!(svg.contains("t = 0.2"));
    }
}
