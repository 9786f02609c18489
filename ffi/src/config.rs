//! The model configuration over the C ABI: `msde_model_config`, the
//! codes of its enum fields, its defaults, and its conversions to and from
//! the core's `Config`.

use crate::buffers::{flag, value_out};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::Result;
use morphosde_core::error::{Detail, Error};
use morphosde_core::model::{
    Config, DEFAULT_RANK, DiffusionHead, DriftLoss, DriftTeacher, MassWeighting, Residual,
    TargetMode,
};

/// msde_model_config.drift_loss: mean squared error weighted by row mass.
pub const MSDE_DRIFT_LOSS_MSE: u32 = 0;
/// msde_model_config.drift_loss: Gaussian NLL with a learned log-variance.
pub const MSDE_DRIFT_LOSS_NLL: u32 = 1;
/// msde_model_config.drift_loss: generalised least squares, each row
/// whitened by the precision of its teacher's noise (the model's own
/// L L^T, held fixed); the MSE without a diffusion head.
pub const MSDE_DRIFT_LOSS_GLS: u32 = 2;
/// msde_model_config.mass_weighting: weight w_i = UOT row mass r_i.
pub const MSDE_MASS_ROW_MASS: u32 = 0;
/// msde_model_config.mass_weighting: w_i = 1 if r_i >= mass_threshold.
pub const MSDE_MASS_THRESHOLD: u32 = 1;
/// msde_model_config.target_mode: matched pairs, k-neighbour averaged.
pub const MSDE_TARGET_PAIRWISE: u32 = 0;
/// msde_model_config.target_mode: residuals weighted by the plan row.
pub const MSDE_TARGET_PLAN_WEIGHTED: u32 = 1;
/// msde_model_config.residual: r = dz - f(z, t) h.
pub const MSDE_RESIDUAL_ONE_STEP: u32 = 0;
/// msde_model_config.residual: r = z(t+h) - flow_h(z(t)) (RK4).
pub const MSDE_RESIDUAL_FLOW: u32 = 1;
/// msde_model_config.residual: flow residuals with D propagated through the
/// flow's Jacobian over the gap.
pub const MSDE_RESIDUAL_PROPAGATED: u32 = 2;
/// msde_model_config.residual: as MSDE_RESIDUAL_PROPAGATED with the flow's
/// Jacobian frozen over each gap (one Jacobian per source, at the gap's
/// midpoint; D evaluated there): several times cheaper, exact for a linear
/// drift.
pub const MSDE_RESIDUAL_PROPAGATED_FROZEN: u32 = 3;
/// msde_model_config.drift_teacher: the seed's f(z_t) = v_hat (the drift
/// learns the chord over the frame gap).
pub const MSDE_DRIFT_TEACHER_CHORD: u32 = 0;
/// msde_model_config.drift_teacher: the learned drift's RK4 flow over the
/// gap reproduces the teacher's displacement z_t + v_hat h (right at finite
/// gaps; one flow per source and training step).
pub const MSDE_DRIFT_TEACHER_FLOW: u32 = 1;
/// Model and training configuration (the seed's knobs). Fill it with
/// msde_model_config_default, then change fields; msde_model_init and the
/// other calls check every field (MSDE_ERR_BAD_CONFIG naming it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_model_config {
    /// State dimension d (1..=64).
    pub d: usize,
    /// Sinusoidal time features (even, <= 32): sin(2^k s t), cos(2^k s t),
    /// s = time_scale.
    pub time_features: usize,
    /// Scale s of the time features in 1/(time unit of the data): finite
    /// and > 0, default 1. Pick it so the data's time span maps to about one
    /// unit (e.g. 1/(t_max - t_min)), so the lowest feature pair (period
    /// 2 pi / s) covers the span without wrapping. Only the network input
    /// is scaled: drift and diffusion stay per unit of the data's time.
    pub time_scale: f64,
    /// Hidden layers of the encoder (0..=8; 0: heads affine in the input).
    pub depth: usize,
    /// Units per hidden layer (1..=1024; SiLU activation).
    pub width: usize,
    /// 1: learn a diffusion factor L(z, t) beside the drift; 0: drift only.
    pub learn_diffusion: u32,
    /// 1: low-rank head L (d x q); 0: full lower-triangular (or diagonal).
    /// Read only with learn_diffusion = 1 (a model without a diffusion head
    /// reports 0).
    pub diffusion_low_rank: u32,
    /// 1: diagonal head (ablation); exclusive with diffusion_low_rank. Read
    /// only with learn_diffusion = 1 (a model without one reports 0).
    pub diffusion_diagonal: u32,
    /// Epochs of the linear warm-up of the diffusion-loss weight.
    pub warmup_epochs: u32,
    /// Rank q of the low-rank head (1..=d; read only with the low-rank head;
    /// a model without one reports the default rank, 8).
    pub q: usize,
    /// Weight of the diffusion loss after warm-up (>= 0).
    pub lambda_diff: f64,
    /// Added to the softplus diagonal of L (> 0).
    pub diffusion_epsilon: f64,
    /// MSDE_DRIFT_LOSS_MSE, MSDE_DRIFT_LOSS_NLL or MSDE_DRIFT_LOSS_GLS.
    pub drift_loss: u32,
    /// MSDE_MASS_ROW_MASS or MSDE_MASS_THRESHOLD.
    pub mass_weighting: u32,
    /// MSDE_TARGET_PAIRWISE or MSDE_TARGET_PLAN_WEIGHTED.
    pub target_mode: u32,
    /// MSDE_RESIDUAL_ONE_STEP, MSDE_RESIDUAL_FLOW, MSDE_RESIDUAL_PROPAGATED or
    /// MSDE_RESIDUAL_PROPAGATED_FROZEN.
    pub residual: u32,
    /// MSDE_DRIFT_TEACHER_CHORD or MSDE_DRIFT_TEACHER_FLOW.
    pub drift_teacher: u32,
    /// Threshold of MSDE_MASS_THRESHOLD (>= 0).
    pub mass_threshold: f64,
    /// RK4 substeps of the flow (flow-based residuals and
    /// MSDE_DRIFT_TEACHER_FLOW; 1..=1024).
    pub flow_substeps: usize,
    /// Neighbourhood size of the pairwise target (>= 1, counts the source).
    pub k_neighbours: usize,
    /// Shrinkage of the targets towards (tr D / d) I, in [0, 1].
    pub shrinkage: f64,
    /// Added to the diagonal of every target (>= 0).
    pub target_epsilon: f64,
    /// Global gradient-norm clip (>= 0; 0 = off).
    pub clip_grad_norm: f64,
    /// Cap on tr D = |L|_F^2 per state (>= 0; 0 = off).
    pub clip_trace: f64,
    /// Adam step size (> 0).
    pub learning_rate: f64,
    /// Adam beta1 in [0, 1).
    pub beta1: f64,
    /// Adam beta2 in [0, 1).
    pub beta2: f64,
    /// Adam epsilon (> 0).
    pub adam_epsilon: f64,
    /// Decoupled weight decay (AdamW; >= 0, 0 = plain Adam).
    pub weight_decay: f64,
    /// Seed of the initialisation and of every random stream of training.
    pub seed: u64,
}

