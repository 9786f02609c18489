//! The learned model over the C ABI: configuration, an opaque model object
//! placed in caller memory (or, with std, on the heap), initialisation from
//! a seed, drift and diffusion-factor evaluation, parameters, and model
//! bytes.

use crate::buffers::{flag, input, output, size_answer, value_in, value_out};
use crate::status::{guard, msde_error, msde_status};
use core::ffi::c_void;
use morphosde_core::Result;
use morphosde_core::codec;
use morphosde_core::error::{
    Detail, Error, ErrorKind, check_finite, check_len, check_room, checked_mul,
};
use morphosde_core::model::{
    Config, DriftLoss, DriftTeacher, Layout, MassWeighting, Residual, TargetMode,
};
use morphosde_core::size::Size;

/// msde_model_config.drift_loss: mean squared error weighted by row mass.
pub const MSDE_DRIFT_LOSS_MSE: u32 = 0;
/// msde_model_config.drift_loss: Gaussian NLL with a learned log-variance.
pub const MSDE_DRIFT_LOSS_NLL: u32 = 1;
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
/// Alignment in bytes caller memory for msde_model_init / msde_trainer_init
/// must have (malloc'ed memory and uint64_t or double arrays have it).
pub const MSDE_STATE_ALIGN: usize = 8;

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
    pub diffusion_low_rank: u32,
    /// 1: diagonal head (ablation); exclusive with diffusion_low_rank.
    pub diffusion_diagonal: u32,
    /// Epochs of the linear warm-up of the diffusion-loss weight.
    pub warmup_epochs: u32,
    /// Rank q of the low-rank head (1..=d; read only with the low-rank head).
    pub q: usize,
    /// Weight of the diffusion loss after warm-up (>= 0).
    pub lambda_diff: f64,
    /// Added to the softplus diagonal of L (> 0).
    pub diffusion_epsilon: f64,
    /// MSDE_DRIFT_LOSS_MSE or MSDE_DRIFT_LOSS_NLL.
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
    let config = Config {
        d: c.d,
        time_features: c.time_features,
        time_scale: c.time_scale,
        depth: c.depth,
        width: c.width,
        learn_diffusion: flag(c.learn_diffusion, "learn_diffusion")?,
        lambda_diff: c.lambda_diff,
        diffusion_low_rank: flag(c.diffusion_low_rank, "diffusion_low_rank")?,
        q: c.q,
        diffusion_diagonal: flag(c.diffusion_diagonal, "diffusion_diagonal")?,
        diffusion_epsilon: c.diffusion_epsilon,
        warmup_epochs: c.warmup_epochs,
        drift_loss: match enum_field(c.drift_loss, 1, "drift_loss")? {
            MSDE_DRIFT_LOSS_MSE => DriftLoss::Mse,
            _ => DriftLoss::Nll,
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

fn from_core(c: &Config) -> msde_model_config {
    msde_model_config {
        d: c.d,
        time_features: c.time_features,
        time_scale: c.time_scale,
        depth: c.depth,
        width: c.width,
        learn_diffusion: c.learn_diffusion as u32,
        diffusion_low_rank: c.diffusion_low_rank as u32,
        diffusion_diagonal: c.diffusion_diagonal as u32,
        warmup_epochs: c.warmup_epochs,
        q: c.q,
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

const MODEL_TAG: u64 = u64::from_le_bytes(*b"msdeMODL");

/// A model: configuration and parameters in one block of memory (opaque;
/// placed by msde_model_init / msde_model_load in caller memory, or by
/// msde_model_new / msde_model_load_new on the heap).
pub struct msde_model {
    tag: u64,
    pub(crate) config: Config,
    pub(crate) layout: Layout,
    /// Bytes of the whole block when the library allocated it (0: caller
    /// memory).
    #[cfg_attr(not(feature = "std"), allow(dead_code))] // read by the std-only free calls
    heap_bytes: usize,
}

/// Bytes of a model object with `params` parameters: the header, then the
/// parameters (f32, 8-aligned since the header size is a multiple of 8).
fn model_bytes(params: usize) -> Result<usize> {
    let bytes = (Size(params) * size_of::<f32>() + size_of::<msde_model>()).get();
    size_answer::<u8>(bytes, "params")
}
const _: () = assert!(align_of::<msde_model>() <= MSDE_STATE_ALIGN);
const _: () = assert!(size_of::<msde_model>().is_multiple_of(8));

fn not_a(arg: &'static str) -> Error {
    Error::new(
        ErrorKind::CorruptModel,
        arg,
        "is not a live object of its type (uninitialised, freed or overwritten)",
    )
}

/// The model behind a C pointer and its parameters.
///
/// # Safety
/// `ptr` is NULL or points to memory holding a model made by this library.
/// A size query about a model: checks `model`, then `out_len`, and writes
/// `size(model, parameters)` (elements of `T`, see [`size_answer`]) to
/// `*out_len`.
///
/// # Safety
/// As [`model_ref`]; `out_len` writable.
pub(crate) unsafe fn model_size_query<T>(
    model: *const msde_model,
    out_len: *mut usize,
    err: *mut msde_error,
    size: impl FnOnce(&msde_model, &[f32]) -> Result<usize>,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let out = unsafe { value_out(out_len, "out_len") }?;
        *out = size_answer::<T>(size(m, params)?, "out_len")?;
        Ok(())
    })
}

pub(crate) unsafe fn model_ref<'a>(
    ptr: *const msde_model,
    arg: &'static str,
) -> Result<(&'a msde_model, &'a [f32])> {
    let m: &msde_model = unsafe { value_in(ptr, arg) }?;
    if m.tag != MODEL_TAG {
        return Err(not_a(arg));
    }
    // SAFETY: a tagged model is followed by its layout.len parameters.
    let params = unsafe {
        core::slice::from_raw_parts(
            (ptr as *const u8).add(size_of::<msde_model>()) as *const f32,
            m.layout.len,
        )
    };
    Ok((m, params))
}

/// The mutable parameters of a model behind a C pointer.
///
/// # Safety
/// As [`model_ref`]; no other reference to the model may be live.
pub(crate) unsafe fn model_params_mut<'a>(
    ptr: *mut msde_model,
    arg: &'static str,
) -> Result<(&'a msde_model, &'a mut [f32])> {
    let (m, _) = unsafe { model_ref(ptr, arg) }?;
    // SAFETY: as in model_ref; the caller holds the only reference.
    let params = unsafe {
        core::slice::from_raw_parts_mut(
            (ptr as *mut u8).add(size_of::<msde_model>()) as *mut f32,
            m.layout.len,
        )
    };
    Ok((m, params))
}

