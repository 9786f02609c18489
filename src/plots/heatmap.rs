//! A quantity over time and one position coordinate, with its colour scale
//! and the cells without data masked.

use super::{FONT, PANEL, err, finite_range, render, tick_label};
use plotters::prelude::*;
use std::path::Path;

/// Colour of masked cells.
const MASKED: RGBColor = RGBColor(225, 225, 225);

/// A value in [0, 1] as a colour (viridis-like: dark blue → teal → yellow).
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
/// time (x) and a position coordinate (y), with a colour bar; `what` names
/// the quantity. Cells whose `observed` entry (same layout) is false are
/// drawn grey and left out of the colour range; `mask_note` says what grey
/// means (printed under the plot). Both grids are evenly spaced.
#[allow(clippy::too_many_arguments)]
pub fn heatmap(
    path: &Path,
    what: &str,
    position_name: &str,
    times: &[f64],
    positions: &[f64],
    values: &[f64],
    observed: &[bool],
    mask_note: &str,
) -> Result<(), String> {
    let (nt, nx) = (times.len(), positions.len());
    if nt == 0 || nx == 0 || values.len() != nt * nx || observed.len() != nt * nx {
        return Err(format!(
            "heatmap '{}': needs {nt}×{nx} values and observed flags, got {} and {}",
            path.display(),
            values.len(),
            observed.len()
        ));
    }
    let shown = values
        .iter()
        .zip(observed)
        .filter(|(_, o)| **o)
        .map(|(v, _)| *v);
    let (lo, hi) = finite_range(shown).unwrap_or((0.0, 1.0));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let cell = |g: &[f64], i: usize| {
        let step = if g.len() > 1 { g[1] - g[0] } else { 1.0 };
        (g[i] - 0.5 * step, g[i] + 0.5 * step)
    };
    render(path, (PANEL.0 + 230, PANEL.1 + 80), |root| {
        let (body, note) = root.split_vertically(PANEL.1 + 56);
        let (main, bar) = body.split_horizontally(PANEL.0 + 120);
        let (t0, t1) = (cell(times, 0).0, cell(times, nt - 1).1);
        let (x0, x1) = (cell(positions, 0).0, cell(positions, nx - 1).1);
        let mut chart = ChartBuilder::on(&main)
            .caption(
                format!("{what} over time and {position_name}"),
                ("sans-serif", FONT),
            )
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
                    let (v, seen) = (values[i * nx + j], observed[i * nx + j]);
                    let c = if seen && v.is_finite() {
                        colour_scale((v - lo) / span)
                    } else {
                        MASKED
                    };
                    Rectangle::new([(ta, xa), (tb, xb)], c.filled())
                })
            }))
            .map_err(err)?;
        let mut legend = ChartBuilder::on(&bar)
            .margin_top(34)
            .margin_bottom(38)
            .margin_left(8)
            .margin_right(8)
            .set_label_area_size(LabelAreaPosition::Right, 60)
            .build_cartesian_2d(0.0..1.0, lo..lo + span)
            .map_err(err)?;
        legend
            .configure_mesh()
            .disable_x_axis()
            .disable_mesh()
            .y_desc(what)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", FONT))
            .y_label_formatter(&|v| tick_label(*v))
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
        note.draw_text(
            mask_note,
            &("sans-serif", FONT).into_text_style(&note),
            (48, 2),
        )
        .map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::temp;
    use super::*;

    #[test]
    fn heatmap_draws_cells_bar_and_masked_cells() {
        let p = temp("heat.svg");
        let observed = [true, true, false, true, true, true];
        heatmap(
            &p,
            "tr D",
            "z1",
            &[0.0, 0.5],
            &[0.0, 1.0, 2.0],
            &[1., 2., 30., 4., 5., 6.],
            &observed,
            "grey: no data",
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        // Six cells and the 64 steps of the colour bar, all with a width.
        assert!(svg.matches("<rect").count() >= 6 + 64);
        assert!(!svg.contains("width=\"-"));
        assert!(svg.contains("grey: no data"));
        // The masked cell is grey, and its value (30) is not on the bar's
        // scale: the brightest colour is reached at 6.
        assert_eq!(svg.matches("#E1E1E1").count(), 1);
        assert!(svg.contains("#FDE725"));
        let e = heatmap(&p, "x", "y", &[0.0], &[0.0], &[1.0], &[], "").unwrap_err();
        assert!(e.contains("observed"), "{e}");
    }

    #[test]
    fn colour_scale_runs_from_dark_to_bright() {
        assert_eq!(colour_scale(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour_scale(1.0), RGBColor(253, 231, 37));
        assert_eq!(colour_scale(2.0), colour_scale(1.0));
    }
}
