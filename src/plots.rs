//! SVG plots of a run (plotters' SVG backend; text is laid out without
//! font files, so the plots need nothing installed).
//!
//! Every function takes plain row-major data and writes one SVG file
//! atomically; errors are messages naming the file.

use crate::csvio::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Panel pixel size.
const PANEL: (u32, u32) = (360, 300);
const DATA_COLOUR: RGBColor = RGBColor(40, 90, 170);
const SIM_COLOUR: RGBColor = RGBColor(230, 120, 20);

/// Renders into an in-memory SVG and writes it atomically.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> Result<(), String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(root.clone())?;
        root.present().map_err(|e| e.to_string())?;
    }
    write_atomic(path, |w| w.write_all(svg.as_bytes()))
        .map_err(|e| format!("plot '{}': {e}", path.display()))
}

fn err(e: impl std::fmt::Display) -> String {
    format!("plotting failed: {e}")
}

/// `(min, max)` of the values with a 5% margin (a unit range if flat).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() || hi - lo <= 0.0 {
        let c = if lo.is_finite() { lo } else { 0.0 };
        return (c - 0.5, c + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Rows × columns of a grid holding `panels` panels, at most 4 wide.
fn grid(panels: usize) -> (usize, usize) {
    let cols = panels.clamp(1, 4);
    (panels.div_ceil(cols), cols)
}

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
                    ("sans-serif", 14),
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

/// Eigen-analysis of `D` along a path (the wild-type backbone): left, the
/// `top` largest eigenvalues against time; right, the path on coordinates
/// `axes` with the 1-σ ellipse of `D`'s 2×2 block on those axes, scaled by
/// `ellipse_scale`, at each point.
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
    ellipse_scale: f64,
) -> Result<(), String> {
    let top = top.clamp(1, d);
    let p = times.len();
    render(path, (2 * PANEL.0 + 120, PANEL.1 + 60), |root| {
        let (left, right) = root.split_horizontally(PANEL.0 + 60);
        let t_range = padded_range(times.iter().copied());
        let ev = (0..p).flat_map(|i| eigenvalues[i * d..i * d + top].iter().copied());
        let (_, ev_hi) = padded_range(ev);
        let mut chart = ChartBuilder::on(&left)
            .caption("eigenvalues of D along the path", ("sans-serif", 14))
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

        let ellipses: Vec<Vec<(f64, f64)>> = (0..p)
            .map(|i| {
                let dm = &diffusion[i * d * d..(i + 1) * d * d];
                let block = [
                    dm[axes.0 * d + axes.0],
                    dm[axes.0 * d + axes.1],
                    dm[axes.1 * d + axes.1],
                ];
                let c = (points[i * d + axes.0], points[i * d + axes.1]);
                ellipse(c, block, ellipse_scale)
            })
            .collect();
        let flat = || ellipses.iter().flatten();
        let x_range = padded_range(flat().map(|q| q.0));
        let y_range = padded_range(flat().map(|q| q.1));
        let mut chart = ChartBuilder::on(&right)
            .caption(
                format!("path and {ellipse_scale}·√D ellipses"),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(names.0)
            .y_desc(names.1)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                (0..p).map(|i| (points[i * d + axes.0], points[i * d + axes.1])),
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(
                ellipses
                    .into_iter()
                    .map(|e| Polygon::new(e, SIM_COLOUR.mix(0.25).filled())),
            )
            .map_err(err)?;
        Ok(())
    })
}

/// Outline of `{c + scale·√B u : |u| = 1}` for the symmetric 2×2 matrix
/// `B = [[b0, b1], [b1, b2]]` (negative eigenvalues clipped to 0).
fn ellipse(c: (f64, f64), [b0, b1, b2]: [f64; 3], scale: f64) -> Vec<(f64, f64)> {
    let mean = 0.5 * (b0 + b2);
    let radius = (0.25 * (b0 - b2).powi(2) + b1 * b1).sqrt();
    let (l1, l2) = ((mean + radius).max(0.0), (mean - radius).max(0.0));
    let angle = 0.5 * (2.0 * b1).atan2(b0 - b2);
    let (s, co) = angle.sin_cos();
    (0..=48)
        .map(|k| {
            let a = k as f64 / 48.0 * std::f64::consts::TAU;
            let (u, v) = (scale * l1.sqrt() * a.cos(), scale * l2.sqrt() * a.sin());
            (c.0 + co * u - s * v, c.1 + s * u + co * v)
        })
        .collect()
}

/// A value in [0, 1] as a colour (dark blue → teal → yellow).
fn colour_scale(v: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 4] = [
        (68.0, 1.0, 84.0),
        (49.0, 104.0, 142.0),
        (53.0, 183.0, 121.0),
        (253.0, 231.0, 37.0),
    ];
    let x = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: f64, b: f64| (a + f * (b - a)).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Heatmap of `values` (`times.len() × positions.len()`, time-major) over
/// time (x) and a position coordinate (y); `what` names the quantity.
pub fn heatmap(
    path: &Path,
    what: &str,
    position_name: &str,
    times: &[f64],
    positions: &[f64],
    values: &[f64],
) -> Result<(), String> {
    let (nt, nx) = (times.len(), positions.len());
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let cell = |g: &[f64], i: usize| {
        let step = if g.len() > 1 { g[1] - g[0] } else { 1.0 };
        (g[i] - 0.5 * step, g[i] + 0.5 * step)
    };
    render(path, (PANEL.0 + 200, PANEL.1 + 60), |root| {
        let (main, bar) = root.split_horizontally(PANEL.0 + 120);
        let (t0, t1) = (cell(times, 0).0, cell(times, nt - 1).1);
        let (x0, x1) = (cell(positions, 0).0, cell(positions, nx - 1).1);
        let mut chart = ChartBuilder::on(&main)
            .caption(format!("{what} over time and position"), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(t0..t1, x0..x1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("t")
            .y_desc(position_name)
            .disable_mesh()
            .draw()
            .map_err(err)?;
        chart
            .draw_series((0..nt).flat_map(|i| {
                (0..nx).map(move |j| {
                    let (ta, tb) = cell(times, i);
                    let (xa, xb) = cell(positions, j);
                    let c = colour_scale((values[i * nx + j] - lo) / span);
                    Rectangle::new([(ta, xa), (tb, xb)], c.filled())
                })
            }))
            .map_err(err)?;
        let mut legend = ChartBuilder::on(&bar)
            .margin(20)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..1.0, lo..lo + span)
            .map_err(err)?;
        legend
            .configure_mesh()
            .disable_x_axis()
            .disable_mesh()
            .y_desc(what)
            .draw()
            .map_err(err)?;
        legend
            .draw_series((0..64).map(|k| {
                let (a, b) = (k as f64 / 64.0, (k + 1) as f64 / 64.0);
                Rectangle::new(
                    [(0.0, lo + a * span), (1.0, lo + b * span)],
                    colour_scale(a).filled(),
                )
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// Training curves: one line per named series against the epoch, log y.
pub fn training_curves(path: &Path, series: &[(&str, &[f64])]) -> Result<(), String> {
    let epochs = series.iter().map(|s| s.1.len()).max().unwrap_or(0).max(2);
    let positive = || {
        series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let lo = positive().fold(f64::INFINITY, f64::min);
    let hi = positive().fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo * 0.8, hi * 1.25)
    } else {
        (1e-3, 1.0)
    };
    render(path, (PANEL.0 * 2, PANEL.1 + 60), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption("training curves", ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..(epochs - 1) as f64, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .draw()
            .map_err(err)?;
        for (k, (name, values)) in series.iter().enumerate() {
            let colour = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite() && **v > 0.0)
                        .map(|(e, &v)| (e as f64, v)),
                    colour.stroke_width(2),
                ))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("msde-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

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
    }

    #[test]
    fn every_plot_writes_an_svg_with_its_marks() {
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

        let p = temp("path.svg");
        let dm = [1.0, 0.2, 0.2, 0.5, 1.5, 0.0, 0.0, 0.2];
        let ev = [1.06, 0.44, 1.5, 0.2];
        let pts = [0.0, 0.0, 1.0, 0.1];
        diffusion_along_path(
            &p,
            2,
            (0, 1),
            ("z0", "z1"),
            &[0.0, 1.0],
            &pts,
            &ev,
            &dm,
            2,
            0.3,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.matches("<polygon").count() >= 2);
        assert!(svg.contains("λ2"));

        let p = temp("heat.svg");
        heatmap(
            &p,
            "tr D",
            "z1",
            &[0.0, 0.5],
            &[0.0, 1.0, 2.0],
            &[1., 2., 3., 4., 5., 6.],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.matches("<rect").count() >= 6 + 64);

        let p = temp("curves.svg");
        training_curves(
            &p,
            &[("train", &[1.0, 0.5, 0.25]), ("valid", &[1.2, 0.7, 0.4])],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("valid") && svg.contains("<polyline"));
    }
}
