//! `morphosde evaluate`: scores two point clouds against each other (e.g.
//! held-out observations against rollouts made anywhere) with the energy
//! distance and the sliced Wasserstein distance (`morphosde_core::metrics`).
//!
//! Input: two CSV files; the coordinates are every column, or `--columns`.
//! With `--time-column` and `--time`, only the rows at that time are used
//! (e.g. one observation bin against the rollouts' states at its time).
//! Output: a one-line JSON object on stdout, also written to `--out` if given.

use crate::csvio::{Table, read_table, write_atomic};
use clap::Args;
use morphosde_core::metrics::{
    energy_distance, sliced_wasserstein, sliced_wasserstein_workspace_len,
};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// First cloud (CSV; e.g. held-out observations).
    #[arg(long)]
    pub a: PathBuf,
    /// Second cloud (CSV; e.g. rollouts).
    #[arg(long)]
    pub b: PathBuf,
    /// Coordinate columns, comma-separated names or 0-based numbers, looked
    /// up in each file (default: every column except --time-column).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Time column (name or number) for --time.
    #[arg(long, requires = "time")]
    pub time_column: Option<String>,
    /// Use only rows whose time is within 1e-6 (relative) of this value.
    #[arg(long, requires = "time_column", allow_negative_numbers = true)]
    pub time: Option<f64>,
    /// Random directions of the sliced Wasserstein distance.
    #[arg(long, default_value_t = 128)]
    pub projections: usize,
    /// Seed of the directions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Metrics JSON output file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The selected rows and coordinates of one file, row-major.
fn cloud(table: &Table, args: &EvaluateArgs, what: &str) -> Result<(Vec<f64>, usize), String> {
    let time_col = match &args.time_column {
        Some(spec) => Some(
            table
                .column_index(spec)
                .map_err(|e| format!("{what}: {e}"))?,
        ),
        None => None,
    };
    let cols: Vec<usize> = match &args.columns {
        Some(specs) => specs
            .iter()
            .map(|s| table.column_index(s).map_err(|e| format!("{what}: {e}")))
            .collect::<Result<_, _>>()?,
        None => (0..table.cols).filter(|&c| Some(c) != time_col).collect(),
    };
    if cols.is_empty() {
        return Err(format!("{what}: no coordinate columns"));
    }
    let mut z = Vec::new();
    for r in 0..table.rows {
        let row = &table.data[r * table.cols..(r + 1) * table.cols];
        if let (Some(c), Some(t)) = (time_col, args.time)
            && (row[c] - t).abs() > 1e-6 * t.abs().max(1.0)
        {
            continue;
        }
        z.extend(cols.iter().map(|&c| row[c]));
    }
    if z.is_empty() {
        return Err(format!("{what}: no rows selected"));
    }
    Ok((z, cols.len()))
}

/// A JSON number, or null when not finite.
fn json_number(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        "null".into()
    }
}

pub fn run(args: &EvaluateArgs) -> Result<(), String> {
    let (a, d) = cloud(&read_table(&args.a, "--a")?, args, "--a")?;
    let (b, db) = cloud(&read_table(&args.b, "--b")?, args, "--b")?;
    if d != db {
        return Err(format!("--a has {d} coordinates but --b has {db}"));
    }
    let (n, m) = (a.len() / d, b.len() / d);
    let start = Instant::now();
    let energy = energy_distance(&a, &b, d).map_err(|e| format!("energy distance: {e}"))?;
    let mut ws = vec![0.0; sliced_wasserstein_workspace_len(n, m, d, args.projections)];
    let sw = sliced_wasserstein(&a, &b, d, args.projections, args.seed, &mut ws)
        .map_err(|e| format!("sliced Wasserstein: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let json = format!(
        "{{\"n_a\":{n},\"n_b\":{m},\"d\":{d},\"energy_distance\":{},\"energy_estimator\":\"V-statistic\",\"sliced_wasserstein\":{},\"projections\":{},\"seed\":{},\"seconds\":{seconds}}}",
        json_number(energy),
        json_number(sw),
        args.projections,
        args.seed
    );
    if let Some(path) = &args.out {
        write_atomic(path, |w| writeln!(w, "{json}")).map_err(|e| format!("--out: {e}"))?;
    }
    println!("{json}");
    Ok(())
}