/// Checked caller memory of at least `need` bytes, aligned to
/// MSDE_STATE_ALIGN.
pub(crate) fn state_memory(mem: *mut c_void, mem_bytes: usize, need: usize) -> Result<*mut u8> {
    if mem.is_null() {
        return Err(Error::new(ErrorKind::NullPointer, "mem", "is NULL"));
    }
    if !(mem as usize).is_multiple_of(MSDE_STATE_ALIGN) {
        return Err(Error::new(
            ErrorKind::Misaligned,
            "mem",
            "is not aligned to MSDE_STATE_ALIGN bytes",
        ));
    }
    if mem_bytes < need {
        return Err(Error::too_small("mem_bytes", need, mem_bytes));
    }
    Ok(mem.cast())
}

/// Places a model (header, then `params` filled by `fill`) at `at`; the tag
/// is written last, so a failed fill leaves no valid model behind.
///
/// # Safety
/// `at` is 8-aligned and valid for model_bytes(layout.len) bytes.
pub(crate) unsafe fn place_model(
    at: *mut u8,
    config: Config,
    layout: Layout,
    heap_bytes: usize,
    fill: impl FnOnce(&mut [f32]) -> Result<()>,
) -> Result<*mut msde_model> {
    let model = at as *mut msde_model;
    // SAFETY: valid and aligned (caller contract); parameters zeroed before
    // a slice is made over them.
    unsafe {
        let params_at = at.add(size_of::<msde_model>()) as *mut f32;
        core::ptr::write_bytes(params_at, 0, layout.len);
        core::ptr::write(
            model,
            msde_model {
                tag: 0,
                config,
                layout,
                heap_bytes,
            },
        );
        fill(core::slice::from_raw_parts_mut(params_at, layout.len))?;
        (*model).tag = MODEL_TAG;
    }
    Ok(model)
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

/// Number of parameters (floats) of a model of *config, written to *out_len.
///
/// # Safety
/// `config` and `out_len` must be NULL (refused) or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_params_len(
    config: *const msde_model_config,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let config = to_core(unsafe { value_in(config, "config") }?)?;
        let out = unsafe { value_out(out_len, "out_len") }?;
        *out = Layout::new(&config)?.len;
        Ok(())
    })
}

