//! One held-out intermediate bin of one dataset: train without it (each
//! chosen [`VARIANTS`] entry, each seed), roll out from every point of the first
//! bin to the held-out time as `simulate` does by default, score the exact
//! W1 to the held-out points; and the baselines on the same split.
//!
//! Nothing is averaged away: every run keeps its own score and what went
//! wrong in it (a training error — a diverged or refused fit among them —,
//! skipped batches, the divergence guard's roll-backs, epochs with a
//! non-finite loss, non-finite parameters, rollouts that stopped or left
//! the data's range by more than [`ESCAPE_SPANS`] spans).

use super::baselines::{OtInterpolation, nearest_bin, w1};
use crate::commands::simulate::default_method;
use crate::commands::train::{ModelArgs, Trained};
use crate::data::Snapshots;
use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::rollout::{
    MAX_BLOCK_ROWS, RolloutConfig, Start, default_workers, rollout, rollout_workspace_len,
};
use morphosde_core::model::Learned;
use serde_json::{Value, json};
use std::time::Instant;

/// A rollout point escapes when a coordinate is farther from the training
/// data's range than this many times the range's width on that axis.
pub const ESCAPE_SPANS: f64 = 10.0;

/// A model setting the benchmark trains: every other training flag as
/// given on the command line.
#[derive(Debug, PartialEq)]
pub struct Variant {
    pub key: &'static str,
    pub label: &'static str,
    pub learn_diffusion: bool,
}

/// The trained settings, in table order.
pub static VARIANTS: [Variant; 2] = [
    Variant {
        key: "diffusion",
        label: "morphosde, diffusion on",
        learn_diffusion: true,
    },
    Variant {
        key: "drift",
        label: "morphosde, drift only",
        learn_diffusion: false,
    },
];

/// One training run and its score.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRun {
    pub seed: u64,
    /// W1 of the finite rollouts to the held-out points (NaN if none).
    pub w1: f64,
    /// Wall time of `train` (the fit and its acceptance check), also when
    /// it failed.
    pub seconds: f64,
    pub epochs: usize,
    /// Training or the rollout failed with this message.
    pub error: Option<String>,
    pub skipped_batches: usize,
    /// Roll-backs of the divergence guard.
    pub rollbacks: usize,
    pub nonfinite_epochs: usize,
    pub nonfinite_parameters: bool,
    /// Rollouts that stopped (non-finite state) before the held-out time.
    pub stopped_rollouts: usize,
    pub escaped_rollouts: usize,
}

/// The variants named by `keys` (each a [`Variant::key`]), in table order.
pub fn variants(keys: &[String]) -> Result<Vec<&'static Variant>, String> {
    if let Some(bad) = keys.iter().find(|k| !VARIANTS.iter().any(|v| v.key == *k)) {
        let known: Vec<&str> = VARIANTS.iter().map(|v| v.key).collect();
        return Err(format!(
            "--variants: unknown variant '{bad}' (known: {})",
            known.join(", ")
        ));
    }
    Ok(VARIANTS
        .iter()
        .filter(|v| keys.iter().any(|k| k == v.key))
        .collect())
}

impl ModelRun {
    /// What went wrong, in words (empty if nothing); an error by its first
    /// clause (e.g. "training diverged"; the JSON has it in full).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.error {
            let clause = e.split([':', ';']).next().unwrap_or(e);
            out.push(format!("failed ({clause})"));
        }
        let counts = [
            (self.skipped_batches, "skipped batches"),
            (self.rollbacks, "roll-backs"),
            (self.nonfinite_epochs, "epochs with a non-finite loss"),
            (self.stopped_rollouts, "stopped rollouts"),
            (self.escaped_rollouts, "escaped rollouts"),
        ];
        for (count, what) in counts {
            if count > 0 {
                out.push(format!("{count} {what}"));
            }
        }
        if self.nonfinite_parameters {
            out.push("non-finite parameters".into());
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "seed": self.seed, "w1": self.w1, "seconds": self.seconds, "epochs": self.epochs,
            "error": self.error, "skipped_batches": self.skipped_batches,
            "rollbacks": self.rollbacks,
            "nonfinite_epochs": self.nonfinite_epochs,
            "nonfinite_parameters": self.nonfinite_parameters,
            "stopped_rollouts": self.stopped_rollouts, "escaped_rollouts": self.escaped_rollouts,
        })
    }
}

