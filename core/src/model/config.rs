//! The model and training configuration: every knob of the seed under its
//! name, with documented ranges checked by [`Config::validate`].

use crate::error::{Detail, Error, Result};

/// Largest state dimension `d` (the core's).
pub use crate::MAX_DIM;
/// Largest number of hidden layers of the encoder.
pub const MAX_DEPTH: usize = 8;
/// Largest encoder width.
pub const MAX_WIDTH: usize = 1024;
/// Largest number of sinusoidal time features.
pub const MAX_TIME_FEATURES: usize = 32;
/// Rank `q` the front ends offer for a [`DiffusionHead::LowRank`] head until
/// one is given.
pub const DEFAULT_RANK: usize = 8;

/// Shape of the diffusion factor `L(z,t)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffusionHead {
    /// Lower-triangular `d×d`, diagonal `softplus(raw) + ε_diff`.
    Full,
    /// Dense `d×q`, `1 ≤ q ≤ d` (see [`super::heads`] for when it pays off).
    LowRank { q: usize },
    /// Diagonal `d×d`, entries `softplus(raw) + ε_diff` (ablation).
    Diagonal,
}

/// Drift loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DriftLoss {
    /// `Σ w_i ‖f_i − v̂_i‖² / Σ w_i`.
    Mse = 0,
    /// Gaussian NLL with a learned diagonal log-variance `s` (one per
    /// coordinate): `Σ w_i Σ_k ½[(f_ik − v̂_ik)² e^{−s_k} + s_k] / Σ w_i`.
    Nll = 1,
    /// Generalised least squares: each row's error whitened by the
    /// precision of its teacher's noise, `(L Lᵀ)⁻¹` of the model's own
    /// factor held fixed (see [`crate::loss::drift_loss_gls`]); the MSE
    /// without a diffusion head.
    Gls = 2,
}

/// How row masses become drift-loss weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MassWeighting {
    /// `w_i = r_i` (the UOT row mass).
    RowMass = 0,
    /// `w_i = 1{r_i ≥ η}` with `η = mass_threshold`.
    Threshold = 1,
}

/// Covariance target `D̂` (see `targets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum TargetMode {
    /// Option A: matched pairs, averaged over each source's `k` nearest
    /// sources in the minibatch.
    Pairwise = 0,
    /// Option B: residuals to every target weighted by the plan row.
    PlanWeighted = 1,
}

/// Which residual the covariance target is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Residual {
    /// The seed's `r = Δz − f(z_t, t)·h` (biased when `f` changes over `h`).
    OneStep = 0,
    /// `r = z_{t+h} − φ_h(z_t)`, `φ_h` the flow of the learned drift over the
    /// gap (RK4 with `flow_substeps` substeps).
    Flow = 1,
    /// Flow residuals, and the model's `D_θ` is carried through the learned
    /// flow over the gap before it meets `D̂`: the diffusion loss becomes
    /// `mean_i ‖M_h(D_θ)_i / h_i − D̂_i‖²_F` with
    /// `M_h(D) = ∫₀ʰ Φ(h,s) D(z_s) Φ(h,s)ᵀ ds`, `D_θ` evaluated at the
    /// `flow_substeps + 1` substep states (see [`crate::propagated`]). Right
    /// at finite gaps where the other two read `M_h(D)/h` as `D`. The drift
    /// is held fixed inside the target (no gradient through `Φ` or the
    /// substep states), as it is in `D̂`.
    Propagated = 2,
    /// As [`Residual::Propagated`], with the map's drift Jacobian frozen
    /// over each gap ([`crate::propagated::propagate_frozen`]): one Jacobian
    /// per source at the gap's midpoint state (first Magnus term, exact for
    /// a linear drift) in place of one per RK4 stage, and `D_θ` evaluated
    /// once per source at that midpoint: one Jacobian per source in place
    /// of `4·flow_substeps`. Measured costs and accuracy against the exact
    /// map: `docs/results/step_costs.md`, `tests/propagated_targets.rs`.
    PropagatedFrozen = 3,
}

