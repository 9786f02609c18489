//! `morphosde evaluate`: scores two point clouds against each other (e.g.
//! held-out observations against `simulate`'s rollouts) with the exact
//! Wasserstein-1 distance, the energy distance and the sliced Wasserstein
//! distance (`morphosde_core::metrics`).
//!
//! Input: two CSV files, read as they are. The time column
//! (`--time-column`, default `t`), a `trajectory` column (`simulate`
//! writes one) and `--id-column` are recognised where present and are not
//! coordinates. With `--t`, only the rows at that time are used from each
//! file that has a time column (a file without one is used whole; the time
//! is matched to within 1% of the file's smallest gap between times).
//! Coordinates: `--columns` (names or numbers, looked up in each file), or
//! every other column of `--a`, found by name in `--b` when both files have
//! a header (by position otherwise).
//! Output: a one-line JSON object on stdout, also written to `--out` if
//! given. `wasserstein1` is exact (network simplex, Euclidean cost); above
//! `EMD_MAX_POINTS` points on a side it is `null` and `wasserstein1_note`
//! says why.

use crate::csvio::{Table, read_table, write_atomic};
use crate::times::TimeGrid;
use clap::Args;
use morphosde_core::metrics::{
    EMD_MAX_POINTS, emd_workspace_len, energy_distance, sliced_wasserstein,
    sliced_wasserstein_workspace_len, wasserstein1,
};
use std::path::PathBuf;
use std::time::Instant;

/// Name of the column `simulate` numbers its trajectories in.
const TRAJECTORY_COLUMN: &str = "trajectory";

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// First cloud (CSV; e.g. held-out observations).
    #[arg(long)]
    pub a: PathBuf,
    /// Second cloud (CSV; e.g. `simulate`'s output).
    #[arg(long)]
    pub b: PathBuf,
    /// Coordinate columns, comma-separated names or 0-based numbers, looked
    /// up in each file (default: every column of --a except the time,
    /// trajectory and id columns, matched by name in --b).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Time column (name or number), in each file that has it.
    #[arg(long, default_value = "t")]
    pub time_column: String,
    /// Track-id column, left out of the coordinates where present.
    #[arg(long)]
    pub id_column: Option<String>,
    /// Use only the rows at this time, in each file with a time column.
    #[arg(long = "t", visible_alias = "time", allow_negative_numbers = true)]
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

/// One input file: its table and its time column (if it has one).
struct Input {
    table: Table,
    time_col: Option<usize>,
    what: &'static str,
}

impl Input {
    fn read(
        path: &std::path::Path,
        what: &'static str,
        args: &EvaluateArgs,
    ) -> Result<Self, String> {
        let table = read_table(path, what)?;
        let time_col = table.column_index(&args.time_column).ok();
        Ok(Input {
            table,
            time_col,
            what,
        })
    }

