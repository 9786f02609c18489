//! `morphosde bench-recovery`: the ground-truth recovery suite. Trains on
//! snapshots of known processes (`morphosde_core::synthetic::Process`:
//! `ou`, `pitchfork`, `cycles`, `embryo`, each in the requested `d`) with
//! the training flags given (any `train` flag; diffusion on unless
//! `--learn-diffusion false`), scores every run against the truth, prints
//! one Markdown table (process × d, each cell the mean over seeds and the
//! per-seed values) and writes every run's scores as JSON (`--out`).
//!
//! Protocol of one run (process, d, seed):
//! - Training data: [`BINS`] (six bins, gap 0.2), `--per-bin` embryos per
//!   bin of which `--tracked` are the same embryos in every bin and the
//!   rest are seen once; exact Euler–Maruyama at step [`DATA_STEP`].
//! - Field errors at states on true paths: `--per-bin / 4` independent
//!   embryos at the times [`FIELD_TIMES`]; `‖D_θ − D‖_F / ‖D‖_F` and
//!   `‖f_θ − f‖ / ‖f‖` per state, summarised over the states inside the
//!   observed span (t ≤ last bin) as median, mean and pooled
//!   (`√(Σ num / Σ den)`), and the same for the bins' interior (t < last
//!   bin), the last bin, and past it.
//! - Rollouts from [`CLOUDS`] independent t = 0 clouds of `--per-bin`
//!   embryos, as `simulate` runs them by default
//!   (`simulate::default_method`; `--rollout-method` and `--rollout-h-max`
//!   change the method and its step), to
//!   [`SCORED_TIMES`]: the learned model;
//!   the true process (what a perfect model scores under this protocol);
//!   the true process at the data's step [`DATA_STEP`] (what it scores
//!   without the integrator's error: 1 up to sampling noise); the true
//!   drift with the learned noise and the learned drift with the true noise
//!   (`scoring::Hybrid`); the true drift without noise (what the best
//!   drift-only model would score). Each is scored by
//!   the energy distance (V-statistic) between a rollout cloud and a
//!   held-out true cloud of `--per-bin` embryos, averaged over the
//!   [`CLOUDS`] × [`CLOUDS`] pairs, divided by the floor: the distance
//!   between two held-out clouds averaged over their pairs. One draw of
//!   either side moves the ratio by tens of percent (more where a few
//!   modes, such as a branch share, dominate the distance): the averages
//!   keep a perfect model's expected ratio at 1 and its spread small.
//!
//! Every random stream comes from the run's seed (also the training seed),
//! so a run is deterministic for a seed. Cost per run: the training, the
//! rollouts (`CLOUDS · per_bin` trajectories of each kind), exact
//! simulation of the held-out clouds, and
//! `O((5 CLOUDS² + CLOUDS²/2) · per_bin² · d)` per scored time for the
//! energy distances.

use super::scoring::{
    DriftOnly, Hybrid, RelativeErrors, diffusion_errors, drift_errors, learned_diffusion,
    rollout_time, rollouts_with,
};
use super::simulate::{MethodArg, default_method};
use super::train::{ModelArgs, Trained};
use crate::csvio::write_atomic;
use crate::data::Snapshots;
use clap::Args;
use clap::builder::PossibleValuesParser;
use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::rollout::Method;
use morphosde_core::integrate::sde::SdeConfig;
use morphosde_core::metrics::energy_distance;
use morphosde_core::model::Learned;
use morphosde_core::rng::{Family, Rng};
use morphosde_core::synthetic::{GroundTruth, Process, SnapshotDesign};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Observation times of the training data: six bins, gap 0.2.
pub const BINS: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
/// Euler–Maruyama step of every true path (training, held-out, field
/// states).
pub const DATA_STEP: f32 = 0.002;
/// Times the rollouts are scored at: between bins, at the last bin, past it.
pub const SCORED_TIMES: [f32; 4] = [0.3, 0.5, 1.0, 1.5];
/// Times of the states the field errors are measured at: inside the
/// observed span, then past it.
pub const FIELD_TIMES: [f32; 13] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5,
];
/// Independent clouds of `--per-bin` embryos on each side of a score: held-out
/// true clouds (the floor averages over their pairs) and rollout clouds
/// (each score averages over every rollout cloud against every held-out
/// cloud).
pub const CLOUDS: usize = 4;
/// The rollouts scored, in JSON order (see the module docs).
const ROLLOUTS: [&str; 6] = [
    "model",
    "true_process",
    "true_process_exact",
    "true_drift_learned_noise",
    "learned_drift_true_noise",
    "true_drift_no_noise",
];