fn enum_field(value: u32, max: u32, arg: &'static str) -> Result<u32> {
    if value > max {
        return Err(Error::bad_config(arg, "is not one of its MSDE_ constants")
            .with(Detail::Index(value as usize)));
    }
    Ok(value)
}

/// The core config of a C config, every field checked.
pub(crate) fn to_core(c: &msde_model_config) -> Result<Config> {
    let head = match (
        flag(c.learn_diffusion, "learn_diffusion")?,
        flag(c.diffusion_low_rank, "diffusion_low_rank")?,
        flag(c.diffusion_diagonal, "diffusion_diagonal")?,
    ) {
        (false, _, _) => None,
        (true, true, true) => {
            return Err(Error::bad_config(
                "diffusion_diagonal",
                "cannot be combined with diffusion_low_rank",
            ));
        }
        (true, true, false) => Some(DiffusionHead::LowRank { q: c.q }),
        (true, false, true) => Some(DiffusionHead::Diagonal),
        (true, false, false) => Some(DiffusionHead::Full),
    };
    let config = Config {
        d: c.d,
        time_features: c.time_features,
        time_scale: c.time_scale,
        depth: c.depth,
        width: c.width,
        head,
        lambda_diff: c.lambda_diff,
        diffusion_epsilon: c.diffusion_epsilon,
        warmup_epochs: c.warmup_epochs,
        drift_loss: match enum_field(c.drift_loss, 2, "drift_loss")? {
            MSDE_DRIFT_LOSS_MSE => DriftLoss::Mse,
            MSDE_DRIFT_LOSS_NLL => DriftLoss::Nll,
            _ => DriftLoss::Gls,
        },
        drift_teacher: match enum_field(c.drift_teacher, 1, "drift_teacher")? {
            MSDE_DRIFT_TEACHER_CHORD => DriftTeacher::Chord,
            _ => DriftTeacher::Flow,
        },
        mass_weighting: match enum_field(c.mass_weighting, 1, "mass_weighting")? {
            MSDE_MASS_ROW_MASS => MassWeighting::RowMass,
            _ => MassWeighting::Threshold,
        },
        mass_threshold: c.mass_threshold,
        target_mode: match enum_field(c.target_mode, 1, "target_mode")? {
            MSDE_TARGET_PAIRWISE => TargetMode::Pairwise,
            _ => TargetMode::PlanWeighted,
        },
        residual: match enum_field(c.residual, 3, "residual")? {
            MSDE_RESIDUAL_ONE_STEP => Residual::OneStep,
            MSDE_RESIDUAL_FLOW => Residual::Flow,
            MSDE_RESIDUAL_PROPAGATED => Residual::Propagated,
            _ => Residual::PropagatedFrozen,
        },
        flow_substeps: c.flow_substeps,
        k_neighbours: c.k_neighbours,
        shrinkage: c.shrinkage,
        target_epsilon: c.target_epsilon,
        clip_grad_norm: c.clip_grad_norm,
        clip_trace: c.clip_trace,
        learning_rate: c.learning_rate,
        beta1: c.beta1,
        beta2: c.beta2,
        adam_epsilon: c.adam_epsilon,
        weight_decay: c.weight_decay,
        seed: c.seed,
    };
    config.validate()?;
    Ok(config)
}

