//! The settings of the training loop ([`super::fit`]) and their defaults.

use super::split::MAX_MIN_PER_BIN;
use crate::cluster::ClusterConfig;
use crate::error::{Error, Result};
use crate::float::Float;

/// Most optimiser steps per epoch [`FitConfig::steps_per_epoch`] accepts.
pub const MAX_STEPS_PER_EPOCH: usize = 1 << 20;
/// Most validation batches per epoch [`FitConfig::validation_batches`]
/// accepts.
pub const MAX_VALIDATION_BATCHES: usize = 1 << 20;

/// Settings of [`fit`](super::fit()); `FitConfig::default()` gives the defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitConfig<F> {
    /// Epochs at most (≥ 1).
    pub epochs: usize,
    /// Optimiser steps per epoch (`1..=`[`MAX_STEPS_PER_EPOCH`]).
    pub steps_per_epoch: usize,
    /// Sources and targets per batch at most (≥ 2), and the small-cluster
    /// fallback threshold.
    pub batch: usize,
    pub min_points: usize,
    /// ε as a fraction of the batch's median squared distance (> 0).
    pub epsilon_relative: F,
    /// The bridge ε: from the second epoch on, each batch's ε is `2σ²h`
    /// (`h` its frame gap, at least [`BRIDGE_EPSILON_FLOOR`](super::BRIDGE_EPSILON_FLOOR) × its median
    /// squared distance), with `σ² = tr(D_θ)/d` of the learned noise
    /// averaged over a fixed sample of training rows after every epoch: the
    /// entropic plan is then the Schrödinger-bridge coupling of the learned
    /// noise, and a plan-weighted target reads `D` instead of the plan's
    /// blur `≈ ε/(2h)` (see [`crate::targets`]). Needs a learner that
    /// reports its noise ([`Learner::noise_variance`](super::Learner::noise_variance)); without one, or
    /// when `false` (the default), `epsilon_relative` applies throughout.
    /// Validation batches use the same ε, so the validation losses of two
    /// epochs then also differ by their ε (their plans and teachers).
    pub bridge_epsilon: bool,
    /// ρ (both sides) as a fraction of that median; `∞` = balanced.
    pub rho_relative: F,
    /// Self-edge bound `β` on tracked pairs (`Π_ij ≥ β·min(a_i, b_j)`).
    pub track_bound: F,
    /// UOT stopping tolerance and iteration cap.
    pub uot_tol: F,
    pub uot_max_iter: u32,
    /// Clustering of the training rows (its `seed` is overridden by `seed`).
    /// `k = 1` without `choose_k` means whole time bins: no clustering is
    /// run, and its other settings are neither used nor checked.
    pub cluster: ClusterConfig<F>,
    /// Fraction of embryos held out for validation, in `[0, 0.9]`; 0 = no
    /// validation (no early stopping; the last model is kept).
    pub validation_fraction: F,
    /// Validation batches per epoch (`1..=`[`MAX_VALIDATION_BATCHES`] with
    /// validation).
    pub validation_batches: usize,
    /// Stop after this many epochs whose validation loss is worse than the
    /// best by more than `validation_tolerance`.
    pub patience: usize,
    /// Relative tolerance `τ ≥ 0` of the model choice: the kept model is the
    /// latest whose validation loss is within `(1 + τ)·best`. The
    /// validation loss of noisy teachers and targets is mostly irreducible
    /// noise, flat within a few percent once the drift has settled, while
    /// `D_θ` keeps improving; with `τ = 0` the choice among those epochs is
    /// decided by that noise.
    pub validation_tolerance: F,
    /// The learning rate of the last epoch as a fraction of the first, in
    /// `(0, 1]`: a cosine decay over `epochs` (1 = constant). The diffusion
    /// targets are single noisy outer products; a decaying step averages
    /// them instead of jittering around the fit.
    pub final_learning_rate: F,
    /// Each time bin is topped up to at least this many validation rows
    /// (at most a quarter of the bin; `0..=`[`MAX_MIN_PER_BIN`]; see
    /// [`super::split`]). Only with `validation_fraction > 0`.
    pub validation_min_per_bin: usize,
    /// The divergence guard ([`super::guard`]): a step whose loss exceeds
    /// this multiple (> 1) of the lowest epoch-mean training loss so far,
    /// or an epoch whose validation loss exceeds it times the lowest so far,
    /// rolls the parameters back.
    pub divergence_factor: F,
    /// Roll-backs allowed (each halves the learning rate); one more ends
    /// the fit with [`ErrorKind::Diverged`](crate::ErrorKind::Diverged) (`0..=64`).
    pub max_rollbacks: usize,
    pub seed: u64,
}

