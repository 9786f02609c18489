//! The explicit propagated diffusion estimator over the C ABI: local
//! second moments of flow residuals over a finite frame gap, corrected for
//! how the model's drift carries the noise over that gap (core
//! `propagate` and `Propagation::explicit_diffusion`).

use crate::buffers::{input, output};
use crate::model::{model_ref, model_size_query, msde_model};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::Result;
use morphosde_core::error::{Arena, Error, check_finite, check_len, check_room};
use morphosde_core::model::Learned;
use morphosde_core::propagated::{Propagation, propagate, propagate_workspace_len};
use morphosde_core::size::Size;

/// Largest `substeps` msde_model_propagated_diffusion accepts.
pub const MSDE_PROPAGATE_MAX_SUBSTEPS: usize = 1024;

/// Workspace floats for `rows` rows: the propagation's node states and
/// propagators, the flow, the moments built from pairs, the staged
/// estimates, then propagate's own workspace (reused by the estimator).
fn workspace_floats(learned: &Learned<'_, f32>, rows: usize, substeps: usize) -> Result<usize> {
    if substeps == 0 || substeps > MSDE_PROPAGATE_MAX_SUBSTEPS {
        return Err(Error::bad_config("substeps", "must be between 1 and 1024"));
    }
    let d = learned.layout.d;
    let dd = d * d;
    let nodes = substeps + 1;
    let states = Size(rows) * nodes * d;
    let props = states * d;
    let matrices = Size(rows) * dd;
    // The estimator runs in propagate's workspace after it (an empty map
    // reports the estimator's size for dimension d).
    let estimator =
        Propagation::<f32>::new(d, substeps, &[], &[])?.explicit_diffusion_workspace_len();
    let propagate_ws = propagate_workspace_len(learned, rows);
    Ok((states + props + Size(rows) * d + matrices * 2 + estimator.max(propagate_ws)).get())
}

/// Workspace (floats) msde_model_propagated_diffusion needs for `rows`
/// rows and `substeps` RK4 substeps, written to *out_len.
///
/// # Safety
/// `model` a model of this library; `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_propagated_diffusion_workspace_len(
    model: *const msde_model,
    rows: usize,
    substeps: usize,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    unsafe {
        model_size_query::<f32>(model, out_len, err, |m, params| {
            workspace_floats(&Learned::new(&m.config, params)?, rows, substeps)
        })
    }
}

