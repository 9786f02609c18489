//! `morphosde demo`: the whole job on the built-in embryo-like dataset
//! (`morphosde_core::synthetic::EmbryoProcess`, known drift and D), with no
//! data to download: sample training snapshots and an independent held-out
//! set, train with diffusion on, roll out from the held-out embryos' first
//! bin, score the rollouts against the held-out bins and the learned D
//! against the true D, and write the data, the model, plots and a report.
//!
//! Scores (also used by `ablate`):
//! - energy distance (V-statistic) and sliced Wasserstein between rollouts
//!   and held-out data at every later bin, next to the same distances
//!   between two independent samples of the true process (the noise floor);
//! - D recovery: `‖D_θ − D‖_F / ‖D‖_F` summed over the held-out states of
//!   every bin but the last (square root of the ratio of the summed
//!   squares). `D` is the noise of the transition out of a state; the last
//!   bin has none, so the model's `D` there is an extrapolation in time and
//!   is reported apart (`d_error_all_bins`);
//! - drift recovery: `‖f_θ − f‖ / ‖f‖` over the same states (`drift_error`);
//! - which half falls short: the energy distance of rollouts that take the
//!   drift from the true process and the noise from the model, and the
//!   other way round ([`Hybrid`]).
//!
//! The rollouts, the hybrids and the error sums are `scoring`'s, shared
//! with `bench-recovery`.

use super::demo_plots::plot_all;
use super::scoring::{Hybrid, default_rollouts, diffusion_errors, drift_errors, rollout_time};
use super::train::{ModelArgs, Trained, progress_bar};
use crate::csvio::write_atomic;
use crate::data::Snapshots;
use clap::Args;
use morphosde_core::metrics::{
    energy_distance, sliced_wasserstein, sliced_wasserstein_workspace_len,
};
use morphosde_core::model::Learned;
use morphosde_core::synthetic::{EmbryoProcess, SnapshotDesign};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Observation times of the built-in dataset: 8 bins, frame gap 0.2.
pub const BINS: [f32; 8] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4];
/// Random directions of the sliced Wasserstein scores.
const PROJECTIONS: usize = 64;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// State dimension of the built-in process (≥ 2).
    #[arg(long, default_value_t = 2)]
    pub d: usize,
    /// Embryos observed per bin (30% of them tracked through every bin).
    #[arg(long, default_value_t = 1000)]
    pub per_bin: usize,
    /// Output folder (data, model, plots, report).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The built-in dataset: `per_bin` embryos per bin, 30% tracked.
pub fn builtin_dataset(d: usize, per_bin: usize, seed: u64) -> Result<Snapshots, String> {
    let design = SnapshotDesign {
        bins: &BINS,
        per_bin,
        tracked: per_bin * 3 / 10,
        seed,
        h_max: 0.01,
    };
    Snapshots::sampled(&EmbryoProcess { d }, &design).map_err(|e| format!("built-in dataset: {e}"))
}

/// Rows of `data` observed at bin time `tb`, row-major.
pub fn bin_rows(data: &Snapshots, tb: f32) -> Vec<f32> {
    (0..data.len())
        .filter(|&i| data.t[i] == tb)
        .flat_map(|i| data.z[i * data.d..(i + 1) * data.d].iter().copied())
        .collect()
}

/// Rollouts of the learned model from `start` (`n×d`) at `BINS[0]` to the
/// later bins, as `simulate` runs them by default. Returns
/// `n × (bins−1) × d`.
pub fn rollouts(trained: &Trained, start: &[f32], seed: u64) -> Result<Vec<f32>, String> {
    let model = Learned::new(&trained.config, &trained.params).map_err(|e| e.to_string())?;
    default_rollouts(&model, start, BINS[0], &BINS[1..], seed)
}

/// Writes rollouts (`n × (bins−1) × d`) as CSV rows `trajectory, t, z…`.
pub fn write_rollouts(path: &Path, d: usize, paths: &[f32]) -> Result<(), String> {
    let per = (BINS.len() - 1) * d;
    write_atomic(path, |w| {
        let names: Vec<String> = (0..d).map(|k| format!("z{k}")).collect();
        writeln!(w, "trajectory,t,{}", names.join(","))?;
        for (i, p) in paths.chunks_exact(per).enumerate() {
            for (k, z) in p.chunks_exact(d).enumerate() {
                write!(w, "{i},{}", BINS[k + 1])?;
                for x in z {
                    write!(w, ",{x}")?;
                }
                writeln!(w)?;
            }
        }
        Ok(())
    })
}