pub(crate) fn from_core(c: &Config) -> msde_model_config {
    msde_model_config {
        d: c.d,
        time_features: c.time_features,
        time_scale: c.time_scale,
        depth: c.depth,
        width: c.width,
        learn_diffusion: c.head.is_some() as u32,
        diffusion_low_rank: matches!(c.head, Some(DiffusionHead::LowRank { .. })) as u32,
        diffusion_diagonal: (c.head == Some(DiffusionHead::Diagonal)) as u32,
        warmup_epochs: c.warmup_epochs,
        q: match c.head {
            Some(DiffusionHead::LowRank { q }) => q,
            _ => DEFAULT_RANK,
        },
        lambda_diff: c.lambda_diff,
        diffusion_epsilon: c.diffusion_epsilon,
        drift_loss: c.drift_loss as u32,
        mass_weighting: c.mass_weighting as u32,
        target_mode: c.target_mode as u32,
        residual: c.residual as u32,
        drift_teacher: c.drift_teacher as u32,
        mass_threshold: c.mass_threshold,
        flow_substeps: c.flow_substeps,
        k_neighbours: c.k_neighbours,
        shrinkage: c.shrinkage,
        target_epsilon: c.target_epsilon,
        clip_grad_norm: c.clip_grad_norm,
        clip_trace: c.clip_trace,
        learning_rate: c.learning_rate,
        beta1: c.beta1,
        beta2: c.beta2,
        adam_epsilon: c.adam_epsilon,
        weight_decay: c.weight_decay,
        seed: c.seed,
    }
}

/// Fills *out with the library's defaults (the core's Config::default(),
/// the values the command-line tool's flags default to): d = 2, drift only,
/// time_scale 1; change d and any other field before use.
///
/// # Safety
/// `out` must be NULL (refused) or point to a writable msde_model_config.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_config_default(
    out: *mut msde_model_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        *unsafe { value_out(out, "out") }? = from_core(&Config::default());
        Ok(())
    })
}