/// Explicit propagated diffusion estimates: for each row r, the symmetric
/// positive semi-definite D_r (state units squared per time unit) that,
/// held constant over the gap and carried along the model's drift flow,
/// reproduces the observed second moment of the flow residual:
/// M_h(D_r) = h_r Dhat_r with M_h(D) = int_0^h Phi(h,s) D Phi(h,s)^T ds,
/// Phi the flow's Jacobian (variational equation, `substeps` RK4 steps,
/// Simpson quadrature), then projected to the nearest PSD matrix. At small
/// gaps M_h(D) ~ h D and this is the naive moment estimate; at real gaps it
/// removes the drift's rotation and contraction of the noise. The estimate
/// stands for D at the gap's midpoint state up to O(h^2).
///
/// - `z`: rows x d start states z_t; `t`: their times; `h`: gaps h_r > 0
///   (time units).
/// - `moments` (give it or `y`, the other NULL/0): rows x d x d, Dhat_r =
///   the mean of (z_{t+h} - phi_h(z_t)) (z_{t+h} - phi_h(z_t))^T / h_r over
///   observed pairs near z_r (flow residuals; phi_h from `flow` of an
///   earlier call, or the caller's).
/// - `y` (or `moments`): rows x d end points z_{t+h} of single pairs:
///   Dhat_r is the rank-one (r r^T) / h_r of the pair's own flow residual
///   r.
/// - `d_out`: rows x d x d estimates (row-major, symmetric).
/// - `flow`: rows x d flow end points phi_h(z_r), or NULL/0 to skip.
/// - `workspace`: msde_model_propagated_diffusion_workspace_len floats.
///
/// Errors: NULL pointers, rows = 0, lengths that disagree, both or neither
/// of moments and y (MSDE_ERR_BAD_DIMENSION), NaN/Inf inputs, h <= 0,
/// substeps outside 1..=1024 (MSDE_ERR_BAD_CONFIG), a flow leaving the
/// finite range or a singular moment system (MSDE_ERR_NUMERICAL), a short
/// workspace. Outputs are written only on MSDE_OK.
///
/// # Safety
/// `model` a model of this library; buffers valid for their lengths;
/// outputs and workspace disjoint from each other and the inputs.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_model_propagated_diffusion(
    model: *const msde_model,
    z: *const f32,
    z_len: usize,
    t: *const f32,
    t_len: usize,
    h: *const f32,
    h_len: usize,
    substeps: usize,
    moments: *const f32,
    moments_len: usize,
    y: *const f32,
    y_len: usize,
    d_out: *mut f32,
    d_out_len: usize,
    flow: *mut f32,
    flow_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let z = unsafe { input(z, z_len, "z") }?;
        let t = unsafe { input(t, t_len, "t") }?;
        let h = unsafe { input(h, h_len, "h") }?;
        let moments = unsafe { input(moments, moments_len, "moments") }?;
        let y = unsafe { input(y, y_len, "y") }?;
        let d_out = unsafe { output(d_out, d_out_len, "d_out") }?;
        let flow = unsafe { output(flow, flow_len, "flow") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        let learned = Learned::new(&m.config, params)?;
        let need = workspace_floats(&learned, t.len(), substeps)?;
        let (rows, d) = (t.len(), m.layout.d);
        let dd = d * d;
        if rows == 0 {
            return Err(Error::bad_dim("t", "no rows"));
        }
        check_len(z, rows * d, "z")?;
        check_len(h, rows, "h")?;
        match (moments.is_empty(), y.is_empty()) {
            (false, true) => check_len(moments, rows * dd, "moments")?,
            (true, false) => check_len(y, rows * d, "y")?,
            _ => {
                return Err(Error::bad_dim(
                    "moments",
                    "give exactly one of moments and y",
                ));
            }
        }
        check_finite(moments, "moments")?;
        check_finite(y, "y")?;
        check_len(d_out, rows * dd, "d_out")?;
        if !flow.is_empty() {
            check_len(flow, rows * d, "flow")?;
        }
        check_room(ws, need, "workspace")?;
        let nodes = substeps + 1;
        let mut arena = Arena::new(ws);
        let states = arena.take(rows * nodes * d)?;
        let props = arena.take(rows * nodes * dd)?;
        let flow_stage = arena.take(rows * d)?;
        let target = arena.take(rows * dd)?;
        let estimate = arena.take(rows * dd)?;
        let rest = arena.rest();
        propagate(&learned, z, t, h, substeps, states, props, rest)?;
        for r in 0..rows {
            flow_stage[r * d..(r + 1) * d]
                .copy_from_slice(&states[(r * nodes + substeps) * d..][..d]);
        }
        let target: &[f32] = if moments.is_empty() {
            for r in 0..rows {
                for a in 0..d {
                    let ra = y[r * d + a] - flow_stage[r * d + a];
                    for c in 0..d {
                        let rc = y[r * d + c] - flow_stage[r * d + c];
                        target[r * dd + a * d + c] = ra * rc / h[r];
                    }
                }
            }
            check_finite(target, "y").map_err(crate::model::numerical)?;
            target
        } else {
            moments
        };
        let map = Propagation::new(d, substeps, h, props)?;
        map.explicit_diffusion(target, estimate, rest)?;
        d_out.copy_from_slice(estimate);
        if !flow.is_empty() {
            flow.copy_from_slice(flow_stage);
        }
        Ok(())
    })
}
