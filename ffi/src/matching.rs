//! The distribution-matching stage over the C ABI
//! (`morphosde_core::train::matching`): after a teacher fit
//! (msde_trainer_fit), roll the model out from every observed embryo and
//! move it so the simulated clouds match the observed ones at the next
//! bins, with caller workspaces only.

use crate::buffers::{input, optional_out, output, size_answer, value_in, value_out};
use crate::model::{model_params_mut, model_ref, msde_model};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::Result;
use morphosde_core::error::{Arena, Error, check_len, check_room, checked_mul};
use morphosde_core::model::{Config, Learned};
use morphosde_core::size::Size;
use morphosde_core::train::acceptance::{RangeCheck, check_rollouts, check_rollouts_workspace_len};
use morphosde_core::train::fit::Observations;
use morphosde_core::train::matching::{MatchConfig, match_rollouts, match_workspace_len};

/// Settings of msde_model_match; fill with msde_match_config_default.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_match_config {
    /// Adam steps of the stage (0: the call only checks and evaluates).
    pub steps: usize,
    /// Simulated embryos per start bin, and observed embryos each simulated
    /// cloud is compared with (>= 2).
    pub batch: usize,
    /// Euler-Maruyama substeps per gap between bins (>= 1).
    pub substeps: usize,
    /// Gaps rolled out from each start bin, matching at every bin crossed
    /// (>= 1).
    pub horizon: usize,
    /// Adam step size (> 0, finite).
    pub learning_rate: f64,
    /// Global gradient-norm clip (>= 0; 0 = off).
    pub clip_grad_norm: f64,
    /// Fraction of every time bin held out to choose the parameters kept,
    /// in [0, 1).
    pub validation_fraction: f64,
    /// Steps between held-out checks (>= 1).
    pub check_every: usize,
    /// Start bins rolled out per training step, each drawn at random (0:
    /// every start bin, in order).
    pub starts_per_step: usize,
    /// Weight of the penalty that keeps the diffusion factor where the
    /// stage found it (>= 0; 0 = free; ignored without a diffusion head).
    pub diffusion_anchor: f64,
    /// Seed of the split, the draws and the noise.
    pub seed: u64,
}

/// What msde_model_match did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct msde_match_report {
    /// Steps taken (fewer than configured when a non-finite loss stopped
    /// the stage).
    pub steps: usize,
    /// Held-out loss (mean energy distance in standardised coordinates) of
    /// the starting parameters and of the parameters kept.
    pub held_out_initial: f32,
    pub held_out_kept: f32,
    /// Step after which the kept parameters were taken (0: the start).
    pub kept_step: usize,
    /// Training loss of the last step (NaN when no step ran).
    pub last_train_loss: f32,
    /// 1 when a non-finite loss or state stopped the stage.
    pub stopped_non_finite: u32,
}

fn to_core(c: &msde_match_config) -> Result<MatchConfig> {
    let cfg = MatchConfig {
        steps: c.steps,
        batch: c.batch,
        substeps: c.substeps,
        horizon: c.horizon,
        learning_rate: c.learning_rate,
        clip_grad_norm: c.clip_grad_norm,
        validation_fraction: c.validation_fraction,
        check_every: c.check_every,
        starts_per_step: c.starts_per_step,
        diffusion_anchor: c.diffusion_anchor,
        seed: c.seed,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Fills *out with the stage's defaults (the core's MatchConfig::default(),
/// which the command-line tool's --match-* flags default to).
///
/// # Safety
/// `out` NULL (refused) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_match_config_default(
    out: *mut msde_match_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out, "out") }?;
        let c = MatchConfig::default();
        *out = msde_match_config {
            steps: c.steps,
            batch: c.batch,
            substeps: c.substeps,
            horizon: c.horizon,
            learning_rate: c.learning_rate,
            clip_grad_norm: c.clip_grad_norm,
            validation_fraction: c.validation_fraction,
            check_every: c.check_every,
            starts_per_step: c.starts_per_step,
            diffusion_anchor: c.diffusion_anchor,
            seed: c.seed,
        };
        Ok(())
    })
}

/// The acceptance check msde_model_match runs on the matched model.
fn range_check(cfg: &MatchConfig) -> RangeCheck {
    RangeCheck {
        seed: cfg.seed,
        ..RangeCheck::default()
    }
}