/// What the drift learns from a teacher velocity `v̂` over a frame gap `h`:
/// the observed chord `(z_{t+h} − z_t)/h` of a tracked pair, or the UOT
/// plan's barycentric chord.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DriftTeacher {
    /// The seed's `f(z_t, t) ≈ v̂`: right as `h → 0`. At a finite gap the
    /// drift learns the chord, e.g. `(e^{Ah} − I)/h` in place of `A` for a
    /// linear drift (`tests/drift_teacher.rs` measures the gap).
    Chord = 0,
    /// The learned flow over the gap reproduces the teacher's displacement,
    /// `φ_h(z_t) ≈ z_t + v̂h` (RK4, `flow_substeps` substeps, as the flow
    /// residual). Each step's teacher is `v̂ + f_θ(z_t) − (φ_h(z_t) − z_t)/h`
    /// under the current parameters, held fixed inside the loss as `D̂` is:
    /// the drift loss is the weighted mean of `‖z_t + v̂h − φ_h(z_t)‖²/h²`
    /// and its fixed point is the flow match. Costs one RK4 flow per source
    /// and step (`4·flow_substeps` drift evaluations), shared with the
    /// flow-based residuals (measured: `docs/results/step_costs.md`).
    Flow = 1,
}

/// Model and training configuration. Real-valued knobs are `f64` whatever
/// the float type of the parameters (they are converted once per use).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// State dimension `d` (1..=[`MAX_DIM`]).
    pub d: usize,
    /// Number of sinusoidal time features (even, ≤ [`MAX_TIME_FEATURES`]):
    /// `sin(2^k s t), cos(2^k s t)` for `k < time_features/2`, `s =
    /// time_scale`. Input width `d + time_features` whatever `s`.
    pub time_features: usize,
    /// Scale `s` of the time features, in 1/(time unit of the data)
    /// (finite, `> 0`; default 1). The lowest feature pair has period `2π/s` in the
    /// data's time: choose `s` so the data's time span maps to about one
    /// unit (e.g. `1/(t_max − t_min)`), and the features cover it without
    /// wrapping (with `s = 1` and times in hours, `t = 1` and `t = 1 + 2π`
    /// get the same features). Only the encoder input is scaled: the drift
    /// and `D` stay per unit of the data's own time.
    pub time_scale: f64,
    /// Hidden layers of the encoder (0 makes the heads affine in `(z, time
    /// features)`).
    pub depth: usize,
    /// Width of each hidden layer (SiLU activation).
    pub width: usize,
    /// The diffusion factor `L(z,t)` learned beside the drift, `None` for a
    /// drift-only model.
    pub head: Option<DiffusionHead>,
    /// Weight of the diffusion loss after warm-up (≥ 0).
    pub lambda_diff: f64,
    /// `ε_diff` added to the softplus diagonal of `L` (> 0).
    pub diffusion_epsilon: f64,
    /// Epochs of the linear warm-up of `λ` from 0 to `lambda_diff`.
    pub warmup_epochs: u32,
    pub drift_loss: DriftLoss,
    pub drift_teacher: DriftTeacher,
    pub mass_weighting: MassWeighting,
    /// `η` of [`MassWeighting::Threshold`] (≥ 0).
    pub mass_threshold: f64,
    pub target_mode: TargetMode,
    pub residual: Residual,
    /// RK4 substeps of the flow (flow-based residuals and
    /// [`DriftTeacher::Flow`]; ≥ 1).
    pub flow_substeps: usize,
    /// Neighbourhood size `k` of the pairwise target (≥ 1, counts the source
    /// itself).
    pub k_neighbours: usize,
    /// Shrinkage `α ∈ [0, 1]`: `D̂ ← (1−α) D̂ + α (tr D̂ / d) I`.
    pub shrinkage: f64,
    /// `ε` added to the diagonal of every target `D̂` (≥ 0).
    pub target_epsilon: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip_grad_norm: f64,
    /// Cap on `tr D_θ = ‖L‖²_F` per state (0 = off): above it `L` is scaled
    /// onto the sphere `‖L‖²_F = clip_trace`.
    pub clip_trace: f64,
    /// Adam step size (> 0) and constants.
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_epsilon: f64,
    /// Decoupled weight decay (AdamW; 0 = plain Adam).
    pub weight_decay: f64,
    /// Seed of the initialisation and of every random stream of training.
    pub seed: u64,
}