/// Everything measured on one held-out bin.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldOut {
    pub dataset: String,
    /// Index of the held-out bin and its time.
    pub bin: usize,
    pub time: f64,
    pub n_held: usize,
    /// Points of the first bin (the rollouts' starts).
    pub n_start: usize,
    /// Each variant's runs, one per seed.
    pub runs: Vec<(&'static Variant, Vec<ModelRun>)>,
    /// OT interpolation's W1 per seed (`n_start` samples each).
    pub ot_interpolation: Vec<f64>,
    /// The nearer neighbouring bin's time and W1.
    pub nearest_time: f64,
    pub nearest: f64,
}

impl HeldOut {
    pub fn json(&self) -> Value {
        let runs: serde_json::Map<String, Value> = self
            .runs
            .iter()
            .map(|(v, runs)| {
                (
                    v.key.to_string(),
                    Value::Array(runs.iter().map(ModelRun::json).collect()),
                )
            })
            .collect();
        json!({
            "dataset": self.dataset, "bin": self.bin, "time": self.time,
            "n_held": self.n_held, "n_start": self.n_start, "runs": runs,
            "ot_interpolation": self.ot_interpolation,
            "nearest_time": self.nearest_time, "nearest": self.nearest,
        })
    }
}

/// Holds out bin `bin` (intermediate: not the first or the last) of `data`
/// and measures each of `variants` for every seed, and the baselines;
/// `model` gives every training flag except the seed and
/// `--learn-diffusion`. `progress` gets a line per run.
pub fn run_held_out(
    dataset: &str,
    data: &Snapshots,
    bin: usize,
    seeds: &[u64],
    variants: &[&'static Variant],
    model: &ModelArgs,
    progress: &mut dyn FnMut(&str),
) -> Result<HeldOut, String> {
    let grid = data.grid();
    let times = &grid.times;
    if bin == 0 || bin + 1 >= times.len() {
        return Err(format!(
            "bin {bin} of {dataset} is not an intermediate bin ({} bins)",
            times.len()
        ));
    }
    let rows_at = |t: f64| data.retain(|i| grid.matches(data.t[i] as f64, t));
    let held = rows_at(times[bin]);
    let start = rows_at(times[0]);
    let train = data.retain(|i| !grid.matches(data.t[i] as f64, times[bin]));
    let d = data.d;
    let range = Range::of(&train.z, d);
    let mut runs = Vec::new();
    for &variant in variants {
        let mut per_seed = Vec::new();
        for &seed in seeds {
            let args = ModelArgs {
                seed,
                learn_diffusion: variant.learn_diffusion,
                ..model.clone()
            };
            let run = train_and_score(&args, &train, &start, &held, times[bin], &range)?;
            progress(&format!(
                "{dataset} t = {} {} seed {seed}: W1 {:.4} ({:.1} s){}",
                times[bin],
                variant.label,
                run.w1,
                run.seconds,
                run.problems()
                    .iter()
                    .map(|p| format!("; {p}"))
                    .collect::<String>()
            ));
            per_seed.push(run);
        }
        runs.push((variant, per_seed));
    }
    let (before, after) = (rows_at(times[bin - 1]), rows_at(times[bin + 1]));
    let lambda = (times[bin] - times[bin - 1]) / (times[bin + 1] - times[bin - 1]);
    let interp = OtInterpolation::new(&before.z, &after.z, d, lambda)?;
    let ot_interpolation = seeds
        .iter()
        .map(|&seed| w1(&interp.sample(start.len(), seed), &held.z, d))
        .collect::<Result<Vec<_>, _>>()?;
    let take_after = nearest_bin(times[bin - 1], times[bin], times[bin + 1]);
    let (nearest_time, nearest_rows) = if take_after {
        (times[bin + 1], &after)
    } else {
        (times[bin - 1], &before)
    };
    Ok(HeldOut {
        dataset: dataset.to_string(),
        bin,
        time: times[bin],
        n_held: held.len(),
        n_start: start.len(),
        runs,
        ot_interpolation,
        nearest_time,
        nearest: w1(&nearest_rows.z, &held.z, d)?,
    })
}

/// Per-axis range of a cloud, and the escape test.
struct Range {
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl Range {
    fn of(z: &[f32], d: usize) -> Self {
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for row in z.chunks_exact(d) {
            for (k, &v) in row.iter().enumerate() {
                lo[k] = lo[k].min(v as f64);
                hi[k] = hi[k].max(v as f64);
            }
        }
        Range { lo, hi }
    }

    /// Whether `p` lies beyond the range by more than [`ESCAPE_SPANS`]
    /// widths on some axis.
    fn escaped(&self, p: &[f32]) -> bool {
        p.iter().enumerate().any(|(k, &v)| {
            let margin = ESCAPE_SPANS * (self.hi[k] - self.lo[k]);
            (v as f64) < self.lo[k] - margin || (v as f64) > self.hi[k] + margin
        })
    }
}

/// Trains `args` on `train`, rolls out from `start`'s points to time `t`
/// and scores W1 to `held`; a training or rollout error is recorded, not
/// returned.
fn train_and_score(
    args: &ModelArgs,
    train: &Snapshots,
    start: &Snapshots,
    held: &Snapshots,
    t: f64,
    range: &Range,
) -> Result<ModelRun, String> {
    let mut run = ModelRun {
        seed: args.seed,
        w1: f64::NAN,
        seconds: 0.0,
        epochs: 0,
        error: None,
        skipped_batches: 0,
        rollbacks: 0,
        nonfinite_epochs: 0,
        nonfinite_parameters: false,
        stopped_rollouts: 0,
        escaped_rollouts: 0,
    };
    let clock = Instant::now();
    let trained = args.train(train, &mut |_| {});
    run.seconds = clock.elapsed().as_secs_f64();
    let trained = match trained {
        Ok(trained) => trained,
        Err(e) => {
            run.error = Some(e);
            return Ok(run);
        }
    };
    run.epochs = trained.report.epochs;
    run.skipped_batches = trained.history.iter().map(|r| r.skipped).sum();
    run.rollbacks = trained.report.rollbacks;
    run.nonfinite_epochs = trained
        .history
        .iter()
        .filter(|r| {
            !r.train.total.is_finite() || r.validation.is_some_and(|v| !v.total.is_finite())
        })
        .count();
    run.nonfinite_parameters = trained.params.iter().any(|p| !p.is_finite());
    let d = train.d;
    let (paths, stops) = match rollout_to(&trained, &start.z, start.t[0], t as f32, args.seed) {
        Ok(rollouts) => rollouts,
        Err(e) => {
            run.error = Some(e);
            return Ok(run);
        }
    };
    let mut finite = Vec::with_capacity(paths.len());
    for (p, &stop) in paths.chunks_exact(d).zip(&stops) {
        if stop <= t as f32 || p.iter().any(|v| !v.is_finite()) {
            run.stopped_rollouts += 1;
            continue;
        }
        if range.escaped(p) {
            run.escaped_rollouts += 1;
        }
        finite.extend_from_slice(p);
    }
    if !finite.is_empty() {
        run.w1 = w1(&finite, &held.z, d)?;
    }
    Ok(run)
}

/// The trained model's rollouts from `start` (`n×d`, at `t0`) to `t`, as
/// `simulate` makes them by default: the states at `t` (`n×d`) and each
/// trajectory's stop time (infinite if it did not stop).
fn rollout_to(
    trained: &Trained,
    start: &[f32],
    t0: f32,
    t: f32,
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let model = Learned::new(&trained.config, &trained.params).map_err(|e| e.to_string())?;
    let d = model.dim();
    let n = start.len() / d;
    let config = RolloutConfig {
        method: default_method(model.noise_dim() > 0),
        seed,
        block_rows: MAX_BLOCK_ROWS,
    };
    let (mut out, mut stops) = (vec![0.0f32; n * d], vec![0.0f32; n]);
    let mut ws = vec![0.0f32; rollout_workspace_len(&model, &config, default_workers())];
    rollout(
        &model,
        Start::Cloud(start),
        t0,
        &[t],
        &config,
        &mut out,
        &mut stops,
        &mut ws,
    )
    .map_err(|e| format!("rollout: {e}"))?;
    Ok((out, stops))
}
