//! Training from raw snapshots over the C ABI: the core's training loop
//! (cluster → per step: sample two adjacent time bins of one cluster → UOT
//! with the self-edge bound on tracked pairs → targets → train step; per
//! epoch: validation on held-out embryos, early stopping, best model kept)
//! run on a trainer, with caller workspaces only (usable without std).

use crate::buffers::{input, optional_out, output, size_answer, value_in, value_out};
use crate::cluster::{self, msde_cluster_config};
use crate::model::{model_ref, msde_model};
use crate::status::{guard, msde_error, msde_status};
use crate::train::{msde_trainer, trainer_parts};
use core::ffi::c_void;
use morphosde_core::Result;
use morphosde_core::error::{Arena, Error, check_len, check_room, checked_mul};
use morphosde_core::minibatch::UNTRACKED;
use morphosde_core::model::Config;
use morphosde_core::model::Learned;
use morphosde_core::size::Size;
use morphosde_core::train::AdamState;
use morphosde_core::train::acceptance::{RangeCheck, check_rollouts, check_rollouts_workspace_len};
use morphosde_core::train::{
    Control, FitConfig, ModelLearner, Observations, StepPlan, fit, fit_workspace_len,
};

/// Track id of an untracked observation (msde_trainer_fit's `track`).
pub const MSDE_UNTRACKED: u32 = 0xFFFF_FFFF;
const _: () = assert!(MSDE_UNTRACKED == UNTRACKED);

/// Floats per epoch in msde_trainer_fit's `epoch_losses`: the means of the
/// epoch's training steps (total, drift, diffusion before lambda) and the
/// mean validation total (NaN without validation).
pub const MSDE_FIT_EPOCH_FLOATS: usize = 4;

/// Settings of msde_trainer_fit; fill with msde_fit_config_default.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_fit_config {
    /// Epochs at most (>= 1).
    pub epochs: usize,
    /// Train steps per epoch (1..=1048576).
    pub steps_per_epoch: usize,
    /// Sources and targets per minibatch at most (>= 2).
    pub batch: usize,
    /// A cluster with fewer points in a bin falls back to the whole bin.
    pub min_points: usize,
    /// UOT epsilon as a fraction of the batch's median squared distance
    /// (> 0, finite).
    pub epsilon_relative: f32,
    /// UOT rho (both sides) as a fraction of that median (> 0; +INFINITY:
    /// balanced).
    pub rho_relative: f32,
    /// Self-edge bound beta in [0, 1] on tracked pairs.
    pub track_bound: f32,
    /// UOT tolerance (> 0) and iteration cap (>= 1); a batch whose UOT does
    /// not converge is skipped and counted.
    pub uot_tol: f32,
    pub uot_max_iter: u32,
    /// Fraction of embryos held out for validation, in [0, 0.9] (0: no
    /// validation, no early stopping, the last parameters are kept).
    pub validation_fraction: f32,
    /// Validation batches per epoch (1..=1048576 with validation).
    pub validation_batches: usize,
    /// Stop after this many epochs whose validation loss is worse than the
    /// best by more than validation_tolerance.
    pub patience: usize,
    /// Relative tolerance (>= 0, finite) of the model choice: the kept
    /// parameters are the latest whose validation loss is within
    /// (1 + validation_tolerance) times the best.
    pub validation_tolerance: f32,
    /// Learning rate of the last epoch as a fraction of the first, in
    /// (0, 1]: a cosine decay over `epochs` (1 = constant).
    pub final_learning_rate: f32,
    /// 1: from the second epoch on, each batch's UOT epsilon is 2 s^2 h with
    /// s^2 = tr(D)/d of the model's learned noise (0: epsilon_relative
    /// throughout). Other values are refused.
    pub bridge_epsilon: u32,
    /// Seed of the split, clustering and minibatches.
    pub seed: u64,
    /// Clustering of the training rows (its seed is replaced by `seed`).
    pub cluster: msde_cluster_config,
    /// Each time bin is topped up to at least this many validation rows
    /// (at most a quarter of the bin; 0..=64; only with validation).
    pub validation_min_per_bin: usize,
    /// Divergence guard: a step whose drift or diffusion loss exceeds this
    /// multiple (> 1, finite) of its lowest epoch mean so far, an epoch
    /// whose validation loss exceeds it times the lowest so far, or three
    /// non-finite steps in a row roll the parameters back to the kept ones,
    /// restart Adam and halve the learning rate.
    pub divergence_factor: f32,
    /// Roll-backs allowed (0..=64); one more ends the call with
    /// MSDE_ERR_DIVERGED.
    pub max_rollbacks: usize,
}

