//! `morphosde train`: learns the drift (and, with `--learn-diffusion true`,
//! the diffusion factor) from a snapshot table and writes the model file
//! (atomically), a run summary (JSON) and the training curves (SVG).
//!
//! Flags are kebab-case; the seed's spellings (`--learn_diffusion`,
//! `--lambda_diff`, `--diffusion_low_rank`, `--diffusion_epsilon`,
//! `--diffusion_diagonal`) are accepted as aliases. The numerical work is
//! `morphosde_core::train::fit`; this module parses, reports and writes.

use super::matching::{MatchArgs, report_json};
use crate::csvio::{check_output, write_atomic};
use crate::data::{CoordinateColumns, Snapshots};
use crate::plots;
use clap::{ArgAction, Args, ValueEnum};
use morphosde_core::cluster::ClusterConfig;
use morphosde_core::codec;
use morphosde_core::integrate::rollout::default_workers;
use morphosde_core::minibatch::UNTRACKED;
use morphosde_core::model::Learned;
use morphosde_core::model::{
    Config, DEFAULT_RANK, DiffusionHead, DriftLoss, DriftTeacher, Layout, Residual, TargetMode,
};
use morphosde_core::train::AdamState;
use morphosde_core::train::acceptance::{
    RangeCheck, RangeReport, check_rollouts, check_rollouts_workspace_len,
};
use morphosde_core::train::matching::MatchReport;
use morphosde_core::train::{
    Control, EpochReport, FitConfig, FitReport, ModelLearner, Observations, StepPlan, fit,
    fit_workspace_len,
};
use morphosde_core::{Error, ErrorKind};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `From` both ways between a command-line choice and the core's enum it
/// names, variant by variant.
macro_rules! mirror_enum {
    ($arg:ident <=> $core:ident { $($a:ident <=> $c:ident),+ $(,)? }) => {
        impl From<$arg> for $core {
            fn from(a: $arg) -> Self {
                match a {
                    $($arg::$a => $core::$c),+
                }
            }
        }
        impl From<$core> for $arg {
            fn from(c: $core) -> Self {
                match c {
                    $($core::$c => $arg::$a),+
                }
            }
        }
    };
}

/// Covariance target choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// Option A: matched pairs over each source's k nearest sources.
    Pairwise,
    /// Option B: residuals weighted by the transport plan row.
    Plan,
}

/// Drift teacher choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DriftTeacherArg {
    /// The seed's f(z_t) ≈ v̂: the drift learns the chord over the gap.
    Chord,
    /// The learned flow over the gap reproduces the teacher's displacement
    /// z_t + v̂·h (right at finite frame gaps; one RK4 flow per step).
    Flow,
}

/// Residual choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ResidualArg {
    /// The seed's r = Δz − f·h.
    OneStep,
    /// r = z_{t+h} − φ_h(z_t), the learned drift's flow over the gap.
    Flow,
    /// Flow residuals, and D_θ carried through the flow's Jacobian over the
    /// gap before it meets D̂ (right at finite frame gaps).
    Propagated,
    /// As propagated, with the flow's Jacobian frozen over each gap at its
    /// midpoint (one Jacobian per source, D_θ evaluated there): several
    /// times cheaper, exact for a linear drift.
    PropagatedFrozen,
}

/// Drift loss choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DriftLossArg {
    /// Mean squared error against the teachers, weighted by row mass.
    Mse,
    /// Gaussian NLL with a learned per-coordinate variance.
    Nll,
    /// Generalised least squares: each teacher's error whitened by the
    /// precision of its noise (the model's own D, held fixed).
    Gls,
}

mirror_enum!(DriftLossArg <=> DriftLoss { Mse <=> Mse, Nll <=> Nll, Gls <=> Gls });
mirror_enum!(TargetArg <=> TargetMode { Pairwise <=> Pairwise, Plan <=> PlanWeighted });
mirror_enum!(DriftTeacherArg <=> DriftTeacher { Chord <=> Chord, Flow <=> Flow });
mirror_enum!(ResidualArg <=> Residual {
    OneStep <=> OneStep,
    Flow <=> Flow,
    Propagated <=> Propagated,
    PropagatedFrozen <=> PropagatedFrozen,
});