/// States of bin `k ≥ 1` of a rollout array.
pub fn rollout_bin(paths: &[f32], d: usize, k: usize) -> Vec<f32> {
    rollout_time(paths, d, BINS.len() - 1, k - 1)
}

/// Scores of a trained model on the built-in process (see the module docs).
pub struct Scores {
    pub energy: Vec<f64>,
    pub energy_floor: Vec<f64>,
    pub sliced: Vec<f64>,
    pub sliced_floor: Vec<f64>,
    /// Energy distance of the true process's rollouts from the same start,
    /// the same way: what a perfect model scores under this protocol. They
    /// inherit the start bin's sampling error (e.g. its share of branch
    /// embryos), which the held-out later bins only partly share, so even
    /// these sit above the true-vs-true floor.
    pub energy_true_rollouts: Vec<f64>,
    /// Energy distance of the [`Hybrid`] rollouts: the true drift with the
    /// learned noise, and the learned drift with the true noise (both
    /// `None` without a diffusion head).
    pub energy_true_drift: Option<Vec<f64>>,
    pub energy_true_noise: Option<Vec<f64>>,
    /// `‖f_θ − f‖ / ‖f‖` over the held-out states of every bin but the last.
    pub drift_error: f64,
    pub d_error: Option<f64>,
    /// The same over every held-out state, the last bin's included.
    pub d_error_all_bins: Option<f64>,
}

impl Scores {
    pub fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    pub fn json(&self) -> Value {
        json!({
            "bins": &BINS[1..],
            "energy_distance": self.energy,
            "energy_distance_true_vs_true": self.energy_floor,
            "sliced_wasserstein": self.sliced,
            "sliced_wasserstein_true_vs_true": self.sliced_floor,
            "mean_energy_distance": Self::mean(&self.energy),
            "mean_energy_distance_true_vs_true": Self::mean(&self.energy_floor),
            "energy_distance_true_process_rollouts": self.energy_true_rollouts,
            "mean_energy_distance_true_process_rollouts": Self::mean(&self.energy_true_rollouts),
            "energy_distance_true_drift_learned_noise": self.energy_true_drift,
            "mean_energy_distance_true_drift_learned_noise": self.energy_true_drift.as_deref().map(Self::mean),
            "energy_distance_learned_drift_true_noise": self.energy_true_noise,
            "mean_energy_distance_learned_drift_true_noise": self.energy_true_noise.as_deref().map(Self::mean),
            "drift_relative_error": self.drift_error,
            "d_relative_frobenius_error": self.d_error,
            "d_relative_frobenius_error_all_bins": self.d_error_all_bins,
        })
    }
}

/// Scores `trained` against held-out data `test` and an independent true
/// sample `reference` (for the noise floor). `paths` are the model's
/// rollouts from `test`'s first bin with `seed` ([`rollouts`]); the true
/// process and the [`Hybrid`]s are rolled out from the same start with the
/// same seed.
pub fn score(
    trained: &Trained,
    test: &Snapshots,
    reference: &Snapshots,
    paths: &[f32],
    seed: u64,
) -> Result<Scores, String> {
    let d = test.d;
    let process = EmbryoProcess { d };
    let model = Learned::new(&trained.config, &trained.params).map_err(|e| e.to_string())?;
    let start = bin_rows(test, BINS[0]);
    let sw = |x: &[f32], y: &[f32]| -> Result<f64, String> {
        let mut ws = vec![
            0.0f32;
            sliced_wasserstein_workspace_len(x.len() / d, y.len() / d, d, PROJECTIONS)
        ];
        sliced_wasserstein(x, y, d, PROJECTIONS, 7, &mut ws)
            .map(f64::from)
            .map_err(|e| e.to_string())
    };
    let ed = |x: &[f32], y: &[f32]| {
        energy_distance(x, y, d)
            .map(f64::from)
            .map_err(|e| e.to_string())
    };
    // Energy distance to the held-out data at every later bin.
    let energy_of = |paths: &[f32]| -> Result<Vec<f64>, String> {
        (1..BINS.len())
            .map(|k| ed(&rollout_bin(paths, d, k), &bin_rows(test, BINS[k])))
            .collect()
    };
    let hybrid = |learned_drift: bool| -> Result<Option<Vec<f64>>, String> {
        if trained.config.head.is_none() {
            return Ok(None);
        }
        let dynamics = Hybrid {
            model,
            truth: process,
            learned_drift,
        };
        energy_of(&default_rollouts(
            &dynamics,
            &start,
            BINS[0],
            &BINS[1..],
            seed,
        )?)
        .map(Some)
    };
    let mut s = Scores {
        energy: energy_of(paths)?,
        energy_floor: vec![],
        sliced: vec![],
        sliced_floor: vec![],
        energy_true_rollouts: energy_of(&default_rollouts(
            &process,
            &start,
            BINS[0],
            &BINS[1..],
            seed,
        )?)?,
        energy_true_drift: hybrid(false)?,
        energy_true_noise: hybrid(true)?,
        drift_error: drift_error(&model, test)?,
        d_error: None,
        d_error_all_bins: None,
    };
    for (k, &tb) in BINS.iter().enumerate().skip(1) {
        let held = bin_rows(test, tb);
        let other = bin_rows(reference, tb);
        s.energy_floor.push(ed(&other, &held)?);
        s.sliced.push(sw(&rollout_bin(paths, d, k), &held)?);
        s.sliced_floor.push(sw(&other, &held)?);
    }
    if trained.config.head.is_some() {
        // The bins with a next bin (group 0), then the last (group 1).
        let last = BINS[BINS.len() - 1];
        let errors = diffusion_errors(
            &model,
            &process,
            &test.z,
            &test.t,
            |i| usize::from(test.t[i] == last),
            2,
        );
        s.d_error = Some(errors.pooled(&[0]));
        s.d_error_all_bins = Some(errors.pooled(&[0, 1]));
    }
    Ok(s)
}