/// One epoch's summary, handed to an msde_fit_progress callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct msde_fit_epoch {
    /// 0-based epoch index.
    pub epoch: usize,
    /// Means over the epoch's training steps: total, drift, diffusion
    /// (before lambda).
    pub train_total: f32,
    pub train_drift: f32,
    pub train_diffusion: f32,
    /// Mean validation total (NaN without validation).
    pub validation_total: f32,
    /// Steps skipped this epoch and batches that fell back to whole bins.
    pub skipped: usize,
    pub whole_bins: usize,
    /// Epoch with the best validation loss so far.
    pub best_epoch: usize,
    /// Roll-backs of the divergence guard during this epoch, and the
    /// learning rate's factor from all roll-backs so far (0.5^rollbacks).
    pub rollbacks: usize,
    pub learning_rate_factor: f32,
}

/// Progress callback of msde_trainer_fit, called after every epoch with
/// its summary (valid during the call only) and the caller's `user`
/// pointer. Return 0 to go on, anything else to stop training after this
/// epoch (the call then ends as after early stopping, with MSDE_OK). It
/// runs on the calling thread; it must not use the trainer (its state is
/// committed when msde_trainer_fit returns) and must not unwind.
pub type msde_fit_progress =
    Option<unsafe extern "C" fn(epoch: *const msde_fit_epoch, user: *mut c_void) -> i32>;

/// What msde_trainer_fit did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct msde_fit_report {
    /// Epochs run (fewer than configured after early stopping).
    pub epochs: usize,
    /// Epoch (0-based) whose parameters the trainer holds at the end: the
    /// best validation loss, or with no validation the best training loss
    /// (the last epoch's parameters are kept then).
    pub best_epoch: usize,
    /// 1 when early stopping ended the loop before config->epochs.
    pub stopped_early: u32,
    /// Clusters of the training rows.
    pub clusters: usize,
    /// Observations trained on and held out.
    pub train_rows: usize,
    pub validation_rows: usize,
    /// Training steps skipped (UOT not converged or a non-finite loss;
    /// parameters untouched) and batches that fell back to whole bins,
    /// over all epochs.
    pub skipped_steps: usize,
    pub whole_bin_batches: usize,
    /// Best validation total loss (NaN without validation).
    pub best_validation: f32,
    /// Optimiser steps since the optimiser last (re)started, including
    /// earlier calls (a roll-back restarts Adam and this count).
    pub steps: u64,
    /// Roll-backs of the divergence guard over the call.
    pub rollbacks: usize,
}

fn to_core(c: &msde_fit_config) -> Result<FitConfig<f32>> {
    Ok(FitConfig {
        epochs: c.epochs,
        steps_per_epoch: c.steps_per_epoch,
        batch: c.batch,
        min_points: c.min_points,
        epsilon_relative: c.epsilon_relative,
        rho_relative: c.rho_relative,
        track_bound: c.track_bound,
        uot_tol: c.uot_tol,
        uot_max_iter: c.uot_max_iter,
        cluster: cluster::to_core(&c.cluster)?,
        validation_fraction: c.validation_fraction,
        validation_batches: c.validation_batches,
        patience: c.patience,
        validation_tolerance: c.validation_tolerance,
        final_learning_rate: c.final_learning_rate,
        bridge_epsilon: match c.bridge_epsilon {
            0 => false,
            1 => true,
            _ => return Err(Error::bad_config("bridge_epsilon", "must be 0 or 1")),
        },
        validation_min_per_bin: c.validation_min_per_bin,
        divergence_factor: c.divergence_factor,
        max_rollbacks: c.max_rollbacks,
        seed: c.seed,
    })
}

/// Fills *out with the training loop's defaults (the core's
/// FitConfig::default(), the values the command-line tool's flags default
/// to).
///
/// # Safety
/// `out` NULL (refused) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_fit_config_default(
    out: *mut msde_fit_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out, "out") }?;
        let f = FitConfig::<f32>::default();
        *out = msde_fit_config {
            epochs: f.epochs,
            steps_per_epoch: f.steps_per_epoch,
            batch: f.batch,
            min_points: f.min_points,
            epsilon_relative: f.epsilon_relative,
            rho_relative: f.rho_relative,
            track_bound: f.track_bound,
            uot_tol: f.uot_tol,
            uot_max_iter: f.uot_max_iter,
            validation_fraction: f.validation_fraction,
            validation_batches: f.validation_batches,
            patience: f.patience,
            validation_tolerance: f.validation_tolerance,
            final_learning_rate: f.final_learning_rate,
            bridge_epsilon: u32::from(f.bridge_epsilon),
            seed: f.seed,
            cluster: cluster::from_core(&f.cluster),
            validation_min_per_bin: f.validation_min_per_bin,
            divergence_factor: f.divergence_factor,
            max_rollbacks: f.max_rollbacks,
        };
        Ok(())
    })
}