/// `--time-scale`: `auto` or a fixed scale of the time features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeScaleArg {
    /// `1/(t_max − t_min)` of the training data's times.
    Auto,
    /// This scale (finite, > 0), in 1/(time unit).
    Fixed(f64),
}

impl TimeScaleArg {
    /// Parses `auto` or a finite number > 0.
    fn parse(text: &str) -> Result<Self, String> {
        if text == "auto" {
            return Ok(TimeScaleArg::Auto);
        }
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(TimeScaleArg::Fixed(v)),
            _ => Err(format!(
                "expected 'auto' or a finite number > 0 (1/time unit), got '{text}'"
            )),
        }
    }

    /// The scale for training times `t`: `auto` maps their span to one unit
    /// (1 when the span is 0 or there are no times).
    pub fn resolve(self, t: &[f32]) -> f64 {
        match self {
            TimeScaleArg::Fixed(v) => v,
            TimeScaleArg::Auto => {
                let (lo, hi) = t
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v as f64), hi.max(v as f64))
                    });
                let span = hi - lo;
                if span > 0.0 && span.is_finite() {
                    1.0 / span
                } else {
                    1.0
                }
            }
        }
    }
}

/// Model, UOT, clustering and optimiser knobs shared by `train`, `demo`
/// and `ablate`. Every default is the core's (`Config::default()`,
/// `FitConfig::default()`), which the C ABI and the Python module give too.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Learn the diffusion factor L(z,t) besides the drift.
    #[arg(long = "learn-diffusion", alias = "learn_diffusion", action = ArgAction::Set, default_value_t = Config::default().head.is_some())]
    pub learn_diffusion: bool,
    /// Weight λ of the diffusion loss (after the warm-up).
    #[arg(long = "lambda-diff", alias = "lambda_diff", default_value_t = Config::default().lambda_diff)]
    pub lambda_diff: f64,
    /// Low-rank diffusion head L ∈ R^{d×q}.
    #[arg(long = "diffusion-low-rank", alias = "diffusion_low_rank", action = ArgAction::Set, default_value_t = matches!(Config::default().head, Some(DiffusionHead::LowRank { .. })))]
    pub diffusion_low_rank: bool,
    /// Rank q of the low-rank head.
    #[arg(long = "q", default_value_t = DEFAULT_RANK)]
    pub q: usize,
    /// ε added to the softplus diagonal of L.
    #[arg(long = "diffusion-epsilon", alias = "diffusion_epsilon", default_value_t = Config::default().diffusion_epsilon)]
    pub diffusion_epsilon: f64,
    /// Diagonal diffusion head (ablation).
    #[arg(long = "diffusion-diagonal", alias = "diffusion_diagonal", action = ArgAction::Set, default_value_t = Config::default().head == Some(DiffusionHead::Diagonal))]
    pub diffusion_diagonal: bool,
    /// Covariance target D̂.
    #[arg(long, value_enum, default_value_t = Config::default().target_mode.into())]
    pub target: TargetArg,
    /// Residual the target is built from.
    #[arg(long, value_enum, default_value_t = Config::default().residual.into())]
    pub residual: ResidualArg,
    /// What the drift learns from a teacher velocity v̂ over a frame gap h
    /// (chord: the seed's).
    #[arg(long, value_enum, default_value_t = Config::default().drift_teacher.into())]
    pub drift_teacher: DriftTeacherArg,
    /// Loss of the drift against its teachers.
    #[arg(long, value_enum, default_value_t = Config::default().drift_loss.into())]
    pub drift_loss: DriftLossArg,
    /// RK4 substeps of the flow over one frame gap (flow and propagated
    /// residuals).
    #[arg(long, default_value_t = Config::default().flow_substeps)]
    pub flow_substeps: usize,
    /// Pairwise target: residuals averaged over each source's k nearest
    /// sources (counting itself; 1 = its own residual, the network does the
    /// smoothing).
    #[arg(long, default_value_t = Config::default().k_neighbours)]
    pub k_neighbours: usize,
    /// Shrinkage α of each target towards its isotropic part,
    /// D̂ ← (1−α) D̂ + α (tr D̂/d) I.
    #[arg(long, default_value_t = Config::default().shrinkage)]
    pub shrinkage: f64,
    /// Encoder hidden layers and width.
    #[arg(long, default_value_t = Config::default().depth)]
    pub depth: usize,
    #[arg(long, default_value_t = Config::default().width)]
    pub width: usize,
    /// Sinusoidal time features sin(2^k s t), cos(2^k s t), s = --time-scale
    /// (2: one frequency, smooth over the data's span).
    #[arg(long, default_value_t = Config::default().time_features)]
    pub time_features: usize,
    /// Scale s of the time features, in 1/(time unit of the data): "auto"
    /// = 1/(t_max − t_min) of the training times, or a number > 0. The
    /// lowest feature repeats every 2π/s time units, so with s = 1 and
    /// times in hours the network could not tell t = 1 h from t = 7.3 h;
    /// auto maps the data's span to one unit so no feature wraps over it.
    /// The model file keeps s; drift and D stay per unit of the data's time.
    #[arg(long, default_value = "auto", value_parser = TimeScaleArg::parse)]
    pub time_scale: TimeScaleArg,
    /// No time input at all (0 time features): the learned drift and D do
    /// not depend on t, for processes that do not (the model is then the
    /// same before, inside and after the training span). The model file
    /// and the summary say so.
    #[arg(long, conflicts_with_all = ["time_features", "time_scale"])]
    pub autonomous: bool,
    /// Epochs over which λ ramps up from 0.
    #[arg(long, default_value_t = Config::default().warmup_epochs)]
    pub warmup_epochs: u32,
    /// Adam learning rate (the network works in standardised coordinates,
    /// unit spread per coordinate).
    #[arg(long, default_value_t = Config::default().learning_rate)]
    pub learning_rate: f64,
    /// Epochs at most, and optimiser steps per epoch.
    #[arg(long, default_value_t = FitConfig::<f64>::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = FitConfig::<f64>::default().steps_per_epoch)]
    pub steps_per_epoch: usize,
    /// Sources and targets per minibatch.
    #[arg(long, default_value_t = FitConfig::<f64>::default().batch)]
    pub batch: usize,
    /// UOT ε as a fraction of the batch's median squared distance.
    #[arg(long, default_value_t = FitConfig::<f64>::default().epsilon_relative)]
    pub epsilon_relative: f64,
    /// The bridge ε: from the second epoch on, UOT ε = 2σ²h per batch with
    /// σ² = tr(D)/d of the learned noise (updated after every epoch; at
    /// least 0.01 × the median): the plan becomes the Schrödinger-bridge
    /// coupling of the learned noise, so a plan-weighted target reads D
    /// rather than the plan's blur ≈ ε/(2h). Needs --learn-diffusion true.
    #[arg(long)]
    pub bridge_epsilon: bool,
    /// UOT ρ (both marginals) as a fraction of that median; "inf" = balanced.
    #[arg(long, default_value_t = FitConfig::<f64>::default().rho_relative)]
    pub rho_relative: f64,
    /// Self-edge lower bound β on tracked pairs (Π_ij ≥ β·min(a_i, b_j)).
    #[arg(long, default_value_t = FitConfig::<f64>::default().track_bound)]
    pub track_bound: f64,
    /// Clusters of the time-weighted spectral clustering (local UOT
    /// minibatches), and its σ_t. 1 = whole time bins: clusters that cut
    /// the developmental axis keep mass from moving along it.
    #[arg(long, default_value_t = FitConfig::<f64>::default().cluster.k)]
    pub clusters: usize,
    #[arg(long, default_value_t = FitConfig::<f64>::default().cluster.sigma_t)]
    pub sigma_t: f64,
    /// Fraction of embryos held out for validation and early stopping
    /// (every held-out tracked embryo is lost to the diffusion targets).
    #[arg(long, default_value_t = FitConfig::<f64>::default().validation_fraction)]
    pub validation_fraction: f64,
    /// Epochs whose validation loss is worse than the best by more than
    /// the tolerance before stopping.
    #[arg(long, default_value_t = FitConfig::<f64>::default().patience)]
    pub patience: usize,
    /// Relative tolerance of the model choice: the kept model is the latest
    /// whose validation loss is within (1 + tolerance)·best (the loss is
    /// mostly the teachers' noise, flat within a few percent, while D keeps
    /// improving).
    #[arg(long, default_value_t = FitConfig::<f64>::default().validation_tolerance)]
    pub validation_tolerance: f64,
    /// Learning rate of the last epoch as a fraction of the first (cosine
    /// decay; 1 = constant).
    #[arg(long, default_value_t = FitConfig::<f64>::default().final_learning_rate)]
    pub final_learning_rate: f64,
    /// Each time bin keeps at least this many validation rows (at most a
    /// quarter of the bin), so the validation loss covers early bins too.
    #[arg(long, default_value_t = FitConfig::<f64>::default().validation_min_per_bin)]
    pub validation_min_per_bin: usize,
    /// Divergence guard: a step whose drift or diffusion loss exceeds this
    /// multiple of its lowest epoch mean (or an epoch whose validation loss
    /// exceeds it times the lowest), or three non-finite steps in a row,
    /// roll the model back to the last kept parameters, restart Adam and
    /// halve the learning rate.
    #[arg(long, default_value_t = FitConfig::<f64>::default().divergence_factor)]
    pub divergence_factor: f64,
    /// Roll-backs allowed before training stops as diverged (no model is
    /// written then).
    #[arg(long, default_value_t = FitConfig::<f64>::default().max_rollbacks)]
    pub max_rollbacks: usize,
    #[command(flatten)]
    pub matching: MatchArgs,
    /// Seed of everything random (initialisation, batches, clustering).
    #[arg(long, default_value_t = Config::default().seed)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Snapshot table (CSV with a header; see the README's data format).
    #[arg(long)]
    pub data: PathBuf,
    /// Time column (name or 0-based number).
    #[arg(long, default_value = "t")]
    pub time_column: String,
    /// Track-id column (optional; negative or NaN = untracked).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Coordinate columns: names or numbers, comma-separated…
    #[arg(long, value_delimiter = ',', conflicts_with = "prefix")]
    pub columns: Option<Vec<String>>,
    /// …or every column whose name starts with this prefix (default: all
    /// columns except time and id).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Drop the rows at these times before training (comma-separated; each
    /// must match a time of --data to within 1% of its smallest frame gap),
    /// e.g. a bin held out to test the model on.
    #[arg(
        long,
        value_delimiter = ',',
        allow_negative_numbers = true,
        conflicts_with = "times"
    )]
    pub exclude_times: Vec<f64>,
    /// Train on the rows at these times only (comma-separated; matched as
    /// --exclude-times).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub times: Vec<f64>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Model file to write.
    #[arg(long, default_value = "model.msde")]
    pub out: PathBuf,
    /// Run summary (JSON) and training curves (SVG) go here.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    #[arg(long)]
    pub curves: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A trained model and its history.