#[derive(Args, Debug)]
#[command(mut_arg("learn_diffusion", |a| a.default_value("true")))]
#[command(mut_arg("seed", |a| a.hide(true)))]
pub struct BenchRecoveryArgs {
    /// Processes, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ou,pitchfork,cycles,embryo",
        value_parser = PossibleValuesParser::new(Process::NAMES)
    )]
    pub processes: Vec<String>,
    /// State dimensions, comma-separated (each ≥ 2).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    pub dims: Vec<usize>,
    /// Seeds, comma-separated: each seeds the data, the training and the
    /// rollouts of one run (the training flag --seed is not used).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Embryos observed per bin (also the size of every held-out cloud).
    #[arg(long, default_value_t = 2000)]
    pub per_bin: usize,
    /// Of those, embryos tracked through every bin.
    #[arg(long, default_value_t = 600)]
    pub tracked: usize,
    /// Per-run results (JSON).
    #[arg(long, default_value = "recovery.json")]
    pub out: PathBuf,
    /// Also write the table (Markdown) here.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// SDE method of every rollout with noise but the exact one (`auto`:
    /// what `simulate` runs by default); to compare integrators.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub rollout_method: MethodArg,
    /// Largest substep of those rollouts (default: the method's default
    /// step in `simulate`); to check that halving it leaves the scores
    /// alone.
    #[arg(long)]
    pub rollout_h_max: Option<f32>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Times as the decimals they were written as (`0.3`, not the f32's
/// `0.30000001192092896`), for the JSON.
fn tidy(times: &[f32]) -> Vec<f64> {
    times
        .iter()
        .map(|t| t.to_string().parse().unwrap_or(f64::NAN))
        .collect()
}

/// Derived seed of one random stream family of a run.
fn stream_seed(seed: u64, role: u64) -> u64 {
    seed.wrapping_mul(1 << 16).wrapping_add(role)
}

/// Roles of [`stream_seed`].
const TRAIN: u64 = 0;
const FIELD: u64 = 1;
const START: u64 = 2;
const ROLLOUT: u64 = 3;
const HELD_OUT: u64 = 4;

/// Snapshots of `process` at `times` (the first is the start): `n`
/// embryos per time, `tracked` of them the same embryos at every time.
fn true_snapshots(
    process: &Process,
    times: &[f32],
    n: usize,
    tracked: usize,
    seed: u64,
) -> Result<Snapshots, String> {
    let design = SnapshotDesign {
        bins: times,
        per_bin: n,
        tracked,
        seed,
        h_max: DATA_STEP,
    };
    Snapshots::sampled(process, &design)
        .map_err(|e| format!("{} (d = {}): sampling: {e}", process.name(), process.d()))
}

/// Median, mean and pooled error of the states of `groups`.
fn summary(errors: &RelativeErrors, group_of: &[usize], groups: &[usize]) -> Value {
    let mut values: Vec<f64> = errors
        .per_state
        .iter()
        .zip(group_of)
        .filter(|(_, g)| groups.contains(g))
        .map(|(&e, _)| e)
        .collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => 0.5 * (values[n / 2 - 1] + values[n / 2]),
    };
    json!({
        "median": median,
        "mean": values.iter().sum::<f64>() / n as f64,
        "pooled": errors.pooled(groups),
        "states": n,
    })
}

/// The summaries of [`summary`] inside the span, its interior, the last
/// bin and past it.
fn summaries(errors: &RelativeErrors, group_of: &[usize]) -> Value {
    json!({
        "span": summary(errors, group_of, &[0, 1]),
        "interior": summary(errors, group_of, &[0]),
        "last_bin": summary(errors, group_of, &[1]),
        "past": summary(errors, group_of, &[2]),
    })
}