/// Workspace lengths (floats, indices): the working copy of the
/// parameters, then the larger of the stage's own and the acceptance
/// check's.
fn sizes(config: &Config, params: &[f32], n: usize, cfg: &MatchConfig) -> Result<(usize, usize)> {
    let need = match_workspace_len(config, cfg, n)?;
    let model = Learned::new(config, params)?;
    let check = check_rollouts_workspace_len(&model, n, &range_check(cfg), 1);
    Ok((
        (Size(need.floats).max(check) + params.len()).get(),
        need.indices,
    ))
}

/// Workspace msde_model_match needs for `model` on n observations under
/// *config: *float_len floats and *index_len uint32 values. Checks the
/// config.
///
/// # Safety
/// `model` a model of this library; `config` valid; the outputs writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_match_workspace_len(
    model: *const msde_model,
    n: usize,
    config: *const msde_match_config,
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

/// Runs the matching stage on `model` over raw snapshots: n = t_len
/// observations z (n x d row-major, d the model's dimension) at times t
/// (n; observations sharing a time form a bin; at least two bins, each
/// with at least two training embryos and, with validation_fraction > 0,
/// one held out). Track ids are not needed: every embryo teaches. The
/// parameters with the lowest held-out loss are kept (the model's own
/// included, so the call never returns a model worse on held-out rollouts);
/// the kept model must then roll out inside the data's range, as after
/// msde_trainer_fit, or the call fails with MSDE_ERR_DIVERGED.
///
/// - `float_workspace`, `index_workspace`: msde_match_workspace_len sizes.
/// - `report`: optional (NULL to skip).
///
/// Errors: NULL pointers, lengths that disagree, fewer than two time bins
/// or bins too small for the split (MSDE_ERR_BAD_DIMENSION), NaN/Inf in z
/// or t, out-of-range settings (MSDE_ERR_BAD_CONFIG), short workspaces,
/// MSDE_ERR_DIVERGED. On any error the model is unchanged and no output is
/// written. Results are bit-identical to the Rust core's match_rollouts.
///
/// # Safety
/// `model` a model of this library, used by one thread at a time; buffers
/// valid for their lengths, disjoint from each other and the model.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_model_match(
    model: *mut msde_model,
    config: *const msde_match_config,
    z: *const f32,
    z_len: usize,
    t: *const f32,
    t_len: usize,
    float_workspace: *mut f32,
    float_workspace_len: usize,
    index_workspace: *mut u32,
    index_workspace_len: usize,
    report: *mut msde_match_report,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let z = unsafe { input(z, z_len, "z") }?;
        let t = unsafe { input(t, t_len, "t") }?;
        let fw = unsafe { output(float_workspace, float_workspace_len, "float_workspace") }?;
        let iw = unsafe { output(index_workspace, index_workspace_len, "index_workspace") }?;
        let report = unsafe { optional_out(report, "report") }?;
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let config = m.config;
        let n = t.len();
        if n == 0 {
            return Err(Error::bad_dim("t", "no observations"));
        }
        let (need_f, need_i) = sizes(&config, params, n, &cfg)?;
        check_len(z, checked_mul(n, config.d, "t")?, "z")?;
        check_room(fw, need_f, "float_workspace")?;
        check_room(iw, need_i, "index_workspace")?;
        let mut floats = Arena::new(fw);
        let work = floats.take(params.len())?;
        work.copy_from_slice(params);
        let scratch = floats.rest();
        let data = Observations {
            z,
            t,
            track: &[],
            d: config.d,
        };
        let r = match_rollouts(&config, work, &data, &cfg, &mut *scratch, iw)?;
        let matched = Learned::new(&config, work)?;
        let check = range_check(&cfg);
        check_rollouts(&matched, &data, &check, scratch)?.verdict(&check)?;
        // Success: commit the parameters and the report.
        let (_, params) = unsafe { model_params_mut(model, "model") }?;
        params.copy_from_slice(work);
        if let Some(out) = report {
            *out = msde_match_report {
                steps: r.steps,
                held_out_initial: r.initial,
                held_out_kept: r.best,
                kept_step: r.best_step,
                last_train_loss: r.last_train,
                stopped_non_finite: u32::from(r.stopped_non_finite),
            };
        }
        Ok(())
    })
}