pub struct Trained {
    pub config: Config,
    pub params: Vec<f32>,
    pub report: FitReport<f32>,
    pub history: Vec<EpochReport<f32>>,
    /// The acceptance check's findings (the model passed it).
    pub range: RangeReport<f32>,
    /// The matching stage's report (`None` when it was off).
    pub matching: Option<MatchReport<f32>>,
    pub seconds: f64,
}

/// What to try when training diverged (appended to the error).
const DIVERGED_ADVICE: &str = "no model was written. Try a lower --learning-rate \
(e.g. half of it) or --max-rollbacks to allow more roll-backs, and check the data for \
outliers and mixed units";

/// The error of a diverged fit, with what to try.
fn diverged(e: &Error) -> String {
    format!("training diverged: {e}; {DIVERGED_ADVICE}")
}

/// The acceptance check's refusal in words: where the rollouts went, and
/// what to try given whether the fit rolled back on the way.
fn refused(range: &RangeReport<f32>, report: &FitReport<f32>, names: &[String]) -> String {
    let place = range.worst.map_or(String::new(), |w| {
        format!(
            " (the farthest: from t = {} to t = {}, {} = {} against the allowed [{}, {}])",
            w.from, w.at, names[w.coordinate], w.value, w.low, w.high
        )
    });
    let advice = if report.rollbacks > 0 {
        format!(
            "the fit rolled back {} times on exploding losses: {DIVERGED_ADVICE}",
            report.rollbacks
        )
    } else {
        String::from(
            "the losses stayed finite, so the model is most likely undertrained: no model was \
             written. Try more --epochs or --steps-per-epoch, or time units closer to the \
             data's frame gaps (the drift and D are per unit of time)",
        )
    };
    format!(
        "the trained model is not usable: its rollouts from the data leave the data's range \
         (widened by its own width on each side) for {:.0}% of the trajectories of one \
         rollout{place}; {advice}",
        100.0 * range.worst_fraction
    )
}