/// Mean learned `tr D` over the mean true `tr D` at the states of each
/// group in `groups` (inside the span, past it).
fn trace_ratio(
    model: &Learned<'_, f32>,
    process: &Process,
    z: &[f32],
    t: &[f32],
    group_of: &[usize],
    groups: &[usize],
) -> f64 {
    let d = process.d();
    let learned = learned_diffusion(model, z, t);
    let (mut zr, mut l, mut dm) = (vec![0.0f64; d], vec![0.0f64; d * d], vec![0.0f64; d * d]);
    let (mut num, mut den) = (0.0, 0.0);
    for r in (0..t.len()).filter(|&r| groups.contains(&group_of[r])) {
        for (x, &v) in zr.iter_mut().zip(&z[r * d..(r + 1) * d]) {
            *x = f64::from(v);
        }
        process.diffusion_at(&zr, f64::from(t[r]), &mut l, &mut dm);
        for k in 0..d {
            num += f64::from(learned[r * d * d + k * d + k]);
            den += dm[k * d + k];
        }
    }
    num / den
}

/// Dynamics rolled out from the start cloud to [`SCORED_TIMES`] with
/// [`BenchRecoveryArgs::method_for`] (object-safe, so one closure
/// serves them all).
trait RolloutOf {
    fn roll(&self, args: &BenchRecoveryArgs, start: &[f32], seed: u64) -> Result<Vec<f32>, String>;
}

impl<S: Dynamics<f32> + Sync> RolloutOf for S {
    fn roll(&self, args: &BenchRecoveryArgs, start: &[f32], seed: u64) -> Result<Vec<f32>, String> {
        let method = args.method_for(self.noise_dim() > 0);
        rollouts_with(self, method, start, 0.0, &SCORED_TIMES, seed)
    }
}

impl BenchRecoveryArgs {
    /// The method of the rollouts: `--rollout-method` (with
    /// `--rollout-h-max` as its step when given) for dynamics with noise,
    /// `simulate`'s default otherwise.
    fn method_for(&self, has_noise: bool) -> Method<f32> {
        if !has_noise {
            return default_method(false);
        }
        let method = self.rollout_method.method(true);
        match self.rollout_h_max {
            Some(h) => method.with_step(h),
            None => method,
        }
    }
}

/// Euler–Maruyama at the data's step [`DATA_STEP`].
fn exact_method() -> Method<f32> {
    Method::EulerMaruyama(SdeConfig {
        h_max: DATA_STEP,
        trace_clip: None,
    })
}

/// Energy distance, or NaN when the rollout lost every trajectory.
fn energy(x: &[f32], y: &[f32], d: usize) -> Result<f64, String> {
    if x.is_empty() {
        return Ok(f64::NAN);
    }
    energy_distance(x, y, d)
        .map(f64::from)
        .map_err(|e| format!("energy distance: {e}"))
}

/// One run: trains and scores (see the module docs).
fn run_one(args: &BenchRecoveryArgs, process: &Process, seed: u64) -> Result<Value, String> {
    let data = true_snapshots(
        process,
        &BINS,
        args.per_bin,
        args.tracked,
        stream_seed(seed, TRAIN),
    )?;
    let mut model_args = args.model.clone();
    model_args.seed = seed;
    let trained = model_args.train(&data, &mut |_| {})?;
    let model = Learned::new(&trained.config, &trained.params).map_err(|e| e.to_string())?;
    let mut scores = field_scores(args, process, seed, &model, &trained)?;
    scores["energy"] = rollout_scores(args, process, seed, model, &trained)?;
    Ok(scores)
}

