//! Curves: training losses against the epoch, and the calibration of the
//! learned `D` (quantiles of its error against local targets over time).

use super::{FONT, PANEL, err, finite_range, log_ticks, padded_range, render, tick_label};
use plotters::prelude::*;
use std::path::Path;

/// Training curves: one line per named series against the epoch (integer
/// ticks), log y with labelled ticks.
pub fn training_curves(path: &Path, series: &[(&str, &[f64])]) -> Result<(), String> {
    let epochs = series.iter().map(|s| s.1.len()).max().unwrap_or(0).max(2);
    let positive = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| *v > 0.0);
    let (lo, hi) = match finite_range(positive) {
        Some((lo, hi)) if hi > lo => (lo * 0.8, hi * 1.25),
        Some((v, _)) => (v * 0.5, v * 2.0),
        None => (1e-3, 1.0),
    };
    let last = (epochs - 1) as u32;
    render(path, (PANEL.0 * 2, PANEL.1 + 60), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption("training curves", ("sans-serif", FONT))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(64)
            .build_cartesian_2d(
                0..last,
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss (log scale)")
            .x_labels(last.min(10) as usize + 1)
            .y_label_formatter(&|v| tick_label(*v))
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
                        .map(|(e, &v)| (e as u32, v)),
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

/// Quantile levels of a [`QuantileSeries`]: the band's ends, the box's
/// ends and the median.
pub const QUANTILE_LEVELS: [f64; 5] = [0.1, 0.25, 0.5, 0.75, 0.9];

/// One named series of the calibration plot: at each x, the quantiles at
/// [`QUANTILE_LEVELS`] of an error over minibatches.
pub struct QuantileSeries<'a> {
    pub name: &'a str,
    pub quantiles: &'a [[f64; 5]],
}

/// Calibration plot: for each series, the median of an error against `x`
/// (lines with markers), its 25–75% quantiles as a dark band and its
/// 10–90% quantiles as a light band. `x` is shared by every series.
pub fn calibration(
    path: &Path,
    title: &str,
    x_name: &str,
    y_name: &str,
    x: &[f64],
    series: &[QuantileSeries<'_>],
) -> Result<(), String> {
    if let Some(s) = series.iter().find(|s| s.quantiles.len() != x.len()) {
        return Err(format!(
            "calibration plot '{}': series '{}' has {} points for {} x values",
            path.display(),
            s.name,
            s.quantiles.len(),
            x.len()
        ));
    }
    let x_range = padded_range(x.iter().copied());
    let all = series
        .iter()
        .flat_map(|s| s.quantiles.iter().flatten().copied());
    let y_hi = padded_range(all.chain([0.0])).1;
    render(path, (PANEL.0 * 2, PANEL.1 + 60), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", FONT))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range.0..x_range.1, 0.0..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_name)
            .y_desc(y_name)
            .y_label_formatter(&|v| tick_label(*v))
            .draw()
            .map_err(err)?;
        for (k, s) in series.iter().enumerate() {
            let colour = Palette99::pick(k).to_rgba();
            let band = |a: usize, b: usize| {
                let upper = x.iter().zip(s.quantiles).map(|(&x, q)| (x, q[b]));
                let lower = x.iter().zip(s.quantiles).rev().map(|(&x, q)| (x, q[a]));
                upper.chain(lower).collect::<Vec<_>>()
            };
            chart
                .draw_series([Polygon::new(band(0, 4), colour.mix(0.12).filled())])
                .map_err(err)?;
            chart
                .draw_series([Polygon::new(band(1, 3), colour.mix(0.25).filled())])
                .map_err(err)?;
            let median: Vec<(f64, f64)> =
                x.iter().zip(s.quantiles).map(|(&x, q)| (x, q[2])).collect();
            chart
                .draw_series(LineSeries::new(median.clone(), colour.stroke_width(2)))
                .map_err(err)?
                .label(format!("{}: median, 25–75%, 10–90%", s.name))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour));
            chart
                .draw_series(
                    median
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::temp;
    use super::*;

    #[test]
    fn training_curves_have_integer_epochs_and_labelled_log_ticks() {
        let p = temp("curves.svg");
        let train: Vec<f64> = (0..40).map(|e| 0.004 - 0.00002 * e as f64).collect();
        let valid: Vec<f64> = (0..40).map(|e| 0.0045 - 0.00001 * e as f64).collect();
        training_curves(&p, &[("train", &train), ("valid", &valid)]).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("valid") && svg.contains("<polyline"));
        // Epoch labels are integers; the loss axis (0.0025…0.0056) has at
        // least two labels. (plotters writes each label on its own line.)
        let lines: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(lines.contains(&"10") && !lines.contains(&"10.0"), "{svg}");
        for label in ["0.003", "0.004", "0.005"] {
            assert!(lines.contains(&label), "{label}: {svg}");
        }
    }

    #[test]
    fn calibration_draws_bands_and_medians() {
        let p = temp("calibration.svg");
        let q = [[0.1, 0.2, 0.3, 0.4, 0.5], [0.2, 0.3, 0.4, 0.5, 0.6]];
        let series = [
            QuantileSeries {
                name: "model",
                quantiles: &q,
            },
            QuantileSeries {
                name: "truth",
                quantiles: &q,
            },
        ];
        calibration(&p, "calibration", "t", "error", &[0.0, 0.2], &series).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert_eq!(svg.matches("<polygon").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("truth: median"));
        let e = calibration(&p, "c", "t", "e", &[0.0], &series).unwrap_err();
        assert!(e.contains("'model' has 2 points for 1"), "{e}");
    }
}