    /// Columns that are not coordinates: time, trajectory and id.
    fn recognised(&self, args: &EvaluateArgs) -> Vec<usize> {
        let named = |name: &str| {
            self.table
                .header
                .as_ref()
                .and_then(|h| h.iter().position(|c| c == name))
        };
        let id = args
            .id_column
            .as_ref()
            .and_then(|spec| self.table.column_index(spec).ok());
        [self.time_col, named(TRAJECTORY_COLUMN), id]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Every column that is not recognised as time, trajectory or id.
    fn other_columns(&self, args: &EvaluateArgs) -> Vec<usize> {
        let skip = self.recognised(args);
        (0..self.table.cols).filter(|c| !skip.contains(c)).collect()
    }

    /// The selected rows (at `--t` if the file has a time column) of the
    /// columns `cols`, row-major.
    fn cloud(&self, cols: &[usize], args: &EvaluateArgs) -> Result<Vec<f64>, String> {
        let t = &self.table;
        let at = match (self.time_col, args.time) {
            (Some(c), Some(want)) => {
                let grid = TimeGrid::new(t.column(c));
                let bin = grid.times[grid.find(want, &format!("{} --t", self.what))?];
                Some((c, grid, bin))
            }
            _ => None,
        };
        let mut z = Vec::new();
        for row in t.data.chunks_exact(t.cols) {
            if let Some((c, grid, bin)) = &at
                && !grid.matches(row[*c], *bin)
            {
                continue;
            }
            z.extend(cols.iter().map(|&c| row[c]));
        }
        Ok(z)
    }
}

/// The coordinate columns of `--a` and of `--b`, and their names.
struct Coordinates {
    cols_a: Vec<usize>,
    cols_b: Vec<usize>,
    names: Vec<String>,
}

/// The coordinates: `--columns`, else by name or position (module docs).
fn coordinates(a: &Input, b: &Input, args: &EvaluateArgs) -> Result<Coordinates, String> {
    if let Some(specs) = &args.columns {
        let find = |input: &Input| -> Result<Vec<usize>, String> {
            specs
                .iter()
                .map(|s| {
                    input
                        .table
                        .column_index(s)
                        .map_err(|e| format!("{}: {e}", input.what))
                })
                .collect()
        };
        return Ok(Coordinates {
            cols_a: find(a)?,
            cols_b: find(b)?,
            names: specs.clone(),
        });
    }
    let cols_a = a.other_columns(args);
    let cols_b = b.other_columns(args);
    match (&a.table.header, &b.table.header) {
        (Some(ha), Some(hb)) => {
            let names: Vec<String> = cols_a.iter().map(|&c| ha[c].clone()).collect();
            let by_name = names
                .iter()
                .map(|name| {
                    hb.iter().position(|c| c == name).ok_or_else(|| {
                        format!(
                            "--b has no column named '{name}' (the coordinates of --a: {}; \
                             choose them with --columns)",
                            names.join(", ")
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let extra: Vec<&str> = cols_b
                .iter()
                .filter(|c| !by_name.contains(c))
                .map(|&c| hb[c].as_str())
                .collect();
            if !extra.is_empty() {
                return Err(format!(
                    "--b has coordinate columns that --a lacks: {} (choose them with --columns)",
                    extra.join(", ")
                ));
            }
            Ok(Coordinates {
                cols_a,
                cols_b: by_name,
                names,
            })
        }
        _ => {
            if cols_a.len() != cols_b.len() {
                return Err(format!(
                    "--a has {} coordinates but --b has {}",
                    cols_a.len(),
                    cols_b.len()
                ));
            }
            let names = (0..cols_a.len()).map(|c| format!("z{c}")).collect();
            Ok(Coordinates {
                cols_a,
                cols_b,
                names,
            })
        }
    }
}

/// A JSON number, or null when not finite.
fn json_number(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        "null".into()
    }
}

/// The exact W1 as JSON, or `null` and a note when a cloud is above the
/// exact solver's size limit.
fn exact_w1(a: &[f64], b: &[f64], d: usize) -> Result<(String, String), String> {
    let (n, m) = (a.len() / d, b.len() / d);
    if n > EMD_MAX_POINTS || m > EMD_MAX_POINTS {
        let note = format!(
            "\"not computed: {n} and {m} points, the exact solver takes at most {EMD_MAX_POINTS} \
             per side (subsample to score it)\""
        );
        return Ok(("null".into(), note));
    }
    let len = emd_workspace_len(n, m);
    let (mut floats, mut indices) = (vec![0.0; len.floats], vec![0u32; len.indices]);
    let w = wasserstein1(a, None, b, None, d, &mut floats, &mut indices)
        .map_err(|e| format!("Wasserstein-1: {e}"))?;
    Ok((json_number(w), "null".into()))
}

/// Pair distances above which `evaluate` warns about the energy
/// distance's quadratic cost (it still computes it).
const WARN_PAIRS: f64 = 1e10;

pub fn run(args: &EvaluateArgs) -> Result<(), String> {
    let input_a = Input::read(&args.a, "--a", args)?;
    let input_b = Input::read(&args.b, "--b", args)?;
    if args.time.is_some() && input_a.time_col.is_none() && input_b.time_col.is_none() {
        return Err(format!(
            "--t: neither file has the time column '{}'",
            args.time_column
        ));
    }
    let Coordinates {
        cols_a,
        cols_b,
        names,
    } = coordinates(&input_a, &input_b, args)?;
    let d = cols_a.len();
    if d == 0 {
        return Err("--a: no coordinate columns".into());
    }
    let a = input_a.cloud(&cols_a, args)?;
    let b = input_b.cloud(&cols_b, args)?;
    for (cloud, what) in [(&a, "--a"), (&b, "--b")] {
        if cloud.is_empty() {
            return Err(format!("{what}: no rows selected"));
        }
    }
    let (n, m) = (a.len() / d, b.len() / d);
    let pairs = ((n + m) as f64).powi(2) / 2.0;
    if pairs > WARN_PAIRS {
        eprintln!(
            "warning: the energy distance visits all {pairs:.1e} pairs of the {} points \
             (O((n+m)^2 d)); this may take long. Subsample the files to go faster.",
            n + m
        );
    }
    let start = Instant::now();
    let (w1, w1_note) = exact_w1(&a, &b, d)?;
    let energy = energy_distance(&a, &b, d).map_err(|e| format!("energy distance: {e}"))?;
    let mut ws = vec![0.0; sliced_wasserstein_workspace_len(n, m, d, args.projections)];
    let sw = sliced_wasserstein(&a, &b, d, args.projections, args.seed, &mut ws)
        .map_err(|e| format!("sliced Wasserstein: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let coordinates = serde_json::to_string(&names).map_err(|e| e.to_string())?;
    let json = format!(
        "{{\"n_a\":{n},\"n_b\":{m},\"d\":{d},\"coordinates\":{coordinates},\"wasserstein1\":{w1},\"wasserstein1_note\":{w1_note},\"energy_distance\":{},\"energy_estimator\":\"V-statistic\",\"sliced_wasserstein\":{},\"projections\":{},\"seed\":{},\"seconds\":{seconds}}}",
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