/// The acceptance check msde_trainer_fit runs on the trained model.
fn range_check(fit_cfg: &FitConfig<f32>) -> RangeCheck {
    RangeCheck {
        seed: fit_cfg.seed,
        ..RangeCheck::default()
    }
}

/// Workspace lengths (floats, indices): the working copies of parameters,
/// best parameters and Adam moments and the staged epoch losses, then the
/// larger of the loop's own and the acceptance check's (floats), and the
/// staged track ids and the loop's own (indices). `params` are the model's
/// (only their number and the config's layout are read).
fn sizes(
    config: &Config,
    params: &[f32],
    n: usize,
    fit_cfg: &FitConfig<f32>,
) -> Result<(usize, usize)> {
    // Sized through a learner over empty buffers: only its config is read.
    let plan = StepPlan::new(config)?;
    let sizing = ModelLearner {
        plan,
        base_learning_rate: config.learning_rate,
        params: &mut [],
        best: &mut [],
        adam: AdamState {
            m: &mut [],
            v: &mut [],
            steps: 0,
        },
    };
    let need = fit_workspace_len(n, config.d, fit_cfg, &sizing)?;
    let model = Learned::new(config, params)?;
    let check = check_rollouts_workspace_len(&model, n, &range_check(fit_cfg), 1);
    let extra = Size(params.len()) * 4 + Size(fit_cfg.epochs) * MSDE_FIT_EPOCH_FLOATS;
    Ok((
        (Size(need.floats).max(check) + extra).get(),
        (Size(need.indices) + n).get(),
    ))
}

/// Workspace msde_trainer_fit needs to train `model`'s configuration (the
/// trainer's model from msde_trainer_model, or the model the trainer was
/// made from) on n observations under *config: *float_len floats and
/// *index_len uint32 values. Checks the whole config.
///
/// # Safety
/// `model` a model of this library; `config` valid; the outputs writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_fit_workspace_len(
    model: *const msde_model,
    n: usize,
    config: *const msde_fit_config,
    float_len: *mut usize,
    index_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let float_len = unsafe { value_out(float_len, "float_len") }?;
        let index_len = unsafe { value_out(index_len, "index_len") }?;
        let (floats, indices) = sizes(&m.config, params, n, &cfg)?;
        *float_len = size_answer::<f32>(floats, "n")?;
        *index_len = size_answer::<u32>(indices, "n")?;
        Ok(())
    })
}