/// The run's identity, training summary and field errors (drift, and D
/// with its trace ratio when the model has noise).
fn field_scores(
    args: &BenchRecoveryArgs,
    process: &Process,
    seed: u64,
    model: &Learned<'_, f32>,
    trained: &Trained,
) -> Result<Value, String> {
    let field_n = (args.per_bin / 4).max(1);
    let field = true_snapshots(
        process,
        &FIELD_TIMES,
        field_n,
        field_n,
        stream_seed(seed, FIELD),
    )?;
    let (z, t) = (&field.z, &field.t);
    let last = BINS[BINS.len() - 1];
    let group_of: Vec<usize> = t
        .iter()
        .map(|&t| match t {
            t if t < last => 0,
            t if t == last => 1,
            _ => 2,
        })
        .collect();
    let group = |r: usize| group_of[r];
    let drift = drift_errors(model, process, z, t, group, 3);
    let mut scores = json!({
        "process": process.name(),
        "d": process.d(),
        "seed": seed,
        "autonomous": process.autonomous(),
        "training": {
            "seconds": trained.seconds,
            "epochs": trained.report.epochs,
            "best_epoch": trained.report.best_epoch,
            "stopped_early": trained.report.stopped_early,
            "train_rows": trained.report.train_rows,
            "validation_rows": trained.report.validation_rows,
        },
        "drift_error": summaries(&drift, &group_of),
        "d_error": null,
        "trace_ratio": null,
    });
    if trained.config.head.is_some() {
        let diffusion = diffusion_errors(model, process, z, t, group, 3);
        scores["d_error"] = summaries(&diffusion, &group_of);
        scores["trace_ratio"] = json!({
            "span": trace_ratio(model, process, z, t, &group_of, &[0, 1]),
            "past": trace_ratio(model, process, z, t, &group_of, &[2]),
        });
    }
    Ok(scores)
}

/// Energy distances over the floor of every rollout of [`ROLLOUTS`] at
/// [`SCORED_TIMES`] (null for the hybrids of a model without noise).
fn rollout_scores(
    args: &BenchRecoveryArgs,
    process: &Process,
    seed: u64,
    model: Learned<'_, f32>,
    trained: &Trained,
) -> Result<Value, String> {
    let (d, n, k_times) = (process.d(), args.per_bin, SCORED_TIMES.len());
    // Held-out true clouds at the start and the scored times.
    let mut times = vec![0.0f32];
    times.extend(SCORED_TIMES);
    let held: Vec<Vec<f32>> = (0..CLOUDS as u64)
        .map(|j| {
            true_snapshots(process, &times, n, n, stream_seed(seed, HELD_OUT + j)).map(|s| s.z)
        })
        .collect::<Result<_, _>>()?;
    let held_at = |j: usize, k: usize| &held[j][(k + 1) * n * d..(k + 2) * n * d];
    let mut start = vec![0.0f32; CLOUDS * n * d];
    for (i, row) in start.chunks_exact_mut(d).enumerate() {
        process.initial_state(
            &mut Rng::stream(stream_seed(seed, START), Family::Data, i as u64),
            row,
        );
    }
    let rollout_seed = stream_seed(seed, ROLLOUT);
    let from_start = |dynamics: &dyn RolloutOf| dynamics.roll(args, &start, rollout_seed);
    let diffusion = trained.config.head.is_some();
    let hybrid = |learned_drift: bool| Hybrid {
        model,
        truth: *process,
        learned_drift,
    };
    let mut paths = Vec::new();
    for name in ROLLOUTS {
        paths.push(match name {
            "model" => Some(from_start(&model)?),
            "true_process" => Some(from_start(process)?),
            "true_process_exact" => Some(rollouts_with(
                process,
                exact_method(),
                &start,
                0.0,
                &SCORED_TIMES,
                rollout_seed,
            )?),
            "true_drift_learned_noise" if diffusion => Some(from_start(&hybrid(false))?),
            "learned_drift_true_noise" if diffusion => Some(from_start(&hybrid(true))?),
            "true_drift_no_noise" => Some(from_start(&DriftOnly(*process))?),
            _ => None,
        });
    }
    let mut floors = Vec::new();
    let mut floor_pairs = Vec::new();
    for k in 0..k_times {
        let mut pairs = Vec::new();
        for i in 0..CLOUDS {
            for j in i + 1..CLOUDS {
                pairs.push(energy(held_at(i, k), held_at(j, k), d)?);
            }
        }
        floors.push(pairs.iter().sum::<f64>() / pairs.len() as f64);
        floor_pairs.push(pairs);
    }
    let per_cloud = n * k_times * d;
    let mut energies = serde_json::Map::new();
    for (name, p) in ROLLOUTS.iter().zip(&paths) {
        let Some(p) = p else {
            energies.insert(name.to_string(), Value::Null);
            continue;
        };
        let (mut distance, mut ratio, mut finite) = (Vec::new(), Vec::new(), Vec::new());
        for (k, floor) in floors.iter().enumerate() {
            let (mut total, mut kept) = (0.0, 0);
            for c in 0..CLOUDS {
                let cloud = rollout_time(&p[c * per_cloud..(c + 1) * per_cloud], d, k_times, k);
                kept += cloud.len() / d;
                for j in 0..CLOUDS {
                    total += energy(&cloud, held_at(j, k), d)?;
                }
            }
            let mean = total / (CLOUDS * CLOUDS) as f64;
            distance.push(mean);
            ratio.push(mean / floor);
            finite.push(kept);
        }
        energies.insert(
            name.to_string(),
            json!({"distance": distance, "ratio": ratio, "finite_trajectories": finite}),
        );
    }
    Ok(json!({
        "times": tidy(&SCORED_TIMES),
        "floor": floors,
        "floor_pairs": floor_pairs,
        "rollouts": energies,
    }))
}

