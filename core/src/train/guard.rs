//! The divergence guard of the training loop: it watches every step's loss
//! and every epoch's means, and says when the parameters must go back to
//! the last kept ones with a lower learning rate, and when to give up.
//!
//! A step is *flagged* when its loss (before its update) is non-finite, or
//! when its drift part or its diffusion part (before λ, so the warm-up of
//! λ does not move it) is above `factor` times that part's reference, its
//! lowest epoch mean so far (the test starts once an epoch has ended; with
//! a loss that can be negative, such as the Gaussian NLL, the reference's
//! magnitude is used; a zero reference, such as the diffusion part of a
//! drift-only model, tests nothing). One non-finite step is skipped (its batch may be
//! the culprit: the step leaves the parameters alone); [`NON_FINITE_RUN`]
//! in a row, or one exploding step, mean the parameters themselves have
//! gone bad: the loop rolls back. An epoch whose validation loss exceeds
//! `factor` times the lowest one so far rolls back too.
//!
//! A roll-back restores the kept (best) parameters, restarts the
//! optimiser's moments and multiplies the learning rate by [`BACKOFF`]
//! from then on; the `max_rollbacks + 1`-th one ends the fit with
//! [`ErrorKind::Diverged`]. Nothing here allocates or reads the clock.

use crate::error::{Detail, Error, ErrorKind, Result};

/// Non-finite steps in a row that trigger a roll-back.
pub const NON_FINITE_RUN: usize = 3;

/// Factor applied to the learning rate at every roll-back.
pub const BACKOFF: f64 = 0.5;

/// What the loop does after a step or an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on; the losses count.
    Healthy,
    /// Go on without this step (its losses do not count).
    Skip,
    /// Restore the kept parameters, restart the optimiser, lower the
    /// learning rate ([`DivergenceGuard::roll_back`]).
    RollBack,
}

/// State of the guard over one fit.
#[derive(Clone, Copy, Debug)]
pub struct DivergenceGuard {
    factor: f64,
    max_rollbacks: usize,
    /// Lowest epoch means of the drift and diffusion parts so far (`∞`
    /// before the first).
    reference: [f64; 2],
    /// Lowest epoch validation loss so far (`∞` before the first).
    validation_reference: f64,
    /// Non-finite steps in a row.
    non_finite_run: usize,
    /// Roll-backs so far.
    pub rollbacks: usize,
    /// Multiplier of the learning-rate schedule (`BACKOFF^rollbacks`).
    pub learning_rate_factor: f64,
}

/// `value > factor·|reference|`, false while the reference is unknown or 0.
fn explodes(value: f64, reference: f64, factor: f64) -> bool {
    reference.is_finite() && reference != 0.0 && value > factor * reference.abs()
}

impl DivergenceGuard {
    /// A guard that flags losses above `factor` (> 1) times the reference
    /// and allows `max_rollbacks` roll-backs.
    pub fn new(factor: f64, max_rollbacks: usize) -> Self {
        DivergenceGuard {
            factor,
            max_rollbacks,
            reference: [f64::INFINITY; 2],
            validation_reference: f64::INFINITY,
            non_finite_run: 0,
            rollbacks: 0,
            learning_rate_factor: 1.0,
        }
    }

    /// A step trained with these drift and diffusion (before λ) losses
    /// (before its update).
    pub fn step(&mut self, drift: f64, diffusion: f64) -> Verdict {
        let parts = [drift, diffusion];
        if parts.iter().any(|v| !v.is_finite()) {
            return self.non_finite();
        }
        self.non_finite_run = 0;
        if parts
            .iter()
            .zip(self.reference)
            .any(|(&v, r)| explodes(v, r, self.factor))
        {
            Verdict::RollBack
        } else {
            Verdict::Healthy
        }
    }

    /// A step failed on a non-finite loss or gradient (parameters untouched).
    pub fn non_finite(&mut self) -> Verdict {
        self.non_finite_run += 1;
        if self.non_finite_run >= NON_FINITE_RUN {
            Verdict::RollBack
        } else {
            Verdict::Skip
        }
    }