/// Bytes of caller memory msde_model_init needs for *config (header and
/// parameters), written to *out_bytes.
///
/// # Safety
/// `config` and `out_bytes` must be NULL (refused) or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_state_len(
    config: *const msde_model_config,
    out_bytes: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let config = to_core(unsafe { value_in(config, "config") }?)?;
        let out = unsafe { value_out(out_bytes, "out_bytes") }?;
        *out = model_bytes(Layout::new(&config)?.len)?;
        Ok(())
    })
}

/// Creates a model of *config in caller memory `mem` (mem_bytes >=
/// msde_model_state_len, aligned to MSDE_STATE_ALIGN), its parameters
/// initialised from config->seed (the Rust core's Layout::init), and writes
/// its address (== mem) to *out. The model lives as long as the memory;
/// there is nothing to free (never pass it to msde_model_free).
///
/// Errors: NULL pointers, a bad config, misaligned or short memory.
///
/// # Safety
/// `mem` must be NULL (refused) or valid for mem_bytes writable bytes and
/// used for nothing else while the model is in use.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_init(
    mem: *mut c_void,
    mem_bytes: usize,
    config: *const msde_model_config,
    out: *mut *mut msde_model,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let config = to_core(unsafe { value_in(config, "config") }?)?;
        let out = unsafe { value_out(out, "out") }?;
        let layout = Layout::new(&config)?;
        let at = state_memory(mem, mem_bytes, model_bytes(layout.len)?)?;
        *out = unsafe { place_model(at, config, layout, 0, |p| layout.init(config.seed, p)) }?;
        Ok(())
    })
}

/// Reads the configuration stored in model bytes (all checks of loading
/// except the parameters' finiteness) into *out, e.g. to size the memory
/// of msde_model_load with msde_model_state_len.
///
/// Errors: truncated, altered or foreign bytes (MSDE_ERR_CORRUPT_MODEL),
/// another format version (MSDE_ERR_VERSION_MISMATCH).
///
/// # Safety
/// `bytes` valid for bytes_len bytes; `out` NULL (refused) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_bytes_config(
    bytes: *const u8,
    bytes_len: usize,
    out: *mut msde_model_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let bytes = unsafe { input(bytes, bytes_len, "bytes") }?;
        let out = unsafe { value_out(out, "out") }?;
        *out = from_core(&codec::load_config::<f32>(bytes)?);
        Ok(())
    })
}

fn load_into(
    at: *mut u8,
    bytes: &[u8],
    config: Config,
    heap_bytes: usize,
) -> Result<*mut msde_model> {
    let layout = Layout::new(&config)?;
    // SAFETY: the caller sized and aligned `at` for this layout.
    unsafe {
        place_model(at, config, layout, heap_bytes, |p| {
            codec::load::<f32>(bytes, p).map(|_| ())
        })
    }
}

/// Loads model bytes (from msde_model_save) into caller memory `mem`
/// (msde_model_state_len of msde_model_bytes_config's config, aligned to
/// MSDE_STATE_ALIGN); writes the model's address (== mem) to *out.
///
/// Errors: as msde_model_bytes_config, non-finite stored parameters or a
/// bad input block (MSDE_ERR_CORRUPT_MODEL), misaligned or short memory.
/// Every check runs before `mem` is written: on any error its contents
/// (a model loaded there earlier, say) are unchanged.
///
/// # Safety
/// `bytes` valid for bytes_len bytes; `mem` as for msde_model_init.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_load(
    mem: *mut c_void,
    mem_bytes: usize,
    bytes: *const u8,
    bytes_len: usize,
    out: *mut *mut msde_model,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let bytes = unsafe { input(bytes, bytes_len, "bytes") }?;
        let out = unsafe { value_out(out, "out") }?;
        // Every check before the first write: a model already in `mem`
        // survives bytes that are refused.
        let config = codec::verify::<f32>(bytes)?;
        let at = state_memory(mem, mem_bytes, model_bytes(Layout::new(&config)?.len)?)?;
        *out = load_into(at, bytes, config, 0)?;
        Ok(())
    })
}

