//! Model bytes over the C ABI: the configuration stored in them, loading
//! into caller memory (or, with std, onto the heap) and saving.

use crate::buffers::{input, output, value_out};
use crate::config::{from_core, msde_model_config};
use crate::handle::state_memory;
use crate::model::{model_bytes, model_ref, model_size_query, msde_model, place_model};
use crate::status::{guard, msde_error, msde_status};
use core::ffi::c_void;
use morphosde_core::Result;
use morphosde_core::codec;
use morphosde_core::model::{Config, Layout};

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

#[cfg(feature = "std")]
mod heap {
    use super::*;
    use crate::handle::on_heap;

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
}

#[cfg(feature = "std")]
pub use heap::msde_model_load_new;