impl Default for Config {
    /// The defaults every front end reads (the CLI's flags, the C ABI's
    /// `msde_model_config_default`, the Python module): d = 2, drift only,
    /// an encoder of 3 hidden layers of 128 with 2 time features; pairwise
    /// targets from flow residuals with the flow teacher. `time_scale` is 1
    /// here; the CLI resolves its `auto` from the data.
    fn default() -> Self {
        Config {
            d: 2,
            time_features: 2,
            time_scale: 1.0,
            depth: 3,
            width: 128,
            head: None,
            lambda_diff: 0.1,
            diffusion_epsilon: 1e-6,
            warmup_epochs: 5,
            drift_loss: DriftLoss::Mse,
            drift_teacher: DriftTeacher::Flow,
            mass_weighting: MassWeighting::RowMass,
            mass_threshold: 0.5,
            target_mode: TargetMode::Pairwise,
            residual: Residual::PropagatedFrozen,
            flow_substeps: 4,
            k_neighbours: 1,
            shrinkage: 0.0,
            target_epsilon: 1e-6,
            clip_grad_norm: 10.0,
            clip_trace: 0.0,
            learning_rate: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            adam_epsilon: 1e-8,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

fn in_range(x: f64, lo: f64, hi: f64, arg: &'static str, msg: &'static str) -> Result<()> {
    if x.is_finite() && x >= lo && x <= hi {
        Ok(())
    } else {
        Err(Error::bad_config(arg, msg).with(Detail::Value(x)))
    }
}

fn count_in(x: usize, lo: usize, hi: usize, arg: &'static str, msg: &'static str) -> Result<()> {
    if x >= lo && x <= hi {
        Ok(())
    } else {
        Err(Error::bad_config(arg, msg).with(Detail::Value(x as f64)))
    }
}

impl Config {
    /// Columns `q` of the factor `L` (`d×q`): the rank for low-rank heads,
    /// `d` for full and diagonal heads, 0 without diffusion.
    pub fn noise_dim(&self) -> usize {
        match self.head {
            None => 0,
            Some(DiffusionHead::LowRank { q }) => q,
            Some(DiffusionHead::Full | DiffusionHead::Diagonal) => self.d,
        }
    }

    /// Every field in its documented range, else [`crate::ErrorKind::BadConfig`]
    /// naming the field.
    pub fn validate(&self) -> Result<()> {
        count_in(self.d, 1, MAX_DIM, "d", "must be in 1..=64")?;
        count_in(self.depth, 0, MAX_DEPTH, "depth", "must be in 0..=8")?;
        if self.depth > 0 {
            count_in(self.width, 1, MAX_WIDTH, "width", "must be in 1..=1024")?;
        }
        if !self.time_features.is_multiple_of(2) || self.time_features > MAX_TIME_FEATURES {
            return Err(
                Error::bad_config("time_features", "must be even and at most 32")
                    .with(Detail::Value(self.time_features as f64)),
            );
        }
        if !(self.time_scale > 0.0 && self.time_scale.is_finite()) {
            return Err(Error::bad_config("time_scale", "must be finite and > 0")
                .with(Detail::Value(self.time_scale)));
        }
        if let Some(DiffusionHead::LowRank { q }) = self.head {
            count_in(q, 1, self.d, "q", "must be in 1..=d")?;
        }
        in_range(
            self.lambda_diff,
            0.0,
            f64::MAX,
            "lambda_diff",
            "must be finite and >= 0",
        )?;
        if !(self.diffusion_epsilon > 0.0 && self.diffusion_epsilon.is_finite()) {
            return Err(
                Error::bad_config("diffusion_epsilon", "must be finite and > 0")
                    .with(Detail::Value(self.diffusion_epsilon)),
            );
        }
        in_range(
            self.mass_threshold,
            0.0,
            f64::MAX,
            "mass_threshold",
            "must be finite and >= 0",
        )?;
        count_in(
            self.flow_substeps,
            1,
            1024,
            "flow_substeps",
            "must be in 1..=1024",
        )?;
        count_in(
            self.k_neighbours,
            1,
            usize::MAX,
            "k_neighbours",
            "must be at least 1",
        )?;
        in_range(self.shrinkage, 0.0, 1.0, "shrinkage", "must be in [0, 1]")?;
        in_range(
            self.target_epsilon,
            0.0,
            f64::MAX,
            "target_epsilon",
            "must be finite and >= 0",
        )?;
        in_range(
            self.clip_grad_norm,
            0.0,
            f64::MAX,
            "clip_grad_norm",
            "must be finite and >= 0 (0 = off)",
        )?;
        in_range(
            self.clip_trace,
            0.0,
            f64::MAX,
            "clip_trace",
            "must be finite and >= 0 (0 = off)",
        )?;
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(Error::bad_config("learning_rate", "must be finite and > 0")
                .with(Detail::Value(self.learning_rate)));
        }
        in_range(self.beta1, 0.0, 0.999_999, "beta1", "must be in [0, 1)")?;
        in_range(self.beta2, 0.0, 0.999_999_9, "beta2", "must be in [0, 1)")?;
        if !(self.adam_epsilon > 0.0 && self.adam_epsilon.is_finite()) {
            return Err(Error::bad_config("adam_epsilon", "must be finite and > 0")
                .with(Detail::Value(self.adam_epsilon)));
        }
        in_range(
            self.weight_decay,
            0.0,
            f64::MAX,
            "weight_decay",
            "must be finite and >= 0",
        )?;
        Ok(())
    }

    /// Weight `λ(epoch)` of the diffusion loss: 0 without a head, else a
    /// linear ramp `lambda_diff · min(1, epoch / warmup_epochs)` (0 at epoch
    /// 0; `lambda_diff` throughout when `warmup_epochs = 0`).
    pub fn lambda_at(&self, epoch: u32) -> f64 {
        if self.head.is_none() {
            0.0
        } else if self.warmup_epochs == 0 || epoch >= self.warmup_epochs {
            self.lambda_diff
        } else {
            self.lambda_diff * epoch as f64 / self.warmup_epochs as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        Config::default().validate().unwrap();
        let bad = |f: fn(&mut Config), arg: &str| {
            let mut c = Config::default();
            f(&mut c);
            assert_eq!(c.validate().unwrap_err().arg, arg);
        };
        bad(|c| c.d = 0, "d");
        bad(|c| c.depth = 9, "depth");
        bad(|c| c.time_features = 3, "time_features");
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let c = Config {
                time_scale: s,
                ..Config::default()
            };
            assert_eq!(c.validate().unwrap_err().arg, "time_scale", "{s}");
        }
        bad(|c| c.lambda_diff = f64::NAN, "lambda_diff");
        bad(|c| c.diffusion_epsilon = 0.0, "diffusion_epsilon");
        bad(|c| c.shrinkage = 1.5, "shrinkage");
        bad(|c| c.beta2 = 1.0, "beta2");
        bad(|c| c.head = Some(DiffusionHead::LowRank { q: 3 }), "q");
        bad(|c| c.head = Some(DiffusionHead::LowRank { q: 0 }), "q");
    }

    #[test]
    fn lambda_warms_up_linearly() {
        let mut c = Config {
            head: Some(DiffusionHead::Full),
            lambda_diff: 0.4,
            warmup_epochs: 4,
            ..Config::default()
        };
        let l: [f64; 6] = core::array::from_fn(|e| c.lambda_at(e as u32));
        assert_eq!(l, [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.4]);
        c.warmup_epochs = 0;
        assert_eq!(c.lambda_at(0), 0.4);
        c.head = None;
        assert_eq!(c.lambda_at(7), 0.0);
    }
}
