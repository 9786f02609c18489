//! The held-out-time benchmark's Markdown table: per dataset and held-out
//! bin, one row per trained variant and per baseline, with the W1 mean, the
//! value of every seed, the mean wall time of `train` (failed runs
//! included) and, for every run that had one, what went wrong (so a diverged run is never hidden in a mean).

use super::runner::{HeldOut, ModelRun, VARIANTS};

/// A W1 value with three significant digits (`n/a` if not finite).
pub fn format_w1(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.2e}")
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// Mean of `v` (NaN if any value is NaN, so a failed run shows as `n/a`).
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn per_seed(v: &[f64]) -> String {
    v.iter()
        .map(|&x| format_w1(x))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `seed s: problem, problem; …` for the runs that had problems, else `—`.
fn problems(runs: &[ModelRun]) -> String {
    let text: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let p = r.problems();
            (!p.is_empty()).then(|| format!("seed {}: {}", r.seed, p.join(", ")))
        })
        .collect();
    if text.is_empty() {
        "—".into()
    } else {
        text.join("; ")
    }
}

/// The table of all held-out bins.
pub fn markdown(results: &[HeldOut]) -> String {
    let mut out = String::from(
        "| dataset | held-out t (points) | method | W1 mean | W1 per seed | train s (mean) | problems |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let mut first = true;
        let mut row = |method: String, w1: &[f64], seconds: String, problems: String| {
            let (dataset, held) = if first {
                (r.dataset.clone(), format!("{} ({})", r.time, r.n_held))
            } else {
                (String::new(), String::new())
            };
            first = false;
            out += &format!(
                "| {dataset} | {held} | {method} | {} | {} | {seconds} | {problems} |\n",
                format_w1(mean(w1)),
                per_seed(w1)
            );
        };
        for (variant, runs) in &r.runs {
            let w1: Vec<f64> = runs.iter().map(|r| r.w1).collect();
            let seconds: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
            let seconds = format!("{:.1}", mean(&seconds));
            row(variant.label.into(), &w1, seconds, problems(runs));
        }
        row(
            "OT interpolation of the neighbours".into(),
            &r.ot_interpolation,
            String::new(),
            String::new(),
        );
        row(
            format!("nearest bin (t = {})", r.nearest_time),
            &[r.nearest],
            String::new(),
            String::new(),
        );
    }
    out
}

/// One line per variant that ran: runs with any problem, out of all runs.
pub fn problem_counts(results: &[HeldOut]) -> String {
    VARIANTS
        .iter()
        .filter_map(|v| {
            let runs: Vec<&ModelRun> = results
                .iter()
                .flat_map(|r| &r.runs)
                .filter(|(w, _)| *w == v)
                .flat_map(|(_, runs)| runs)
                .collect();
            let bad = runs.iter().filter(|r| !r.problems().is_empty()).count();
            (!runs.is_empty())
                .then(|| format!("{}: {bad} of {} runs had a problem", v.label, runs.len()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_digits_and_failures_show() {
        assert_eq!(format_w1(0.09612), "0.096");
        assert_eq!(format_w1(1.5612), "1.56");
        assert_eq!(format_w1(15.61), "15.6");
        assert_eq!(format_w1(1528.0), "1.53e3");
        assert_eq!(format_w1(f64::NAN), "n/a");
        assert!(mean(&[1.0, f64::NAN]).is_nan());
    }
}
