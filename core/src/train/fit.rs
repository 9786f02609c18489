//! The training loop: the only module that knows the pipeline's order.
//!
//! ```text
//! observations (z, t, track) ─ split (held-out embryos) ─┬─ train rows ─ cluster ─ index
//!                                                        └─ validation rows ─ index (whole bins)
//! per step: sample (bin b → b+1, one cluster) → gather → UOT (+ self-edge bound
//!           on tracked pairs) → minibatch (teachers, masses, plan) → learner step
//! per epoch: validation loss on fixed batches → early stopping, best kept
//!            (→ the learned noise level, for the bridge ε: FitConfig::bridge_epsilon)
//! ```
//!
//! Standardisation: the observations are copied into the workspace as
//! `(z − μ)/s` with the per-coordinate mean and standard deviation of every
//! row given ([`Inputs::from_data`], with the span of the times), and
//! everything after works in those units (clustering, UOT, teachers,
//! targets, losses): the fit is equivariant under any per-coordinate change
//! of units `z ↦ a ⊙ z + b` with `a > 0`. The learner receives the
//! [`Inputs`] before its first step ([`Learner::set_inputs`]).
//!
//! The learner (the model with its optimiser, see [`Learner`]) sees only
//! finished minibatches. A learner that trains a batch from its tracked
//! pairs alone ([`Learner::uses_plan`]; [`ModelLearner`](super::ModelLearner) with diffusion on
//! and pairwise targets) gets it without the UOT solve, which is most of a
//! step's cost (see `batch`). Nothing allocates: [`fit_workspace_len`] sizes the
//! caller's float and index workspaces.
//!
//! Validation: embryos are held out whole (a tracked embryo's rows all go
//! the same way), each with probability `validation_fraction`, decided by
//! stream `(seed, Data, track id)` (untracked rows: `(seed, Data, 2³² + row)`).
//! A validation row joins the cluster of its nearest training row of the
//! same time, so validation batches are local like training batches (with a
//! quarter of `min_points` before the whole-bin fallback); they are drawn
//! with fixed steps, so the validation loss of two epochs differs only by
//! the model.

use super::batch::{BatchStepper, Outcome, Pass, batch_floats};
use super::fit_config::FitConfig;
use super::guard::{DivergenceGuard, Verdict};
use super::learner::{Learner, Losses};
use super::split::validation_split;
use crate::cluster::{self, ClusterConfig};
use crate::error::{Arena, Error, ErrorKind, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::minibatch::{Binning, MinibatchConfig, MinibatchIndex, index_workspace_len};
use crate::model::Inputs;
use crate::size::{Size, fits_bytes};

/// Snapshot observations: `z` (`n×d`), times `t` (`n`), track ids `track`
/// (`n`, [`crate::minibatch::UNTRACKED`] for untracked).
#[derive(Clone, Copy, Debug)]
pub struct Observations<'a, F> {
    pub z: &'a [F],
    pub t: &'a [F],
    pub track: &'a [u32],
    pub d: usize,
}

/// Whether the loop goes on after an epoch (the progress callback's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// One epoch's summary, handed to the progress callback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochReport<F> {
    pub epoch: usize,
    /// Means over the epoch's successful steps.
    pub train: Losses<F>,
    /// Means over the validation batches (`None` without validation).
    pub validation: Option<Losses<F>>,
    /// Steps skipped because UOT did not converge or the step failed on a
    /// non-finite loss (parameters untouched).
    pub skipped: usize,
    /// Roll-backs of the divergence guard during this epoch.
    pub rollbacks: usize,
    /// The learning rate's factor from the guard's roll-backs so far
    /// (`0.5^rollbacks`; the schedule's own factor comes on top).
    pub learning_rate_factor: f64,
    /// Batches that fell back to whole bins (small clusters).
    pub whole_bins: usize,
    /// Epoch with the best validation loss so far.
    pub best_epoch: usize,
}

/// What [`fit`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitReport<F> {
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_validation: Option<Losses<F>>,
    /// The loop ended before `epochs` (early stopping or the callback).
    pub stopped_early: bool,
    /// Roll-backs of the divergence guard over the whole fit.
    pub rollbacks: usize,
    pub train_rows: usize,
    pub validation_rows: usize,
    pub clusters: usize,
}

/// Float and index workspace elements [`fit`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FitWorkspaceLen {
    pub floats: usize,
    pub indices: usize,
}