/// Bytes msde_model_save writes for this model, written to *out_len.
///
/// # Safety
/// `model` a model of this library (or NULL, refused); `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_save_len(
    model: *const msde_model,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    unsafe {
        model_size_query::<u8>(model, out_len, err, |m, _| {
            codec::model_bytes_len::<f32>(&m.config)
        })
    }
}

/// Writes the model's bytes (magic, format version, config, parameters,
/// checksum; portable across platforms) to `out` (out_len >=
/// msde_model_save_len) and their count to *written.
///
/// # Safety
/// `model` a model of this library; `out` valid for out_len bytes;
/// `written` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_save(
    model: *const msde_model,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let written = unsafe { value_out(written, "written") }?;
        let out = unsafe { output(out, out_len, "out") }?;
        *written = codec::save(&m.config, params, out)?;
        Ok(())
    })
}

/// Shape of a model.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_model_info {
    /// State dimension d.
    pub d: usize,
    /// Columns q of the diffusion factor L (d x q); 0 without diffusion.
    pub q: usize,
    /// Number of parameters (floats).
    pub params_len: usize,
    /// 1 when the model has a diffusion head.
    pub learn_diffusion: u32,
}

/// Writes the model's shape to *info and, when `config` is not NULL, its
/// full configuration to *config.
///
/// # Safety
/// `model` a model of this library; `info` writable; `config` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_info_get(
    model: *const msde_model,
    info: *mut msde_model_info,
    config: *mut msde_model_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, _) = unsafe { model_ref(model, "model") }?;
        let info = unsafe { value_out(info, "info") }?;
        let config = unsafe { crate::buffers::optional_out(config, "config") }?;
        *info = msde_model_info {
            d: m.layout.d,
            q: m.layout.q,
            params_len: m.layout.len,
            learn_diffusion: m.config.learn_diffusion as u32,
        };
        if let Some(c) = config {
            *c = from_core(&m.config);
        }
        Ok(())
    })
}

/// Copies the model's parameters (params_len floats, the core's flat
/// layout) to `out` (out_len == params_len).
///
/// # Safety
/// `model` a model of this library; `out` valid for out_len floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_get_params(
    model: *const msde_model,
    out: *mut f32,
    out_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (_, params) = unsafe { model_ref(model, "model") }?;
        let out = unsafe { output(out, out_len, "out") }?;
        check_len(out, params.len(), "out")?;
        out.copy_from_slice(params);
        Ok(())
    })
}

/// Replaces the model's parameters with `params` (params_len floats, all
/// finite, the input block first: mean (d), scale (d, > 0), t_min, t_max
/// (t_min <= t_max), see msde_model_get_inputs). Not while another thread
/// uses the model.
///
/// # Safety
/// `model` a model of this library; `params` valid for params_len floats
/// and not inside the model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_set_params(
    model: *mut msde_model,
    params: *const f32,
    params_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let new = unsafe { input(params, params_len, "params") }?;
        let (m, params) = unsafe { model_params_mut(model, "model") }?;
        check_len(new, params.len(), "params")?;
        check_finite(new, "params")?;
        m.layout.check_inputs(new)?;
        params.copy_from_slice(new);
        Ok(())
    })
}

/// Workspace (floats) of msde_model_drift and msde_model_drift_factor for
/// `rows` states, written to *out_len.
///
/// # Safety
/// `model` a model of this library; `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_eval_workspace_len(
    model: *const msde_model,
    rows: usize,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    unsafe { model_size_query::<f32>(model, out_len, err, |m, _| eval_workspace(&m.layout, rows)) }
}

/// Staged outputs (f, L) then the model's own inference workspace.
pub(crate) fn eval_workspace(layout: &Layout, rows: usize) -> Result<usize> {
    let per_row = layout.d * (1 + layout.q) + layout.infer_workspace_len(1);
    checked_mul(rows, per_row, "rows")
}