impl ModelArgs {
    /// The diffusion head the flags ask for; an error when they ask for
    /// two shapes.
    pub fn head(&self) -> Result<Option<DiffusionHead>, String> {
        Ok(
            match (
                self.learn_diffusion,
                self.diffusion_low_rank,
                self.diffusion_diagonal,
            ) {
                (false, _, _) => None,
                (true, true, true) => {
                    return Err(
                        "--diffusion-diagonal cannot be combined with --diffusion-low-rank".into(),
                    );
                }
                (true, true, false) => Some(DiffusionHead::LowRank { q: self.q }),
                (true, false, true) => Some(DiffusionHead::Diagonal),
                (true, false, false) => Some(DiffusionHead::Full),
            },
        )
    }

    /// The model config for training data of `d` dimensions at times `t`.
    pub fn config(&self, d: usize, t: &[f32]) -> Result<Config, String> {
        Ok(Config {
            d,
            time_features: if self.autonomous {
                0
            } else {
                self.time_features
            },
            time_scale: self.time_scale.resolve(t),
            depth: self.depth,
            width: self.width,
            head: self.head()?,
            lambda_diff: self.lambda_diff,
            diffusion_epsilon: self.diffusion_epsilon,
            warmup_epochs: self.warmup_epochs,
            target_mode: self.target.into(),
            residual: self.residual.into(),
            drift_teacher: self.drift_teacher.into(),
            drift_loss: self.drift_loss.into(),
            flow_substeps: self.flow_substeps,
            k_neighbours: self.k_neighbours,
            shrinkage: self.shrinkage,
            learning_rate: self.learning_rate,
            seed: self.seed,
            ..Config::default()
        })
    }

