//! A model's inputs over the C ABI: the per-coordinate standardisation
//! `(z − mean)/scale` its network works in and the training time span its
//! time features are clamped to (the Rust core's `model::inputs`).

use crate::buffers::{input, output};
use crate::model::{model_params_mut, model_ref, msde_model};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::error::check_len;
use morphosde_core::model::{Inputs, UNBOUNDED_TIME};

// The span [-FLT_MAX, FLT_MAX] the C docs promise for "no span".
const _: () = assert!(f32::MAX as f64 == UNBOUNDED_TIME);

/// Reads a model's inputs: the per-coordinate mean and scale (d each) of
/// the standardisation z -> (z - mean) / scale its network works in, and
/// its time span [t_min, t_max] (2 floats; -FLT_MAX, FLT_MAX when it has
/// none: no time is clamped). The model f(z, t) = scale * g((z - mean) / scale, t'),
/// L = diag(scale) L_g, where g, L_g are the network and t' is t clamped to
/// the span. msde_model_init gives mean 0, scale 1 and no span;
/// msde_trainer_fit sets them from its data.
///
/// Errors: NULL pointers, mean_len or scale_len other than d,
/// time_span_len other than 2 (MSDE_ERR_BAD_DIMENSION).
///
/// # Safety
/// `model` a model of this library; each buffer valid for its length.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_model_get_inputs(
    model: *const msde_model,
    mean: *mut f32,
    mean_len: usize,
    scale: *mut f32,
    scale_len: usize,
    time_span: *mut f32,
    time_span_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let mean = unsafe { output(mean, mean_len, "mean") }?;
        let scale = unsafe { output(scale, scale_len, "scale") }?;
        let span = unsafe { output(time_span, time_span_len, "time_span") }?;
        let d = m.layout.d;
        check_len(mean, d, "mean")?;
        check_len(scale, d, "scale")?;
        check_len(span, 2, "time_span")?;
        let inputs = m.layout.inputs(params);
        mean.copy_from_slice(inputs.mean());
        scale.copy_from_slice(inputs.scale());
        span.copy_from_slice(&inputs.time_span);
        Ok(())
    })
}

/// Sets a model's inputs (see msde_model_get_inputs): mean and scale (d
/// each, finite, scale > 0) and the time span (2 floats, t_min <= t_max;
/// -FLT_MAX, FLT_MAX for none). Not while another thread uses the
/// model. A trainer made from the model afterwards trains its network in
/// these standardised coordinates (msde_trainer_step standardises each
/// batch with them).
///
/// Errors: NULL pointers, lengths other than d, d and 2
/// (MSDE_ERR_BAD_DIMENSION), non-finite values (MSDE_ERR_NON_FINITE), a
/// scale <= 0 or t_min > t_max (MSDE_ERR_BAD_CONFIG). Nothing is changed
/// on error.
///
/// # Safety
/// `model` a model of this library; each buffer valid for its length and
/// not inside the model.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_model_set_inputs(
    model: *mut msde_model,
    mean: *const f32,
    mean_len: usize,
    scale: *const f32,
    scale_len: usize,
    time_span: *const f32,
    time_span_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let mean = unsafe { input(mean, mean_len, "mean") }?;
        let scale = unsafe { input(scale, scale_len, "scale") }?;
        let span = unsafe { input(time_span, time_span_len, "time_span") }?;
        let (m, params) = unsafe { model_params_mut(model, "model") }?;
        let d = m.layout.d;
        check_len(mean, d, "mean")?;
        check_len(scale, d, "scale")?;
        check_len(span, 2, "time_span")?;
        let mut inputs = Inputs::identity(d);
        inputs.mean[..d].copy_from_slice(mean);
        inputs.scale[..d].copy_from_slice(scale);
        inputs.time_span = [span[0], span[1]];
        m.layout.set_inputs(params, &inputs)
    })
}