    /// An epoch ended with these mean drift and diffusion losses over its
    /// healthy steps (NaN when none) and this mean validation total:
    /// updates the references, or asks for a roll-back when the validation
    /// loss exploded or is not finite.
    pub fn epoch(&mut self, drift: f64, diffusion: f64, validation: Option<f64>) -> Verdict {
        if let Some(v) = validation {
            if !v.is_finite() || explodes(v, self.validation_reference, self.factor) {
                return Verdict::RollBack;
            }
            self.validation_reference = self.validation_reference.min(v);
        }
        for (r, v) in self.reference.iter_mut().zip([drift, diffusion]) {
            if v.is_finite() {
                *r = r.min(v);
            }
        }
        Verdict::Healthy
    }

    /// Records a roll-back at `epoch`: the learning rate factor drops by
    /// [`BACKOFF`]; past `max_rollbacks` the fit has diverged.
    pub fn roll_back(&mut self, epoch: usize) -> Result<()> {
        self.rollbacks += 1;
        self.non_finite_run = 0;
        self.learning_rate_factor *= BACKOFF;
        if self.rollbacks > self.max_rollbacks {
            return Err(Error::new(
                ErrorKind::Diverged,
                "learning_rate",
                "the loss kept exploding or turning non-finite after max_rollbacks roll-backs, \
                 each halving the learning rate",
            )
            .with(Detail::Index(epoch)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_non_finite_step_is_skipped_and_a_run_of_them_rolls_back() {
        let mut g = DivergenceGuard::new(100.0, 2);
        assert_eq!(g.non_finite(), Verdict::Skip);
        assert_eq!(g.step(1.0, 0.0), Verdict::Healthy);
        assert_eq!(g.step(f64::NAN, 0.0), Verdict::Skip);
        assert_eq!(g.non_finite(), Verdict::Skip);
        assert_eq!(g.step(1.0, f64::INFINITY), Verdict::RollBack);
    }

    #[test]
    fn parts_above_factor_times_their_lowest_epoch_mean_roll_back() {
        let mut g = DivergenceGuard::new(100.0, 2);
        // No reference in the first epoch: any finite loss is healthy.
        assert_eq!(g.step(1e30, 1e30), Verdict::Healthy);
        assert_eq!(g.epoch(3.0, 0.5, None), Verdict::Healthy);
        assert_eq!(g.epoch(2.0, 0.7, None), Verdict::Healthy);
        assert_eq!(g.epoch(5.0, 0.1, None), Verdict::Healthy);
        assert_eq!(g.step(200.0, 10.0), Verdict::Healthy);
        assert_eq!(g.step(200.1, 10.0), Verdict::RollBack);
        assert_eq!(g.step(1.0, 10.1), Verdict::RollBack);
        // A zero reference (no diffusion) tests nothing.
        let mut z = DivergenceGuard::new(100.0, 2);
        z.epoch(1.0, 0.0, None);
        assert_eq!(z.step(1.0, 1e9), Verdict::Healthy);
        // A negative reference (Gaussian NLL) is used by its magnitude.
        let mut n = DivergenceGuard::new(10.0, 2);
        n.epoch(-2.0, 0.0, None);
        assert_eq!(n.step(19.0, 0.0), Verdict::Healthy);
        assert_eq!(n.step(21.0, 0.0), Verdict::RollBack);
    }

    #[test]
    fn exploding_or_non_finite_validation_rolls_back() {
        let mut g = DivergenceGuard::new(10.0, 2);
        assert_eq!(g.epoch(1.0, 0.0, Some(4.0)), Verdict::Healthy);
        assert_eq!(g.epoch(1.0, 0.0, Some(39.0)), Verdict::Healthy);
        assert_eq!(g.epoch(1.0, 0.0, Some(41.0)), Verdict::RollBack);
        assert_eq!(g.epoch(1.0, 0.0, Some(f64::NAN)), Verdict::RollBack);
    }

    #[test]
    fn each_roll_back_halves_the_learning_rate_until_the_fit_diverges() {
        let mut g = DivergenceGuard::new(100.0, 2);
        g.roll_back(0).unwrap();
        g.roll_back(1).unwrap();
        assert_eq!((g.rollbacks, g.learning_rate_factor), (2, 0.25));
        let e = g.roll_back(4).unwrap_err();
        assert_eq!(
            (e.kind, e.arg, e.detail),
            (ErrorKind::Diverged, "learning_rate", Detail::Index(4))
        );
    }
}