    /// The training-loop config.
    pub fn fit_config(&self) -> FitConfig<f32> {
        let defaults = FitConfig::<f32>::default();
        let cluster = ClusterConfig {
            k: self.clusters,
            sigma_t: self.sigma_t as f32,
            seed: self.seed,
            ..defaults.cluster
        };
        FitConfig {
            epochs: self.epochs,
            steps_per_epoch: self.steps_per_epoch,
            batch: self.batch,
            epsilon_relative: self.epsilon_relative as f32,
            bridge_epsilon: self.bridge_epsilon,
            rho_relative: self.rho_relative as f32,
            track_bound: self.track_bound as f32,
            cluster,
            validation_fraction: self.validation_fraction as f32,
            patience: self.patience,
            validation_tolerance: self.validation_tolerance as f32,
            final_learning_rate: self.final_learning_rate as f32,
            validation_min_per_bin: self.validation_min_per_bin,
            divergence_factor: self.divergence_factor as f32,
            max_rollbacks: self.max_rollbacks,
            seed: self.seed,
            ..defaults
        }
    }

    /// Trains on `data`; `progress` sees every epoch. A fit that diverged,
    /// or whose model's rollouts leave the data's range
    /// (`morphosde_core::train::acceptance`), is an error that says what
    /// to try.
    pub fn train(
        &self,
        data: &Snapshots,
        progress: &mut dyn FnMut(&EpochReport<f32>),
    ) -> Result<Trained, String> {
        let config = self.config(data.d, &data.t)?;
        config
            .validate()
            .map_err(|e| format!("model config: {e}"))?;
        let fit_cfg = self.fit_config();
        let layout = Layout::new(&config).map_err(|e| format!("model config: {e}"))?;
        let mut params = vec![0.0f32; layout.len];
        layout
            .init(config.seed, &mut params)
            .map_err(|e| format!("initialisation: {e}"))?;
        let (mut best, mut m, mut v) =
            (params.clone(), vec![0.0; layout.len], vec![0.0; layout.len]);
        let adam = AdamState {
            m: &mut m,
            v: &mut v,
            steps: 0,
        };
        let plan = StepPlan::new(&config).map_err(|e| format!("model: {e}"))?;
        let mut learner = ModelLearner::new(&plan, &mut params, &mut best, adam)
            .map_err(|e| format!("model: {e}"))?;
        let track: Vec<u32> = data.track.iter().map(|t| t.unwrap_or(UNTRACKED)).collect();
        let obs = Observations {
            z: &data.z,
            t: &data.t,
            track: &track,
            d: data.d,
        };
        let need = fit_workspace_len(data.len(), data.d, &fit_cfg, &learner)
            .map_err(|e| format!("training config: {e}"))?;
        let mut floats = vec![0.0f32; need.floats];
        let mut ints = vec![0u32; need.indices];
        let mut history = Vec::new();
        let start = Instant::now();
        let report = fit(
            &obs,
            &fit_cfg,
            &mut learner,
            &mut floats,
            &mut ints,
            &mut |r| {
                history.push(*r);
                progress(r);
                Control::Continue
            },
        )
        .map_err(|e| match e.kind {
            ErrorKind::Diverged => diverged(&e),
            _ => format!("training: {e}"),
        })?;
        let matching = self.matching.run(&config, &mut params, &obs, self.seed)?;
        let seconds = start.elapsed().as_secs_f64();
        let model = Learned::new(&config, &params).map_err(|e| format!("model: {e}"))?;
        let check = RangeCheck {
            seed: self.seed,
            ..RangeCheck::default()
        };
        let mut ws =
            vec![
                0.0f32;
                check_rollouts_workspace_len(&model, obs.t.len(), &check, default_workers())
            ];
        let range = check_rollouts(&model, &obs, &check, &mut ws)
            .map_err(|e| format!("checking the trained model: {e}"))?;
        range
            .verdict(&check)
            .map_err(|_| refused(&range, &report, &data.names))?;
        Ok(Trained {
            config,
            params,
            report,
            history,
            range,
            matching,
            seconds,
        })
    }
}

