//! `morphosde bench-heldout`: the held-out-time benchmark (see
//! `crate::heldout`). For every dataset and every intermediate bin: train
//! without the bin with diffusion on and drift-only (`--variants`), one
//! run per seed,
//! every other training flag as given; roll out from every point of the
//! first bin to the held-out time; score the exact W1; beside it the OT
//! interpolation of the neighbouring bins and the nearest bin. Prints a
//! Markdown table (also `--markdown`) and writes the JSON behind it
//! (`--out`).

use super::train::ModelArgs;
use crate::csvio::write_atomic;
use crate::heldout::{datasets, report, runner};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchHeldoutArgs {
    /// Datasets (comma-separated): petal, bifurcation, cycle.
    #[arg(long, value_delimiter = ',', default_value = "petal,bifurcation,cycle")]
    pub datasets: Vec<String>,
    /// Training seeds: one run per seed of each variant (they replace
    /// --seed); the OT interpolation's sampling uses them too.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Trained variants (comma-separated): diffusion (--learn-diffusion
    /// true), drift (false).
    #[arg(long, value_delimiter = ',', default_value = "diffusion,drift")]
    pub variants: Vec<String>,
    /// Seed of the datasets (the same data for every training seed).
    #[arg(long, default_value_t = 0)]
    pub data_seed: u64,
    /// Factor on every bin's number of points (1 = the documented sizes).
    #[arg(long, default_value_t = 1.0)]
    pub size: f64,
    /// Hold out only these bins (0-based indices of intermediate bins;
    /// default every intermediate bin).
    #[arg(long, value_delimiter = ',')]
    pub bins: Option<Vec<usize>>,
    /// Also write each dataset as `<DIR>/<name>.csv` (columns t, id, z0…;
    /// ids −1: untracked), for `train`, `simulate --from-data` and
    /// `evaluate`.
    #[arg(long)]
    pub write_data: Option<PathBuf>,
    /// JSON output (every run's numbers).
    #[arg(long, default_value = "heldout.json")]
    pub out: PathBuf,
    /// Markdown table output (also printed).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Training flags for every run (`--learn-diffusion` and `--seed` are
    /// set by the benchmark).
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: &BenchHeldoutArgs) -> Result<(), String> {
    if args.seeds.is_empty() {
        return Err("--seeds: give at least one seed".into());
    }
    if !(args.size.is_finite() && args.size > 0.0) {
        return Err(format!("--size: must be a number > 0, got {}", args.size));
    }
    let variants = runner::variants(&args.variants)?;
    let mut results = Vec::new();
    let quiet = args.quiet;
    let mut progress = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    for name in &args.datasets {
        let data = datasets::by_name(name, args.data_seed, args.size)?;
        if let Some(dir) = &args.write_data {
            data.write(&dir.join(format!("{name}.csv")))
                .map_err(|e| format!("--write-data: {e}"))?;
        }
        let bins = data.grid().times.len();
        let held: Vec<usize> = match &args.bins {
            Some(b) => b
                .iter()
                .copied()
                .filter(|&k| k > 0 && k + 1 < bins)
                .collect(),
            None => (1..bins - 1).collect(),
        };
        for bin in held {
            results.push(runner::run_held_out(
                name,
                &data,
                bin,
                &args.seeds,
                &variants,
                &args.model,
                &mut progress,
            )?);
        }
    }
    if results.is_empty() {
        return Err("--bins: no intermediate bin of the datasets selected".into());
    }
    let table = report::markdown(&results);
    let counts = report::problem_counts(&results);
    let json = json!({
        "datasets": args.datasets, "variants": args.variants, "seeds": args.seeds, "data_seed": args.data_seed,
        "size": args.size, "escape_spans": runner::ESCAPE_SPANS,
        "training_flags": format!("{:?}", args.model),
        "results": results.iter().map(runner::HeldOut::json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    write_atomic(&args.out, |w| w.write_all(text.as_bytes())).map_err(|e| format!("--out: {e}"))?;
    if let Some(path) = &args.markdown {
        write_atomic(path, |w| write!(w, "{table}\n{counts}\n"))
            .map_err(|e| format!("--markdown: {e}"))?;
    }
    println!("{table}\n{counts}");
    Ok(())
}