/// `‖f_θ − f‖ / ‖f‖` (square root of the ratio of the summed squares) over
/// the held-out states of every bin but the last: the states whose
/// transition the data shows.
fn drift_error(model: &Learned<'_, f32>, test: &Snapshots) -> Result<f64, String> {
    let d = test.d;
    let last = BINS[BINS.len() - 1];
    let rows: Vec<usize> = (0..test.len()).filter(|&i| test.t[i] != last).collect();
    let z: Vec<f32> = rows
        .iter()
        .flat_map(|&i| test.z[i * d..(i + 1) * d].iter().copied())
        .collect();
    let t: Vec<f32> = rows.iter().map(|&i| test.t[i]).collect();
    let error = drift_errors(model, &EmbryoProcess { d }, &z, &t, |_| 0, 1).pooled(&[0]);
    if !error.is_finite() {
        return Err("the learned drift is not finite at the held-out states".into());
    }
    Ok(error)
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    if args.d < 2 {
        return Err("--d must be at least 2".into());
    }
    let mut model = args.model.clone();
    model.learn_diffusion = true;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create '{}': {e}", args.out.display()))?;
    let seed = model.seed;
    let train = builtin_dataset(args.d, args.per_bin, seed)?;
    let test = builtin_dataset(args.d, args.per_bin, seed + 1)?;
    let reference = builtin_dataset(args.d, args.per_bin, seed + 2)?;
    train.write(&args.out.join("train.csv"))?;
    test.write(&args.out.join("heldout.csv"))?;
    let mut bar = progress_bar(model.epochs);
    let trained = model.train(&train, &mut |r| {
        if !args.quiet {
            bar(r)
        }
    })?;
    if !args.quiet {
        eprintln!();
    }
    trained.save(&args.out.join("model.msde"))?;
    let start = bin_rows(&test, BINS[0]);
    let paths = rollouts(&trained, &start, seed + 3)?;
    let scores = score(&trained, &test, &reference, &paths, seed + 3)?;
    write_rollouts(&args.out.join("rollouts.csv"), args.d, &paths)?;
    plot_all(&args.out, &trained, &train, &test, &paths)?;
    let report = json!({
        "dataset": {"d": args.d, "bins": BINS, "per_bin": args.per_bin, "tracked_fraction": 0.3},
        "training": trained.summary_json(),
        "scores": scores.json(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    write_atomic(&args.out.join("report.json"), |w| {
        w.write_all(text.as_bytes())
    })?;
    println!(
        "{}",
        json!({
            "out": args.out,
            "seconds_training": trained.seconds,
            "mean_energy_distance": Scores::mean(&scores.energy),
            "mean_energy_distance_true_vs_true": Scores::mean(&scores.energy_floor),
            "mean_energy_distance_true_process_rollouts": Scores::mean(&scores.energy_true_rollouts),
            "mean_energy_distance_true_drift_learned_noise": scores.energy_true_drift.as_deref().map(Scores::mean),
            "mean_energy_distance_learned_drift_true_noise": scores.energy_true_noise.as_deref().map(Scores::mean),
            "drift_relative_error": scores.drift_error,
            "d_relative_frobenius_error": scores.d_error,
            "d_relative_frobenius_error_all_bins": scores.d_error_all_bins,
        })
    );
    Ok(())
}