/// Whether `cfg` asks for one cluster: [`fit`] then uses whole time bins
/// and skips the clustering (and its workspace).
fn whole_bins<F>(cfg: &ClusterConfig<F>) -> bool {
    cfg.k == 1 && !cfg.choose_k
}

/// Each validation row (rows `n_train..` of `zs`, `d` per row, times `ts`)
/// takes the label of its nearest training row of the same time (any time
/// if none).
fn nearest_labels<F: Float>(
    zs: &[F],
    ts: &[F],
    d: usize,
    n_train: usize,
    train_labels: &[u32],
    valid_labels: &mut [u32],
) {
    for (v, label) in valid_labels.iter_mut().enumerate() {
        let (zv, tv) = (&zs[(n_train + v) * d..][..d], ts[n_train + v]);
        let key = |r: usize| {
            let dist = zs[r * d..(r + 1) * d]
                .iter()
                .zip(zv)
                .fold(F::ZERO, |a, (&x, &y)| a + (x - y) * (x - y));
            (ts[r] != tv, dist)
        };
        let nearest = (1..n_train).fold(0, |best, r| {
            let (a, b) = (key(r), key(best));
            if (!a.0 && b.0) || (a.0 == b.0 && a.1 < b.1) {
                r
            } else {
                best
            }
        });
        *label = train_labels[nearest];
    }
}

/// Workspace sizes for `n` observations in `d` dimensions.
pub fn fit_workspace_len<F: Float, L: Learner<F>>(
    n: usize,
    d: usize,
    cfg: &FitConfig<F>,
    learner: &L,
) -> Result<FitWorkspaceLen> {
    cfg.validate()?;
    let b = cfg.batch;
    let cl = if whole_bins(&cfg.cluster) {
        cluster::WorkspaceLen {
            floats: 0,
            indices: 0,
        }
    } else {
        cluster::workspace_len(n, d, &cfg.cluster)?
    };
    let nd = checked_mul(n, d, "n")?;
    let noise = Size(b) * (d + 1) + learner.noise_variance_workspace_len(b);
    let scratch = Size(cl.floats)
        .max(batch_floats(b, d, learner.workspace_len(b, b)))
        .max(noise);
    let lens = FitWorkspaceLen {
        floats: (nd + Size(n) + index_workspace_len(n).floats + scratch).get(),
        indices: (Size(n) * 2 + index_workspace_len(n).indices + cl.indices + Size(b) * 4).get(),
    };
    fits_bytes(lens.floats, size_of::<F>(), "n")?;
    fits_bytes(lens.indices, size_of::<u32>(), "n")?;
    Ok(lens)
}