/// How the rollouts are integrated, for the report.
fn rollout_method_json(args: &BenchRecoveryArgs) -> Value {
    let describe = |m: Method<f32>| match m {
        Method::EulerMaruyama(c) | Method::StrangRk4(c) | Method::PlatenWeak2(c) => {
            json!({"method": m.name(), "h_max": tidy(&[c.h_max])[0]})
        }
        Method::Rk4 { h } => json!({"method": "rk4", "h": tidy(&[h])[0]}),
        Method::Dopri5(c) => {
            json!({"method": "dopri5", "rtol": tidy(&[c.rtol])[0], "atol": tidy(&[c.atol])[0]})
        }
    };
    json!({
        "with_noise": describe(args.method_for(true)),
        "without_noise": describe(args.method_for(false)),
        "true_process_exact": describe(exact_method()),
    })
}

/// Energy over floor of rollout `name` at scored time `time` in a run's
/// scores.
fn ratio_at(run: &Value, name: &str, time: f32) -> Option<f64> {
    let k = SCORED_TIMES.iter().position(|&t| t == time)?;
    run["energy"]["rollouts"][name]["ratio"][k].as_f64()
}

/// `mean (v₀ / v₁ / …)` of `get` over `runs`, "–" when absent.
fn cell(runs: &[&Value], get: &dyn Fn(&Value) -> Option<f64>) -> String {
    let values: Vec<Option<f64>> = runs.iter().map(|r| get(r)).collect();
    if values.iter().all(Option::is_none) {
        return "–".into();
    }
    let show = |v: f64| match v.abs() {
        a if !a.is_finite() => "nan".to_string(),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    };
    let given: Vec<f64> = values.iter().flatten().copied().collect();
    let mean = given.iter().sum::<f64>() / given.len() as f64;
    let each: Vec<String> = values.iter().map(|v| v.map_or("–".into(), show)).collect();
    format!("{} ({})", show(mean), each.join(" / "))
}