/// Drift f and (when `l` is given) factor L of `rows` states, checked and
/// staged in `ws` (eval_workspace(rows) floats); outputs written on Ok only.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate(
    m: &msde_model,
    params: &[f32],
    z: &[f32],
    t: &[f32],
    rows: usize,
    f: &mut [f32],
    l: Option<&mut [f32]>,
    ws: &mut [f32],
) -> Result<()> {
    let (d, q) = (m.layout.d, m.layout.q);
    if rows == 0 {
        return Err(Error::bad_dim("rows", "must be at least 1"));
    }
    check_len(z, checked_mul(rows, d, "rows")?, "z")?;
    check_len(t, rows, "t")?;
    check_len(f, rows * d, "f")?;
    if let Some(l) = &l {
        if m.layout.head.is_none() {
            return Err(Error::bad_config(
                "model",
                "has no diffusion head (learn_diffusion = 0)",
            ));
        }
        check_len(l, rows * d * q, "l")?;
    }
    check_room(ws, eval_workspace(&m.layout, rows)?, "workspace")?;
    check_finite(z, "z")?;
    check_finite(t, "t")?;
    let (f_stage, rest) = ws.split_at_mut(rows * d);
    let (l_stage, rest) = rest.split_at_mut(if l.is_some() { rows * d * q } else { 0 });
    m.layout
        .forward_infer(params, z, t, f_stage, l_stage, rest)?;
    check_finite(f_stage, "f").map_err(numerical)?;
    check_finite(l_stage, "l").map_err(numerical)?;
    f.copy_from_slice(f_stage);
    if let Some(l) = l {
        l.copy_from_slice(l_stage);
    }
    Ok(())
}

/// A non-finite result of finite inputs: a numerical failure.
pub(crate) fn numerical(e: Error) -> Error {
    Error::new(
        ErrorKind::NumericalFailure,
        e.arg,
        "the result is not finite",
    )
    .with(e.detail)
}

/// Drift f(z, t) of `rows` states, in the data's units (the model's
/// standardisation is applied inside, see msde_model_get_inputs; times
/// outside its time span give the model at the span's nearest end).
///
/// - `z`: rows x d row-major states (z_len = rows*d); `t`: rows times.
/// - `f`: rows x d drift, state units per time unit (f_len = rows*d).
/// - `workspace`: msde_model_eval_workspace_len(rows) floats.
///
/// Errors: NULL pointers, lengths that disagree, rows = 0
/// (MSDE_ERR_BAD_DIMENSION), NaN/Inf in z or t, a short workspace, a
/// non-finite result (MSDE_ERR_NUMERICAL). `f` is written only on MSDE_OK.
///
/// # Safety
/// `model` a model of this library; each buffer NULL (refused unless its
/// length is 0) or valid for its length; outputs and workspace disjoint.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_model_drift(
    model: *const msde_model,
    z: *const f32,
    z_len: usize,
    t: *const f32,
    t_len: usize,
    rows: usize,
    f: *mut f32,
    f_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let z = unsafe { input(z, z_len, "z") }?;
        let t = unsafe { input(t, t_len, "t") }?;
        let f = unsafe { output(f, f_len, "f") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        evaluate(m, params, z, t, rows, f, None, ws)
    })
}

/// Drift f and diffusion factor L of `rows` states (D = L L^T is the Ito
/// covariance rate per unit time).
///
/// - `z`, `t`, `f`, `workspace`: as msde_model_drift.
/// - `l`: rows x d x q row-major (row r's d x q factor at `l[r*d*q]`); q from
///   msde_model_info_get (d for full and diagonal heads, the rank for
///   low-rank heads). l_len = rows*d*q.
///
/// Errors: as msde_model_drift, and MSDE_ERR_BAD_CONFIG when the model has
/// no diffusion head. `f` and `l` are written only on MSDE_OK.
///
/// # Safety
/// As msde_model_drift.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_model_drift_factor(
    model: *const msde_model,
    z: *const f32,
    z_len: usize,
    t: *const f32,
    t_len: usize,
    rows: usize,
    f: *mut f32,
    f_len: usize,
    l: *mut f32,
    l_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let z = unsafe { input(z, z_len, "z") }?;
        let t = unsafe { input(t, t_len, "t") }?;
        let f = unsafe { output(f, f_len, "f") }?;
        let l = unsafe { output(l, l_len, "l") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        evaluate(m, params, z, t, rows, f, Some(l), ws)
    })
}