/// Trains `learner` on `data` (see the module docs); calls `progress` after
/// every epoch and ends with the best parameters (by validation loss)
/// restored. Errors: bad configuration or data (non-finite values, a single
/// time bin, too few rows to hold out), short workspaces, clustering
/// failures; a batch whose UOT does not converge or whose step fails on a
/// non-finite loss is skipped and counted instead.
pub fn fit<F: Float, L: Learner<F>>(
    data: &Observations<'_, F>,
    cfg: &FitConfig<F>,
    learner: &mut L,
    float_ws: &mut [F],
    index_ws: &mut [u32],
    progress: &mut dyn FnMut(&EpochReport<F>) -> Control,
) -> Result<FitReport<F>> {
    cfg.validate()?;
    let d = data.d;
    let n = data.t.len();
    check_len(data.z, checked_mul(n, d, "d")?, "z")?;
    check_len(data.track, n, "track")?;
    check_finite(data.z, "z")?;
    check_finite(data.t, "t")?;
    let inputs = Inputs::from_data(data.z, data.t, d)?;
    let need = fit_workspace_len(n, d, cfg, learner)?;
    if float_ws.len() < need.floats {
        return Err(Error::too_small("float_ws", need.floats, float_ws.len()));
    }
    if index_ws.len() < need.indices {
        return Err(Error::too_small("index_ws", need.indices, index_ws.len()));
    }
    let mut floats = Arena::new(float_ws);
    let mut ints = Arena::new(index_ws);

    // Split: training rows first, then validation rows; standardised. The
    // held-out flags borrow the labels' memory until the clustering fills
    // it.
    let zs = floats.take(n * d)?;
    let ts = floats.take(n)?;
    let tracks = ints.take(n)?;
    let labels = ints.take(n)?;
    validation_split(
        cfg.seed,
        data.t,
        data.track,
        cfg.validation_fraction.to_f64(),
        cfg.validation_min_per_bin,
        labels,
    );
    let n_train = labels.iter().filter(|&&h| h == 0).count();
    let mut next = [0, n_train];
    for (row, &held) in labels.iter().enumerate() {
        let side = held as usize;
        let k = next[side];
        next[side] += 1;
        let dst = &mut zs[k * d..(k + 1) * d];
        dst.copy_from_slice(&data.z[row * d..(row + 1) * d]);
        inputs.standardise(dst);
        ts[k] = data.t[row];
        tracks[k] = data.track[row];
    }
    let n_valid = n - n_train;
    let validating = n_valid > 0;
    if n_train == 0 {
        return Err(Error::bad_config(
            "validation_fraction",
            "held out every observation",
        ));
    }

    // Cluster the training rows; each validation row takes the cluster of
    // its nearest training row of the same time (any time if none). One
    // cluster is the whole time bins: no clustering, so no dense affinity
    // and no memory limit however many rows there are.
    let (train_labels, valid_labels) = labels.split_at_mut(n_train);
    let index_len = index_workspace_len(n);
    let index_ints = ints.take(index_len.indices)?;
    let index_floats = floats.take(index_len.floats)?;
    let scratch = floats.rest();
    let batch_ints = ints.take(4 * cfg.batch)?;
    let cluster_ints = ints.rest();
    let clusters = if whole_bins(&cfg.cluster) {
        train_labels.fill(0);
        valid_labels.fill(0);
        1
    } else {
        let mut ccfg = cfg.cluster;
        ccfg.seed = cfg.seed;
        let summary = cluster::cluster(
            &zs[..n_train * d],
            &ts[..n_train],
            n_train,
            d,
            &ccfg,
            train_labels,
            scratch,
            cluster_ints,
        )?;
        nearest_labels(zs, ts, d, n_train, train_labels, valid_labels);
        summary.k
    };
    let (train_ii, valid_ii) = index_ints.split_at_mut(2 * n_train);
    let (train_if, valid_if) = index_floats.split_at_mut(n_train);
    let (zs, ts) = (&*zs, &*ts);
    let train_index = MinibatchIndex::build(
        &ts[..n_train],
        train_labels,
        &tracks[..n_train],
        clusters,
        Binning::Distinct,
        train_ii,
        train_if,
    )?;
    let valid_index = if validating {
        Some(
            MinibatchIndex::build(
                &ts[n_train..],
                valid_labels,
                &tracks[n_train..],
                clusters,
                Binning::Distinct,
                valid_ii,
                valid_if,
            )
            .map_err(|e| match e.kind {
                ErrorKind::BadDimension | ErrorKind::BadConfig => Error::bad_config(
                    "validation_fraction",
                    "the held-out embryos do not span two time bins",
                ),
                _ => e,
            })?,
        )
    } else {
        None
    };

    learner.set_inputs(&inputs)?;
    let mut stepper = BatchStepper {
        cfg,
        d,
        scratch,
        ints: batch_ints,
        noise_variance: None,
    };
    let mut guard = DivergenceGuard::new(cfg.divergence_factor.to_f64(), cfg.max_rollbacks);
    let mut best = (F::INFINITY, 0usize, None);
    // The lowest validation loss so far (the kept model's may be higher).
    let mut lowest = F::INFINITY;
    let mut stale = 0;
    let mut epochs_run = 0;
    let mut stopped_early = false;
    let final_rate = cfg.final_learning_rate.to_f64();
    for epoch in 0..cfg.epochs {
        epochs_run = epoch + 1;
        let schedule = cosine_decay(epoch, cfg.epochs, final_rate);
        learner.scale_learning_rate(schedule * guard.learning_rate_factor);
        let sample = MinibatchConfig {
            batch: cfg.batch,
            min_points: cfg.min_points,
            seed: cfg.seed,
        };
        let (mut sum, mut ok, mut skipped, mut whole) = (Losses::default(), 0usize, 0, 0);
        let rollbacks_before = guard.rollbacks;
        let roll_back = |learner: &mut L, guard: &mut DivergenceGuard| -> Result<()> {
            guard.roll_back(epoch)?;
            learner.roll_back();
            learner.scale_learning_rate(schedule * guard.learning_rate_factor);
            Ok(())
        };
        for s in 0..cfg.steps_per_epoch {
            let step = (epoch * cfg.steps_per_epoch + s) as u64;
            let verdict =
                match stepper.run(&train_index, zs, &sample, step, Pass::Train, learner, epoch)? {
                    Outcome::Done(l, wb) => {
                        let verdict = guard.step(l.drift.to_f64(), l.diffusion.to_f64());
                        if verdict == Verdict::Healthy {
                            add(&mut sum, &l);
                            ok += 1;
                            whole += usize::from(wb);
                        }
                        verdict
                    }
                    Outcome::NoPlan => {
                        skipped += 1;
                        Verdict::Skip
                    }
                    Outcome::NonFinite => {
                        skipped += 1;
                        guard.non_finite()
                    }
                };
            if verdict == Verdict::RollBack {
                roll_back(learner, &mut guard)?;
            }
        }
        let train = mean(&sum, ok);
        let validation = match &valid_index {
            None => None,
            Some(index) => {
                // Every pair of adjacent bins gets the same number of
                // batches, so early bins weigh as much as late ones.
                let vsample = MinibatchConfig {
                    batch: cfg.batch,
                    min_points: cfg.min_points.div_ceil(4),
                    seed: cfg.seed ^ 0x5641_4c49_4441_5445, // "VALIDATE"
                };
                let gaps = index.bins() - 1;
                let (mut vsum, mut vok) = (Losses::default(), 0usize);
                for v in 0..cfg.validation_batches.div_ceil(gaps) * gaps {
                    let vz = &zs[n_train * d..];
                    if let Outcome::Done(l, _) = stepper.run(
                        index,
                        vz,
                        &vsample,
                        v as u64,
                        Pass::Validate { bin: v % gaps },
                        learner,
                        epoch,
                    )? {
                        add(&mut vsum, &l);
                        vok += 1;
                    }
                }
                (vok > 0).then(|| mean(&vsum, vok))
            }
        };
        let settled = guard.epoch(
            train.drift.to_f64(),
            train.diffusion.to_f64(),
            validation.map(|l| l.total.to_f64()),
        ) == Verdict::Healthy;
        if !settled {
            roll_back(learner, &mut guard)?;
        }
        let score = validation.map_or(train.total, |l| l.total);
        if !settled || !train.total.is_finite() {
            stale += 1;
        } else if epoch < learner.settled_from() {
            // Still warming up: the latest parameters stand in for the best
            // until a settled epoch replaces them.
            best = (F::INFINITY, epoch, validation);
            learner.keep_best();
        } else if score.is_finite() && score <= lowest * (F::ONE + cfg.validation_tolerance) {
            lowest = lowest.min(score);
            best = (score, epoch, validation);
            stale = 0;
            learner.keep_best();
        } else {
            stale += 1;
        }
        let report = EpochReport {
            epoch,
            train,
            validation,
            skipped,
            rollbacks: guard.rollbacks - rollbacks_before,
            learning_rate_factor: guard.learning_rate_factor,
            whole_bins: whole,
            best_epoch: best.1,
        };
        if cfg.bridge_epsilon {
            stepper.noise_variance = stepper.learned_noise(learner, zs, ts, n_train)?;
        }
        let go_on = progress(&report) == Control::Continue;
        if !go_on || (validating && stale > cfg.patience) {
            stopped_early = epoch + 1 < cfg.epochs;
            break;
        }
    }
    if validating {
        learner.restore_best();
    }
    Ok(FitReport {
        epochs: epochs_run,
        best_epoch: best.1,
        best_validation: best.2,
        stopped_early,
        rollbacks: guard.rollbacks,
        train_rows: n_train,
        validation_rows: n_valid,
        clusters,
    })
}

/// `final + (1 − final)·(1 + cos(π·epoch/(epochs − 1)))/2`: 1 at the first
/// epoch, `final` at the last.
fn cosine_decay(epoch: usize, epochs: usize, last: f64) -> f64 {
    if epochs < 2 {
        return 1.0;
    }
    let phase = core::f64::consts::PI * epoch as f64 / (epochs - 1) as f64;
    last + (1.0 - last) * 0.5 * (1.0 + libm::cos(phase))
}

fn add<F: Float>(sum: &mut Losses<F>, l: &Losses<F>) {
    sum.drift += l.drift;
    sum.diffusion += l.diffusion;
    sum.total += l.total;
}

fn mean<F: Float>(sum: &Losses<F>, count: usize) -> Losses<F> {
    if count == 0 {
        let nan = F::from_f64(f64::NAN);
        return Losses {
            drift: nan,
            diffusion: nan,
            total: nan,
        };
    }
    let c = F::from_usize(count);
    Losses {
        drift: sum.drift / c,
        diffusion: sum.diffusion / c,
        total: sum.total / c,
    }
}

#[cfg(test)]
mod tests;
