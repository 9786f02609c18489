//! SVG plots of a run (plotters' SVG backend; text is laid out without
//! font files, so the plots need nothing installed).
//!
//! Every function takes plain row-major data and writes one SVG file
//! atomically; errors are messages naming the file. `scripts/render-plots.sh`
//! renders the SVGs to PNG to look at them.

mod curves;
mod diffusion;
mod heatmap;
mod scatter;

pub use curves::{QUANTILE_LEVELS, QuantileSeries, calibration, training_curves};
pub use diffusion::diffusion_along_path;
pub use heatmap::heatmap;
pub use scatter::{principal_plane, rollouts_by_bin};

use crate::csvio::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Panel pixel size.
const PANEL: (u32, u32) = (360, 300);
const DATA_COLOUR: RGBColor = RGBColor(40, 90, 170);
const SIM_COLOUR: RGBColor = RGBColor(230, 120, 20);
/// Caption and axis-label font size (pixels).
const FONT: u32 = 14;

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

/// `(min, max)` of the finite values (`None` if there are none).
fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    (lo <= hi).then_some((lo, hi))
}

/// `(min, max)` of the values with a 5% margin (a unit range if flat).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    match finite_range(values) {
        Some((lo, hi)) if hi > lo => {
            let pad = 0.05 * (hi - lo);
            (lo - pad, hi + pad)
        }
        Some((c, _)) => (c - 0.5, c + 0.5),
        None => (-0.5, 0.5),
    }
}

/// Rows × columns of a grid holding `panels` panels, at most 4 wide.
fn grid(panels: usize) -> (usize, usize) {
    let cols = panels.clamp(1, 4);
    (panels.div_ceil(cols), cols)
}

/// Tick positions of a log axis over `[lo, hi]` (`0 < lo < hi`): the
/// 1-2-5 values of each decade inside it, or every 1…9 multiple when the
/// range holds fewer than three of those, or `lo` and `hi` themselves when
/// it holds fewer than two of those either.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let inside = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (first..=last)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let coarse = inside(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        return coarse;
    }
    let fine = inside(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if fine.len() >= 2 { fine } else { vec![lo, hi] }
}

/// A tick label with at most three significant digits and no trailing
/// zeros: `0.002`, `0.25`, `40`, `1.5e-5`.
fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let exponent = v.abs().log10().floor() as i32;
    if !(-3..5).contains(&exponent) {
        let text = format!("{v:.2e}");
        let (mantissa, power) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{power}");
    }
    let decimals = (2 - exponent).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("msde-plots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_label_every_range() {
        assert_eq!(
            log_ticks(0.003, 0.3),
            vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
        );
        // Inside one 1-2-5 step: the 1…9 multiples.
        let t = log_ticks(0.0021, 0.0048);
        assert_eq!(t.len(), 2);
        assert!((t[0] - 0.003).abs() < 1e-15 && (t[1] - 0.004).abs() < 1e-15);
        // Narrower still: the ends.
        assert_eq!(log_ticks(0.0031, 0.0036), vec![0.0031, 0.0036]);
    }

    #[test]
    fn tick_labels_are_short() {
        let cases = [
            (0.002, "0.002"),
            (0.25, "0.25"),
            (40.0, "40"),
            (1.5e-5, "1.5e-5"),
            (0.0036, "0.0036"),
            (123456.0, "1.23e5"),
            (3.0000000000000004e-3, "0.003"),
        ];
        for (v, want) in cases {
            assert_eq!(tick_label(v), want, "{v}");
        }
    }
}