/// The Markdown table of `runs` (rows process × d in the order given).
fn table(runs: &[Value], processes: &[String], dims: &[usize]) -> String {
    let at = |name: &'static str, time: f32| move |r: &Value| ratio_at(r, name, time);
    let error =
        |which: &'static str, stat: &'static str| move |r: &Value| r[which]["span"][stat].as_f64();
    type Column = (&'static str, Box<dyn Fn(&Value) -> Option<f64>>);
    let columns: Vec<Column> = vec![
        ("D error, median", Box::new(error("d_error", "median"))),
        ("D error, mean", Box::new(error("d_error", "mean"))),
        (
            "drift error, median",
            Box::new(error("drift_error", "median")),
        ),
        ("drift error, mean", Box::new(error("drift_error", "mean"))),
        ("E/floor t = 0.5", Box::new(at("model", 0.5))),
        ("E/floor t = 1.0", Box::new(at("model", 1.0))),
        ("E/floor t = 1.5", Box::new(at("model", 1.5))),
        ("true process t = 0.5", Box::new(at("true_process", 0.5))),
        ("true process t = 1.0", Box::new(at("true_process", 1.0))),
        ("true process t = 1.5", Box::new(at("true_process", 1.5))),
        (
            "true process, exact, t = 1.5",
            Box::new(at("true_process_exact", 1.5)),
        ),
        (
            "true drift + learned noise t = 0.5",
            Box::new(at("true_drift_learned_noise", 0.5)),
        ),
        (
            "learned drift + true noise t = 0.5",
            Box::new(at("learned_drift_true_noise", 0.5)),
        ),
        (
            "true drift, no noise t = 0.5",
            Box::new(at("true_drift_no_noise", 0.5)),
        ),
        (
            "training s",
            Box::new(|r: &Value| r["training"]["seconds"].as_f64()),
        ),
    ];
    let mut out = String::from("| process | d |");
    for (name, _) in &columns {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    for name in processes {
        for &d in dims {
            let rows: Vec<&Value> = runs
                .iter()
                .filter(|r| r["process"] == name.as_str() && r["d"] == d)
                .collect();
            if rows.is_empty() {
                continue;
            }
            out.push_str(&format!("| {name} | {d} |"));
            for (_, get) in &columns {
                out.push_str(&format!(" {} |", cell(&rows, get.as_ref())));
            }
            out.push('\n');
        }
    }
    out
}

pub fn run(args: &BenchRecoveryArgs) -> Result<(), String> {
    if args.per_bin == 0 || args.tracked > args.per_bin {
        return Err("--tracked: need 1 ≤ --per-bin and --tracked ≤ --per-bin".into());
    }
    if args.dims.is_empty() || args.seeds.is_empty() || args.processes.is_empty() {
        return Err("--processes, --dims and --seeds each need at least one value".into());
    }
    if args
        .rollout_h_max
        .is_some_and(|h| !(h.is_finite() && h > 0.0))
    {
        return Err("--rollout-h-max: must be finite and positive".into());
    }
    if !(args.rollout_method == MethodArg::Auto || args.rollout_method.is_sde()) {
        return Err(format!(
            "--rollout-method {}: an SDE method is needed (auto, strang, em or weak2)",
            args.rollout_method.name()
        ));
    }
    let processes: Vec<Process> = args
        .processes
        .iter()
        .flat_map(|name| args.dims.iter().map(move |&d| (name, d)))
        .map(|(name, d)| Process::named(name, d).map_err(|e| format!("--dims: {e}")))
        .collect::<Result<_, _>>()?;
    let mut runs = Vec::new();
    for process in &processes {
        for &seed in &args.seeds {
            let scores = run_one(args, process, seed)?;
            if !args.quiet {
                eprintln!(
                    "bench-recovery: {} d = {} seed {seed}: trained {:.1} s ({} epochs), D error median {:.3}, E/floor at t = 0.5 {:.2}",
                    process.name(),
                    process.d(),
                    scores["training"]["seconds"].as_f64().unwrap_or(f64::NAN),
                    scores["training"]["epochs"],
                    scores["d_error"]["span"]["median"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    ratio_at(&scores, "model", 0.5).unwrap_or(f64::NAN),
                );
            }
            runs.push(scores);
        }
    }
    let text = table(&runs, &args.processes, &args.dims);
    print!("{text}");
    if let Some(path) = &args.table {
        write_atomic(path, |w| w.write_all(text.as_bytes()))?;
    }
    let report = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "protocol": {
            "bins": tidy(&BINS),
            "per_bin": args.per_bin,
            "tracked": args.tracked,
            "data_step": tidy(&[DATA_STEP])[0],
            "scored_times": tidy(&SCORED_TIMES),
            "field_times": tidy(&FIELD_TIMES),
            "field_embryos": (args.per_bin / 4).max(1),
            "clouds": CLOUDS,
            "rollouts": rollout_method_json(args),
        },
        "training_flags": format!("{:?}", args.model),
        "runs": runs,
    });
    let json_text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    write_atomic(&args.out, |w| w.write_all(json_text.as_bytes()))
}