#[cfg(feature = "std")]
mod heap {
    use super::*;

    /// Heap block of `bytes` bytes aligned to MSDE_STATE_ALIGN.
    pub(crate) fn allocate(bytes: usize) -> Result<*mut u8> {
        let layout = std::alloc::Layout::from_size_align(bytes, MSDE_STATE_ALIGN)
            .map_err(|_| Error::too_large("config", "object too large"))?;
        // SAFETY: the size is positive (every object has a header).
        let p = unsafe { std::alloc::alloc(layout) };
        if p.is_null() {
            return Err(
                Error::new(ErrorKind::OutOfMemory, "memory", "the allocation failed").with(
                    Detail::Len {
                        expected: bytes,
                        got: 0,
                    },
                ),
            );
        }
        Ok(p)
    }

    /// Frees a block from [`allocate`].
    ///
    /// # Safety
    /// `p` came from `allocate(bytes)` and is not used afterwards.
    pub(crate) unsafe fn release(p: *mut u8, bytes: usize) {
        // SAFETY: same size and alignment as the allocation.
        unsafe {
            std::alloc::dealloc(
                p,
                std::alloc::Layout::from_size_align_unchecked(bytes, MSDE_STATE_ALIGN),
            )
        }
    }

    /// Runs `place` on a fresh block, freeing it again when `place` fails.
    pub(crate) fn on_heap<T>(
        bytes: usize,
        place: impl FnOnce(*mut u8) -> Result<*mut T>,
    ) -> Result<*mut T> {
        let p = allocate(bytes)?;
        place(p).inspect_err(|_| unsafe { release(p, bytes) })
    }

    /// std only: msde_model_init on the heap. Free with msde_model_free.
    ///
    /// # Safety
    /// `config` valid (or NULL, refused); `out` writable.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn msde_model_new(
        config: *const msde_model_config,
        out: *mut *mut msde_model,
        err: *mut msde_error,
    ) -> msde_status {
        guard(err, || {
            let config = to_core(unsafe { value_in(config, "config") }?)?;
            let out = unsafe { value_out(out, "out") }?;
            let layout = Layout::new(&config)?;
            let bytes = model_bytes(layout.len)?;
            *out = on_heap(bytes, |at| unsafe {
                place_model(at, config, layout, bytes, |p| layout.init(config.seed, p))
            })?;
            Ok(())
        })
    }

    /// std only: msde_model_load on the heap. Free with msde_model_free.
    ///
    /// # Safety
    /// `bytes` valid for bytes_len bytes; `out` writable.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn msde_model_load_new(
        bytes: *const u8,
        bytes_len: usize,
        out: *mut *mut msde_model,
        err: *mut msde_error,
    ) -> msde_status {
        guard(err, || {
            let bytes = unsafe { input(bytes, bytes_len, "bytes") }?;
            let out = unsafe { value_out(out, "out") }?;
            let config = codec::verify::<f32>(bytes)?;
            let size = model_bytes(Layout::new(&config)?.len)?;
            *out = on_heap(size, |at| load_into(at, bytes, config, size))?;
            Ok(())
        })
    }

    /// std only: frees a model from msde_model_new or msde_model_load_new.
    /// NULL is accepted (nothing happens); so is a model in caller memory
    /// (not freed: the caller owns that memory).
    ///
    /// # Safety
    /// `model` NULL or a live model of this library, not used afterwards.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn msde_model_free(model: *mut msde_model) {
        let _ = guard(core::ptr::null_mut(), || {
            if model.is_null() {
                return Ok(());
            }
            let (m, _) = unsafe { model_ref(model, "model") }?;
            let bytes = m.heap_bytes;
            if bytes > 0 {
                // SAFETY: a heap model of `bytes` bytes; the tag is cleared so
                // a stale pointer is refused while the block is not reused.
                unsafe {
                    (*model).tag = 0;
                    release(model.cast(), bytes);
                }
            }
            Ok(())
        });
    }
}

#[cfg(feature = "std")]
pub use heap::{msde_model_free, msde_model_load_new, msde_model_new};
#[cfg(feature = "std")]
pub(crate) use heap::{on_heap, release};