/// Trains the trainer's model on raw snapshots: n = t_len observations z
/// (n x d row-major, d the model's dimension) at times t (n; observations
/// sharing a time form a time bin, at least two bins are needed), with
/// optional track ids (`track`: n uint32, the same id for the same embryo
/// at different times, MSDE_UNTRACKED for untracked rows; NULL/0: all
/// untracked). Held-out embryos (validation_fraction) give the validation
/// loss that early stopping watches and that picks the parameters kept.
/// The trainer's Adam state and step count carry over from earlier calls
/// and msde_trainer_step; its n_max and m_max do not limit this call.
///
/// - `float_workspace`, `index_workspace`: msde_fit_workspace_len sizes.
/// - `epoch_losses`: optional (NULL/0, or exactly config->epochs *
///   MSDE_FIT_EPOCH_FLOATS floats): epoch e's means at
///   [e*MSDE_FIT_EPOCH_FLOATS ...] (train total, drift, diffusion,
///   validation total or NaN); epochs not run (early stop) are NaN.
/// - `progress`: optional callback after every epoch (NULL for none), with
///   `user` passed through; it can stop training (see msde_fit_progress).
/// - `report`: optional (NULL to skip).
///
/// Results are bit-identical to the Rust core's fit with ModelLearner on
/// the same inputs and seeds, for any thread count.
///
/// Errors: NULL pointers, lengths that disagree, a single time bin
/// (MSDE_ERR_BAD_DIMENSION), NaN/Inf in z or t, out-of-range settings,
/// fewer observations than clusters, a held-out set that leaves nothing to
/// train on or spans one bin (MSDE_ERR_BAD_CONFIG), short workspaces,
/// clustering failures. On any
/// error the trainer (parameters, Adam state, step count) is unchanged and
/// no output is written.
///
/// # Safety
/// `trainer` a trainer of this library, used by one thread at a time;
/// buffers valid for their lengths, disjoint from each other and the
/// trainer.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_trainer_fit(
    trainer: *mut msde_trainer,
    config: *const msde_fit_config,
    z: *const f32,
    z_len: usize,
    t: *const f32,
    t_len: usize,
    track: *const u32,
    track_len: usize,
    float_workspace: *mut f32,
    float_workspace_len: usize,
    index_workspace: *mut u32,
    index_workspace_len: usize,
    epoch_losses: *mut f32,
    epoch_losses_len: usize,
    progress: msde_fit_progress,
    user: *mut c_void,
    report: *mut msde_fit_report,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let z = unsafe { input(z, z_len, "z") }?;
        let t = unsafe { input(t, t_len, "t") }?;
        let track = unsafe { input(track, track_len, "track") }?;
        let fw = unsafe { output(float_workspace, float_workspace_len, "float_workspace") }?;
        let iw = unsafe { output(index_workspace, index_workspace_len, "index_workspace") }?;
        let losses = unsafe { output(epoch_losses, epoch_losses_len, "epoch_losses") }?;
        let report = unsafe { optional_out(report, "report") }?;
        let parts = unsafe { trainer_parts(trainer) }?;
        let (m, params) = unsafe { model_ref(parts.model, "trainer") }?;
        let (config, p) = (m.config, params.len());
        let n = t.len();
        if n == 0 {
            return Err(Error::bad_dim("t", "no observations"));
        }
        let (need_f, need_i) = sizes(&config, params, n, &cfg)?;
        check_len(z, checked_mul(n, config.d, "t")?, "z")?;
        if !track.is_empty() {
            check_len(track, n, "track")?;
        }
        let epoch_floats = cfg.epochs * MSDE_FIT_EPOCH_FLOATS;
        if !losses.is_empty() {
            check_len(losses, epoch_floats, "epoch_losses")?;
        }
        check_room(fw, need_f, "float_workspace")?;
        check_room(iw, need_i, "index_workspace")?;
        let mut floats = Arena::new(fw);
        let work = floats.take(p)?;
        let best = floats.take(p)?;
        let adam_m = floats.take(p)?;
        let adam_v = floats.take(p)?;
        let staged = floats.take(epoch_floats)?;
        let mut ints = Arena::new(iw);
        let tracks = ints.take(n)?;
        if track.is_empty() {
            tracks.fill(UNTRACKED);
        } else {
            tracks.copy_from_slice(track);
        }
        work.copy_from_slice(params);
        adam_m.copy_from_slice(parts.m);
        adam_v.copy_from_slice(parts.v);
        staged.fill(f32::NAN);
        let adam = AdamState {
            m: adam_m,
            v: adam_v,
            steps: parts.head.steps,
        };
        let mut learner = ModelLearner::new(&StepPlan::new(&config)?, work, best, adam)?;
        let data = Observations {
            z,
            t,
            track: tracks,
            d: config.d,
        };
        let (mut skipped, mut whole) = (0, 0);
        let scratch = floats.rest();
        let r = fit(
            &data,
            &cfg,
            &mut learner,
            &mut *scratch,
            ints.rest(),
            &mut |e| {
                let at = &mut staged[e.epoch * MSDE_FIT_EPOCH_FLOATS..][..MSDE_FIT_EPOCH_FLOATS];
                let valid = e.validation.map_or(f32::NAN, |l| l.total);
                at.copy_from_slice(&[e.train.total, e.train.drift, e.train.diffusion, valid]);
                skipped += e.skipped;
                whole += e.whole_bins;
                let summary = msde_fit_epoch {
                    epoch: e.epoch,
                    train_total: e.train.total,
                    train_drift: e.train.drift,
                    train_diffusion: e.train.diffusion,
                    validation_total: valid,
                    skipped: e.skipped,
                    whole_bins: e.whole_bins,
                    best_epoch: e.best_epoch,
                    rollbacks: e.rollbacks,
                    learning_rate_factor: e.learning_rate_factor as f32,
                };
                // SAFETY: the caller's function, given a summary that lives
                // for the call and its own user pointer.
                match progress {
                    Some(f) if unsafe { f(&summary, user) } != 0 => Control::Stop,
                    _ => Control::Continue,
                }
            },
        )?;
        // The last line of the divergence guard: the kept model must roll
        // out inside the data's range.
        let model = Learned::new(&config, learner.params)?;
        let check = range_check(&cfg);
        check_rollouts(&model, &data, &check, scratch)?.verdict(&check)?;
        let steps = learner.adam.steps;
        // Success: commit parameters, Adam state and outputs.
        let (_, params) = unsafe { crate::model::model_params_mut(parts.model, "trainer") }?;
        params.copy_from_slice(learner.params);
        parts.m.copy_from_slice(learner.adam.m);
        parts.v.copy_from_slice(learner.adam.v);
        parts.head.steps = steps;
        if !losses.is_empty() {
            losses.copy_from_slice(staged);
        }
        if let Some(out) = report {
            *out = msde_fit_report {
                epochs: r.epochs,
                best_epoch: r.best_epoch,
                stopped_early: r.stopped_early as u32,
                clusters: r.clusters,
                train_rows: r.train_rows,
                validation_rows: r.validation_rows,
                skipped_steps: skipped,
                whole_bin_batches: whole,
                best_validation: r.best_validation.map_or(f32::NAN, |l| l.total),
                steps,
                rollbacks: r.rollbacks,
            };
        }
        Ok(())
    })
}
