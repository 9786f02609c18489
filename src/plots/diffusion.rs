//! `D` along a path: its eigenvalues against time, and its ellipses with
//! their principal axes on two coordinates, in equal-aspect axes.

use super::{FONT, PANEL, SIM_COLOUR, err, padded_range, render};
use plotters::prelude::*;
use std::path::Path;

/// Ellipses drawn along the path (evenly spaced over its points).
const ELLIPSES: usize = 8;
/// The largest drawn semi-axis as a fraction of the smallest spacing of
/// the drawn centres, so neighbouring ellipses do not overlap.
const FILL: f64 = 0.45;
/// Smallest side of the equal-aspect plotting area (pixels).
const MIN_PLOT_PX: u32 = 120;

/// Eigen-analysis of `D` along a path (the wild-type backbone): left, the
/// `top` largest eigenvalues against time; right, the path on coordinates
/// `axes` in equal-aspect axes with, at up to `ELLIPSES` points, the 1-σ
/// ellipse of the noise `N(0, Δt·B)` over a time step `Δt` and its two
/// principal axes (`B` the 2×2 block of `D` on `axes`). `Δt` is a round
/// value chosen so that neighbouring ellipses do not overlap, and printed
/// in the caption.
///
/// `times` (length p), `points` (p × d), `eigenvalues` (p × d, descending
/// per row), `diffusion` (p × d × d).
#[allow(clippy::too_many_arguments)]
pub fn diffusion_along_path(
    path: &Path,
    d: usize,
    axes: (usize, usize),
    names: (&str, &str),
    times: &[f64],
    points: &[f64],
    eigenvalues: &[f64],
    diffusion: &[f64],
    top: usize,
) -> Result<(), String> {
    let top = top.clamp(1, d);
    let p = times.len();
    render(path, (2 * PANEL.0 + 120, PANEL.1 + 60), |root| {
        let (left, right) = root.split_horizontally(PANEL.0 + 60);
        let t_range = padded_range(times.iter().copied());
        let ev = (0..p).flat_map(|i| eigenvalues[i * d..i * d + top].iter().copied());
        let (_, ev_hi) = padded_range(ev);
        let mut chart = ChartBuilder::on(&left)
            .caption("eigenvalues of D along the path", ("sans-serif", FONT))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(t_range.0..t_range.1, 0.0..ev_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("t")
            .y_desc("eigenvalue (per unit time)")
            .draw()
            .map_err(err)?;
        for k in 0..top {
            let colour = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    (0..p).map(|i| (times[i], eigenvalues[i * d + k])),
                    colour.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("λ{}", k + 1))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(err)?;

        let centre = |i: usize| (points[i * d + axes.0], points[i * d + axes.1]);
        let block = |i: usize| {
            let dm = &diffusion[i * d * d..(i + 1) * d * d];
            [
                dm[axes.0 * d + axes.0],
                dm[axes.0 * d + axes.1],
                dm[axes.1 * d + axes.1],
            ]
        };
        let shown = spread_indices(p, ELLIPSES);
        let dt = ellipse_time_step(
            &shown.iter().map(|&i| centre(i)).collect::<Vec<_>>(),
            &shown.iter().map(|&i| block(i)).collect::<Vec<_>>(),
        );
        let scale = dt.sqrt();
        let shapes: Vec<_> = shown
            .iter()
            .map(|&i| {
                (
                    ellipse(centre(i), block(i), scale),
                    principal_axes(centre(i), block(i), scale),
                )
            })
            .collect();
        let xs = shapes.iter().flat_map(|s| s.0.iter().map(|q| q.0));
        let ys = shapes.iter().flat_map(|s| s.0.iter().map(|q| q.1));
        let (x_range, y_range) = (
            padded_range(xs.chain((0..p).map(|i| centre(i).0))),
            padded_range(ys.chain((0..p).map(|i| centre(i).1))),
        );
        let area = right
            .titled(
                &format!("path and 1-σ noise ellipses over Δt = {dt} (equal axes)"),
                ("sans-serif", FONT),
            )
            .map_err(err)?;
        let (margin, x_label, y_label) = (8u32, 30u32, 40u32);
        let plot_px = |area: &DrawingArea<_, _>| {
            let (w, h) = area.dim_in_pixel();
            (
                w.saturating_sub(2 * margin + y_label).max(1),
                h.saturating_sub(2 * margin + x_label).max(1),
            )
        };
        // Shrink the area along the axis with room to spare (down to
        // MIN_PLOT_PX) so equal axes do not leave it mostly empty.
        let (w, h) = plot_px(&area);
        let per_pixel =
            ((x_range.1 - x_range.0) / f64::from(w)).max((y_range.1 - y_range.0) / f64::from(h));
        let need = |span: f64, have: u32| {
            ((span / per_pixel).ceil() as u32).clamp(MIN_PLOT_PX.min(have), have)
        };
        let (spare_x, spare_y) = (
            w - need(x_range.1 - x_range.0, w),
            h - need(y_range.1 - y_range.0, h),
        );
        let area = area.margin(
            spare_y / 2,
            spare_y - spare_y / 2,
            spare_x / 2,
            spare_x - spare_x / 2,
        );
        let (x_range, y_range) = equal_aspect(x_range, y_range, plot_px(&area));
        let mut chart = ChartBuilder::on(&area)
            .margin(margin)
            .x_label_area_size(x_label)
            .y_label_area_size(y_label)
            .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(names.0)
            .y_desc(names.1)
            .y_labels(5)
            .max_light_lines(0)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new((0..p).map(centre), BLACK.stroke_width(1)))
            .map_err(err)?;
        for (outline, principal) in shapes {
            chart
                .draw_series([Polygon::new(outline.clone(), SIM_COLOUR.mix(0.2).filled())])
                .map_err(err)?;
            chart
                .draw_series([PathElement::new(outline, SIM_COLOUR.stroke_width(1))])
                .map_err(err)?;
            chart
                .draw_series(
                    principal
                        .into_iter()
                        .map(|segment| PathElement::new(segment, BLACK.stroke_width(1))),
                )
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Up to `count` indices spread evenly over `0..p` (both ends included).
fn spread_indices(p: usize, count: usize) -> Vec<usize> {
    if p <= count {
        return (0..p).collect();
    }
    (0..count)
        .map(|k| (k * (p - 1) + (count - 1) / 2) / (count - 1))
        .collect()
}

/// The round time step `Δt` (1, 2 or 5 × 10^k, rounded down) at which the
/// largest 1-σ semi-axis `√(Δt λ_max)` is [`FILL`] times the smallest
/// spacing of the `centres` (1 if the blocks are all zero or the centres
/// coincide).
fn ellipse_time_step(centres: &[(f64, f64)], blocks: &[[f64; 3]]) -> f64 {
    let spacing = centres
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1))
        .filter(|s| *s > 0.0)
        .fold(f64::INFINITY, f64::min);
    let largest = blocks.iter().map(|b| eigen2(*b).0).fold(0.0f64, f64::max);
    if !spacing.is_finite() || largest <= 0.0 {
        return 1.0;
    }
    let exact = (FILL * spacing).powi(2) / largest;
    let decade = 10f64.powi(exact.log10().floor() as i32);
    let mantissa = [5.0, 2.0, 1.0]
        .into_iter()
        .find(|m| m * decade <= exact)
        .unwrap_or(1.0);
    let rounded = mantissa * decade;
    // Print it without binary noise (0.1, not 0.10000000000000002).
    format!("{rounded:.1e}").parse().unwrap_or(rounded)
}

/// Widens the shorter of two ranges about its centre so one data unit
/// spans as many pixels on both axes of a `plot_px` plotting area.
fn equal_aspect(x: (f64, f64), y: (f64, f64), plot_px: (u32, u32)) -> ((f64, f64), (f64, f64)) {
    let per_pixel = ((x.1 - x.0) / f64::from(plot_px.0)).max((y.1 - y.0) / f64::from(plot_px.1));
    let widen = |r: (f64, f64), px: u32| {
        let (mid, half) = (0.5 * (r.0 + r.1), 0.5 * per_pixel * f64::from(px));
        (mid - half, mid + half)
    };
    (widen(x, plot_px.0), widen(y, plot_px.1))
}

/// Eigen-decomposition of the symmetric 2×2 `[[b0, b1], [b1, b2]]`:
/// `(λ1, λ2, angle)`, `λ1 ≥ λ2` clipped at 0, `angle` the direction of the
/// first eigenvector.
fn eigen2([b0, b1, b2]: [f64; 3]) -> (f64, f64, f64) {
    let mean = 0.5 * (b0 + b2);
    let radius = (0.25 * (b0 - b2).powi(2) + b1 * b1).sqrt();
    let angle = 0.5 * (2.0 * b1).atan2(b0 - b2);
    ((mean + radius).max(0.0), (mean - radius).max(0.0), angle)
}

/// Outline of `{c + scale·√B u : |u| = 1}` for the symmetric 2×2 matrix
/// `B = [[b0, b1], [b1, b2]]` (negative eigenvalues clipped to 0).
fn ellipse(c: (f64, f64), block: [f64; 3], scale: f64) -> Vec<(f64, f64)> {
    let (l1, l2, angle) = eigen2(block);
    let (s, co) = angle.sin_cos();
    (0..=48)
        .map(|k| {
            let a = k as f64 / 48.0 * std::f64::consts::TAU;
            let (u, v) = (scale * l1.sqrt() * a.cos(), scale * l2.sqrt() * a.sin());
            (c.0 + co * u - s * v, c.1 + s * u + co * v)
        })
        .collect()
}

/// The ellipse's two principal axes as segments through `c`: the
/// eigenvectors of `B` scaled by `scale·√λ` on either side.
fn principal_axes(c: (f64, f64), block: [f64; 3], scale: f64) -> [Vec<(f64, f64)>; 2] {
    let (l1, l2, angle) = eigen2(block);
    let (s, co) = angle.sin_cos();
    let segment = |len: f64, (ux, uy): (f64, f64)| {
        vec![
            (c.0 - len * ux, c.1 - len * uy),
            (c.0 + len * ux, c.1 + len * uy),
        ]
    };
    [
        segment(scale * l1.sqrt(), (co, s)),
        segment(scale * l2.sqrt(), (-s, co)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::temp;
    use super::*;

    #[test]
    fn ellipse_axes_are_the_eigenvectors_scaled_by_root_eigenvalues() {
        // B = R diag(4, 1) Rᵀ with R a rotation by 0.5 rad.
        let (s, c) = 0.5f64.sin_cos();
        let b = [4.0 * c * c + s * s, 3.0 * s * c, 4.0 * s * s + c * c];
        let e = ellipse((1.0, -1.0), b, 1.0);
        // The first point is the major semi-axis: 2 · (cos, sin).
        assert!((e[0].0 - (1.0 + 2.0 * c)).abs() < 1e-12);
        assert!((e[0].1 - (-1.0 + 2.0 * s)).abs() < 1e-12);
        // Every point satisfies (p − c)ᵀ B⁻¹ (p − c) = 1.
        let det = b[0] * b[2] - b[1] * b[1];
        for (x, y) in e {
            let (u, v) = (x - 1.0, y + 1.0);
            let q = (b[2] * u * u - 2.0 * b[1] * u * v + b[0] * v * v) / det;
            assert!((q - 1.0).abs() < 1e-12, "{q}");
        }
        // The principal axes end on the ellipse, along the eigenvectors.
        let [major, minor] = principal_axes((1.0, -1.0), b, 1.0);
        assert!((major[1].0 - (1.0 + 2.0 * c)).abs() < 1e-12);
        assert!((major[1].1 - (-1.0 + 2.0 * s)).abs() < 1e-12);
        assert!((minor[1].0 - (1.0 - s)).abs() < 1e-12);
        assert!((minor[1].1 - (-1.0 + c)).abs() < 1e-12);
    }

    #[test]
    fn equal_aspect_gives_both_axes_one_scale() {
        let (x, y) = equal_aspect((0.0, 1.4), (-0.03, 0.03), (350, 280));
        let (ux, uy) = ((x.1 - x.0) / 350.0, (y.1 - y.0) / 280.0);
        assert!((ux - uy).abs() < 1e-12 && (ux - 0.004).abs() < 1e-12);
        assert!(x.0.abs() < 1e-12 && (x.1 - 1.4).abs() < 1e-12 && (y.0 + y.1).abs() < 1e-12);
    }

    #[test]
    fn time_step_keeps_ellipses_apart_and_round() {
        // Centres 0.2 apart, λ_max = 0.065: exact Δt = (0.09)²/0.065 ≈ 0.125.
        let centres = [(0.0, 0.0), (0.2, 0.0), (0.4, 0.0)];
        let blocks = [[0.065, 0.0, 0.007]; 3];
        assert_eq!(ellipse_time_step(&centres, &blocks), 0.1);
        assert_eq!(ellipse_time_step(&centres, &[[0.0; 3]; 3]), 1.0);
        assert_eq!(spread_indices(29, 8), vec![0, 4, 8, 12, 16, 20, 24, 28]);
        assert_eq!(spread_indices(3, 8), vec![0, 1, 2]);
    }

    #[test]
    fn path_plot_draws_ellipses_and_axes() {
        let p = temp("path.svg");
        let dm = [1.0, 0.2, 0.2, 0.5, 1.5, 0.0, 0.0, 0.2];
        let ev = [1.06, 0.44, 1.5, 0.2];
        let pts = [0.0, 0.0, 1.0, 0.1];
        diffusion_along_path(&p, 2, (0, 1), ("z0", "z1"), &[0.0, 1.0], &pts, &ev, &dm, 2).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert_eq!(svg.matches("<polygon").count(), 2);
        assert!(svg.contains("λ2") && svg.contains("Δt = "));
    }
}