/// A one-line progress bar on stderr.
pub fn progress_bar(epochs: usize) -> impl FnMut(&EpochReport<f32>) {
    move |r| {
        let done = r.epoch + 1;
        let filled = done * 30 / epochs.max(1);
        let valid = r
            .validation
            .map_or(String::from("-"), |l| format!("{:.4}", l.total));
        let trouble = if r.skipped + r.rollbacks > 0 {
            format!("  skipped {}  rolled back {}", r.skipped, r.rollbacks)
        } else {
            String::new()
        };
        eprint!(
            "\r[{}{}] epoch {done}/{epochs}  train {:.4} (drift {:.4}, diffusion {:.4})  valid {valid}  best {}{trouble}   ",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            r.train.total,
            r.train.drift,
            r.train.diffusion,
            r.best_epoch + 1
        );
        let _ = std::io::stderr().flush();
    }
}

impl Trained {
    /// The model file's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        let len = codec::model_bytes_len::<f32>(&self.config).map_err(|e| e.to_string())?;
        let mut out = vec![0u8; len];
        codec::save(&self.config, &self.params, &mut out).map_err(|e| format!("saving: {e}"))?;
        Ok(out)
    }

    /// Writes the model file atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let bytes = self.bytes()?;
        write_atomic(path, |w| w.write_all(&bytes))
    }

    /// Per-epoch losses as JSON.
    pub fn history_json(&self) -> Value {
        let losses = |l: &morphosde_core::train::Losses<f32>| json!({"total": l.total, "drift": l.drift, "diffusion": l.diffusion});
        Value::Array(
            self.history
                .iter()
                .map(|r| {
                    json!({
                        "epoch": r.epoch,
                        "train": losses(&r.train),
                        "validation": r.validation.as_ref().map(losses),
                        "skipped_batches": r.skipped,
                        "rollbacks": r.rollbacks,
                        "learning_rate_factor": r.learning_rate_factor,
                        "whole_bin_batches": r.whole_bins,
                    })
                })
                .collect(),
        )
    }

    /// The run summary.
    pub fn summary_json(&self) -> Value {
        let r = &self.report;
        let inputs = Layout::new(&self.config)
            .map(|layout| layout.inputs(&self.params))
            .ok();
        json!({
            "d": self.config.d,
            "learn_diffusion": self.config.head.is_some(),
            "diffusion_head": format!("{:?}", self.config.head),
            "autonomous": self.config.time_features == 0,
            "time_scale": self.config.time_scale,
            "time_span": inputs.map(|i| i.time_span),
            "standardisation": inputs.map(|i| json!({"mean": i.mean(), "scale": i.scale()})),
            "residual": format!("{:?}", self.config.residual),
            "drift_teacher": format!("{:?}", self.config.drift_teacher),
            "drift_loss": format!("{:?}", self.config.drift_loss),
            "parameters": self.params.len(),
            "epochs": r.epochs,
            "best_epoch": r.best_epoch,
            "stopped_early": r.stopped_early,
            "best_validation_loss": r.best_validation.map(|l| l.total),
            "train_rows": r.train_rows,
            "validation_rows": r.validation_rows,
            "rollbacks": r.rollbacks,
            "skipped_batches": self.history.iter().map(|e| e.skipped).sum::<usize>(),
            "rollout_check": {
                "end_points": self.range.checked,
                "outside": self.range.outside,
                "worst_fraction_outside": self.range.worst_fraction,
            },
            "clusters": r.clusters,
            "matching": report_json(&self.matching),
            "seconds": self.seconds,
            "history": self.history_json(),
        })
    }

    /// Training curves (train and validation totals).
    pub fn plot_curves(&self, path: &Path) -> Result<(), String> {
        let train: Vec<f64> = self.history.iter().map(|r| r.train.total as f64).collect();
        let valid: Vec<f64> = self
            .history
            .iter()
            .map(|r| r.validation.map_or(f64::NAN, |l| l.total as f64))
            .collect();
        plots::training_curves(path, &[("train", &train), ("validation", &valid)])
    }
}

