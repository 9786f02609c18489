//! The learned model over the C ABI: an opaque model object placed in
//! caller memory (or, with std, on the heap), initialisation from a seed,
//! its shape and parameters, and drift and diffusion-factor evaluation.

use crate::buffers::{input, output, size_answer, value_in, value_out};
use crate::config::{from_core, msde_model_config, to_core};
use crate::handle::{MSDE_STATE_ALIGN, state_memory};
use crate::status::{guard, msde_error, msde_status};
use core::ffi::c_void;
use morphosde_core::Result;
use morphosde_core::error::{Error, ErrorKind, check_finite, check_len, check_room, checked_mul};
use morphosde_core::model::{Config, Layout};
use morphosde_core::size::Size;

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
pub(crate) fn model_bytes(params: usize) -> Result<usize> {
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
            learn_diffusion: m.config.head.is_some() as u32,
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
    use crate::handle::{on_heap, release};

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
pub use heap::{msde_model_free, msde_model_new};