impl<F: Float> Default for FitConfig<F> {
    /// The defaults every front end reads (the CLI's flags, the C ABI's
    /// `msde_fit_config_default`, the Python module): whole time bins (one
    /// cluster), a few embryos held out for validation with early
    /// stopping, a cosine decay of the learning rate, the divergence guard
    /// on.
    fn default() -> Self {
        FitConfig {
            epochs: 80,
            steps_per_epoch: 40,
            batch: 128,
            min_points: 16,
            epsilon_relative: F::from_f64(0.05),
            bridge_epsilon: false,
            rho_relative: F::from_f64(10.0),
            track_bound: F::from_f64(0.5),
            uot_tol: F::from_f64(1e-4),
            uot_max_iter: 5000,
            cluster: ClusterConfig::new(1, F::from_f64(0.3)),
            validation_fraction: F::from_f64(0.05),
            validation_batches: 8,
            patience: 8,
            validation_tolerance: F::from_f64(0.05),
            final_learning_rate: F::from_f64(0.1),
            validation_min_per_bin: 8,
            divergence_factor: F::from_f64(100.0),
            max_rollbacks: 4,
            seed: 0,
        }
    }
}

impl<F: Float> FitConfig<F> {
    pub(super) fn validate(&self) -> Result<()> {
        let bad = |arg, msg| Err(Error::bad_config(arg, msg));
        if self.epochs == 0 || self.steps_per_epoch == 0 {
            return bad("epochs", "epochs and steps_per_epoch must be at least 1");
        }
        if self.steps_per_epoch > MAX_STEPS_PER_EPOCH {
            return bad("steps_per_epoch", "must be at most 1048576");
        }
        if self.batch < 2 || self.batch > u32::MAX as usize / 4 {
            return bad("batch", "must be at least 2");
        }
        if !(self.uot_tol > F::ZERO && self.uot_tol.is_finite()) {
            return bad("uot_tol", "must be positive and finite");
        }
        if self.uot_max_iter == 0 {
            return bad("uot_max_iter", "must be at least 1");
        }
        if self.epsilon_relative.is_nan()
            || self.epsilon_relative <= F::ZERO
            || !self.epsilon_relative.is_finite()
        {
            return bad("epsilon_relative", "must be positive and finite");
        }
        if self.rho_relative.is_nan() || self.rho_relative <= F::ZERO {
            return bad("rho_relative", "must be positive (∞ = balanced)");
        }
        if !(self.track_bound >= F::ZERO && self.track_bound <= F::ONE) {
            return bad("track_bound", "must be in [0, 1]");
        }
        let v = self.validation_fraction;
        if !(v >= F::ZERO && v <= F::from_f64(0.9)) {
            return bad("validation_fraction", "must be in [0, 0.9]");
        }
        if v > F::ZERO && self.validation_batches == 0 {
            return bad("validation_batches", "must be at least 1 with validation");
        }
        if self.validation_batches > MAX_VALIDATION_BATCHES {
            return bad("validation_batches", "must be at most 1048576");
        }
        let tol = self.validation_tolerance;
        if !(tol >= F::ZERO && tol.is_finite()) {
            return bad("validation_tolerance", "must be finite and at least 0");
        }
        if !(self.final_learning_rate > F::ZERO && self.final_learning_rate <= F::ONE) {
            return bad("final_learning_rate", "must be in (0, 1]");
        }
        if self.validation_min_per_bin > MAX_MIN_PER_BIN {
            return bad("validation_min_per_bin", "must be at most 64");
        }
        if !(self.divergence_factor > F::ONE && self.divergence_factor.is_finite()) {
            return bad("divergence_factor", "must be finite and > 1");
        }
        if self.max_rollbacks > 64 {
            return bad("max_rollbacks", "must be at most 64");
        }
        Ok(())
    }
}