pub fn run(args: &TrainArgs) -> Result<(), String> {
    // Every output is checked before training and written after it, the
    // model last: a failed run leaves an existing model as it was.
    check_output(&args.out, "--out")?;
    for (path, what) in [(&args.summary, "--summary"), (&args.curves, "--curves")] {
        if let Some(p) = path {
            check_output(p, what)?;
        }
    }
    let coords = CoordinateColumns::from_flags(&args.columns, &args.prefix);
    let all = Snapshots::read(
        &args.data,
        &args.time_column,
        args.id_column.as_deref(),
        &coords,
    )?;
    let (data, dropped) = all.select_times(&args.exclude_times, &args.times)?;
    if args.id_column.is_none() {
        for name in all.id_like_coordinates() {
            eprintln!(
                "warning: column '{name}' looks like track ids but is trained as a coordinate; \
                 pass --id-column {name} if it holds track ids"
            );
        }
    }
    if all.time_origin != 0.0 && !args.quiet {
        eprintln!(
            "note: the times are too large for 32-bit floats to keep their gaps; the model's \
             time is the file's minus {} (give simulate and field times on that scale)",
            all.time_origin
        );
    }
    let mut bar = progress_bar(args.model.epochs);
    let quiet = args.quiet;
    let trained = args.model.train(&data, &mut |r| {
        if !quiet {
            bar(r)
        }
    })?;
    if !quiet {
        eprintln!();
    }
    let mut summary = trained.summary_json();
    summary["data_times"] = json!(all.file_times());
    summary["time_origin"] = json!(all.time_origin);
    summary["excluded_times"] = json!(dropped);
    summary["excluded_rows"] = json!(all.len() - data.len());
    if let Some(path) = &args.summary {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        write_atomic(path, |w| w.write_all(text.as_bytes()))?;
    }
    if let Some(path) = &args.curves {
        trained.plot_curves(path)?;
    }
    trained.save(&args.out)?;
    println!(
        "{}",
        json!({"model": args.out, "epochs": trained.report.epochs,
               "best_epoch": trained.report.best_epoch,
               "best_validation_loss": trained.report.best_validation.map(|l| l.total),
               "excluded_times": dropped, "seconds": trained.seconds})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        model: ModelArgs,
    }

    /// The flags' defaults are the core's: the model config of `train` with
    /// no flags is `Config::default()` (but for the data's d and the `auto`
    /// time scale), and its training-loop config is `FitConfig::default()`
    /// (but for the seed the clustering takes from `--seed`).
    #[test]
    fn defaults_are_the_cores() {
        let args = Flags::parse_from(["train"]).model;
        let t = [0.0f32, 4.0];
        assert_eq!(
            args.config(5, &t).unwrap(),
            Config {
                d: 5,
                time_scale: 0.25,
                ..Config::default()
            }
        );
        assert_eq!(args.fit_config(), FitConfig::<f32>::default());
        assert!(!args.autonomous);
    }

    /// The three head flags pick one head; two shapes at once are refused.
    #[test]
    fn head_flags_pick_one_head() {
        let head = |flags: &[&str]| {
            let mut argv = vec!["train"];
            argv.extend(flags);
            Flags::parse_from(argv).model.head()
        };
        assert_eq!(head(&[]), Ok(None));
        assert_eq!(head(&["--diffusion-low-rank", "true"]), Ok(None));
        let on = ["--learn-diffusion", "true"];
        assert_eq!(head(&on), Ok(Some(DiffusionHead::Full)));
        assert_eq!(
            head(&[on[0], on[1], "--diffusion-low-rank", "true", "--q", "3"]),
            Ok(Some(DiffusionHead::LowRank { q: 3 }))
        );
        assert_eq!(
            head(&[on[0], on[1], "--diffusion-diagonal", "true"]),
            Ok(Some(DiffusionHead::Diagonal))
        );
        let both = [
            on[0],
            on[1],
            "--diffusion-low-rank",
            "true",
            "--diffusion-diagonal",
            "true",
        ];
        assert!(head(&both).unwrap_err().contains("--diffusion-diagonal"));
    }

    /// The kebab-case flags and the seed's spellings set the same fields.
    #[test]
    fn seed_spellings_are_aliases() {
        let set = |flags: [&str; 10]| {
            let mut argv = vec!["train"];
            argv.extend(flags);
            let m = Flags::parse_from(argv).model;
            (
                m.learn_diffusion,
                m.lambda_diff,
                m.diffusion_low_rank,
                m.diffusion_epsilon,
                m.diffusion_diagonal,
            )
        };
        let kebab = set([
            "--learn-diffusion",
            "true",
            "--lambda-diff",
            "0.5",
            "--diffusion-low-rank",
            "true",
            "--diffusion-epsilon",
            "0.01",
            "--diffusion-diagonal",
            "false",
        ]);
        let seed = set([
            "--learn_diffusion",
            "true",
            "--lambda_diff",
            "0.5",
            "--diffusion_low_rank",
            "true",
            "--diffusion_epsilon",
            "0.01",
            "--diffusion_diagonal",
            "false",
        ]);
        assert_eq!(kebab, (true, 0.5, true, 0.01, false));
        assert_eq!(seed, kebab);
    }
}
