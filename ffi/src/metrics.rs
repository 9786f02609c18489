//! Diagnostics over the C ABI: the symmetric eigen-decomposition of a
//! diffusion matrix D (directions along which embryos diverge), and the
//! distances between clouds of samples (energy, sliced Wasserstein).

use crate::buffers::{input, output, size_answer, value_out};
use crate::model::{eval_workspace, evaluate, model_ref, model_size_query, msde_model};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::Result;
use morphosde_core::error::{Arena, Error, check_len, check_room, checked_mul};
use morphosde_core::linalg::sym_eigen;
use morphosde_core::metrics::{
    MAX_SPECTRUM_DIM, diffusion_from_factor, diffusion_spectrum, energy_distance,
    sliced_wasserstein, sliced_wasserstein_workspace_len,
};
use morphosde_core::model::Layout;
use morphosde_core::size::Size;

/// Largest d accepted by msde_eigen_sym.
pub const MSDE_EIGEN_MAX_DIM: usize = 64;

fn eigen_workspace(d: usize) -> morphosde_core::Result<usize> {
    if d == 0 || d > MSDE_EIGEN_MAX_DIM {
        return Err(Error::bad_dim("d", "must be between 1 and 64"));
    }
    Ok(2 * checked_mul(d, d, "d")? + d)
}

/// Workspace length (floats) msde_eigen_sym needs for a d×d matrix
/// (1 <= d <= MSDE_EIGEN_MAX_DIM), written to *out_len.
///
/// # Safety
/// `out_len` must be NULL (refused) or point to a writable size_t; `err`
/// NULL or a writable msde_error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_eigen_sym_workspace_len(
    d: usize,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out_len, "out_len") }?;
        *out = size_answer::<f32>(eigen_workspace(d)?, "out_len")?;
        Ok(())
    })
}

/// Eigen-decomposition D = V diag(w) V^T of a symmetric d×d matrix (e.g. a
/// diffusion matrix D = L L^T).
///
/// - `a`: d×d row-major, a_len = d*d; read only (both triangles averaged).
/// - `w`: d eigenvalues, descending.
/// - `v`: d×d row-major; column k is the unit eigenvector of `w[k]`, its
///   largest-magnitude entry positive.
/// - `workspace`: at least msde_eigen_sym_workspace_len(d) floats.
///
/// Errors: NULL pointers, d outside 1..=64 or lengths that disagree
/// (MSDE_ERR_BAD_DIMENSION), NaN/Inf in `a`, a short workspace. `w` and `v`
/// are written only on MSDE_OK.
///
/// # Safety
/// Each pointer must be NULL (refused unless its length is 0) or valid for
/// its stated length; `w`, `v` and `workspace` must not overlap each other
/// or `a`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_eigen_sym(
    a: *const f32,
    a_len: usize,
    d: usize,
    w: *mut f32,
    w_len: usize,
    v: *mut f32,
    v_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let need = eigen_workspace(d)?;
        let a = unsafe { input(a, a_len, "a") }?;
        let w = unsafe { output(w, w_len, "w") }?;
        let v = unsafe { output(v, v_len, "v") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        check_len(a, d * d, "a")?;
        check_len(w, d, "w")?;
        check_len(v, d * d, "v")?;
        check_room(ws, need, "workspace")?;
        let (a_copy, rest) = ws.split_at_mut(d * d);
        let (w_tmp, rest) = rest.split_at_mut(d);
        let v_tmp = &mut rest[..d * d];
        a_copy.copy_from_slice(a);
        sym_eigen(a_copy, d, w_tmp, v_tmp)?;
        w.copy_from_slice(w_tmp);
        v.copy_from_slice(v_tmp);
        Ok(())
    })
}

/// Staged outputs of msde_model_diffusion_spectrum (f, L, w, V, D and the
/// d x d scratch) followed by the model's evaluation workspace.
fn spectrum_workspace(layout: &Layout, rows: usize) -> Result<usize> {
    let (d, q) = (layout.d, layout.q);
    if layout.head.is_none() {
        return Err(Error::bad_config(
            "model",
            "has no diffusion head (learn_diffusion = 0)",
        ));
    }
    let per_row = d + d * q + d + 2 * d * d;
    Ok((Size(rows) * per_row + d * d + eval_workspace(layout, rows)?).get())
}

/// Workspace (floats) msde_model_diffusion_spectrum needs for `rows`
/// states, written to *out_len.
///
/// Errors: NULL pointers, a model without diffusion head
/// (MSDE_ERR_BAD_CONFIG), a size overflow (MSDE_ERR_TOO_LARGE).
///
/// # Safety
/// `model` a model of this library; `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_model_diffusion_spectrum_workspace_len(
    model: *const msde_model,
    rows: usize,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    unsafe {
        model_size_query::<f32>(model, out_len, err, |m, _| {
            spectrum_workspace(&m.layout, rows)
        })
    }
}

/// The model's diffusion D(z, t) = L L^T (the Ito covariance rate per unit
/// time, state units squared per time unit) at `rows` states and its
/// eigen-decomposition D = V diag(w) V^T: the directions along which
/// trajectories spread and how fast.
///
/// - `z`: rows x d states (z_len = rows*d); `t`: rows times.
/// - `w`: rows x d eigenvalues, each row descending (>= 0 up to rounding).
/// - `v`: rows x d x d, or NULL/0 to skip: row r's eigenvectors as the
///   columns of the d x d matrix at `v[r*d*d]` (column k for `w[r*d + k]`,
///   unit length, largest-magnitude entry positive).
/// - `dm`: rows x d x d, or NULL/0 to skip: D itself, row-major, exactly
///   symmetric.
/// - `workspace`: msde_model_diffusion_spectrum_workspace_len floats.
///
/// Errors: as msde_model_drift_factor (a model without diffusion head is
/// MSDE_ERR_BAD_CONFIG), d above MSDE_EIGEN_MAX_DIM. Outputs are written
/// only on MSDE_OK.
///
/// # Safety
/// `model` a model of this library; each buffer NULL (refused unless its
/// length is 0) or valid for its length; outputs and workspace disjoint.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_model_diffusion_spectrum(
    model: *const msde_model,
    z: *const f32,
    z_len: usize,
    t: *const f32,
    t_len: usize,
    rows: usize,
    w: *mut f32,
    w_len: usize,
    v: *mut f32,
    v_len: usize,
    dm: *mut f32,
    dm_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let z = unsafe { input(z, z_len, "z") }?;
        let t = unsafe { input(t, t_len, "t") }?;
        let w = unsafe { output(w, w_len, "w") }?;
        let v = unsafe { output(v, v_len, "v") }?;
        let dm = unsafe { output(dm, dm_len, "dm") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        let (d, q) = (m.layout.d, m.layout.q);
        let need = spectrum_workspace(&m.layout, rows)?;
        if d > MAX_SPECTRUM_DIM {
            return Err(Error::bad_dim("model", "state dimension above 64"));
        }
        if rows == 0 {
            return Err(Error::bad_dim("rows", "must be at least 1"));
        }
        check_len(w, rows * d, "w")?;
        for (out, arg) in [(&*v, "v"), (&*dm, "dm")] {
            if !out.is_empty() {
                check_len(out, rows * d * d, arg)?;
            }
        }
        check_room(ws, need, "workspace")?;
        let mut arena = Arena::new(ws);
        let f = arena.take(rows * d)?;
        let l = arena.take(rows * d * q)?;
        let w_stage = arena.take(rows * d)?;
        let v_stage = arena.take(rows * d * d)?;
        let dm_stage = arena.take(rows * d * d)?;
        let scratch = arena.take(d * d)?;
        evaluate(m, params, z, t, rows, f, Some(l), arena.rest())?;
        for r in 0..rows {
            let lr = &l[r * d * q..][..d * q];
            let dd = r * d * d..(r + 1) * d * d;
            diffusion_spectrum(
                lr,
                d,
                q,
                &mut w_stage[r * d..][..d],
                &mut v_stage[dd.clone()],
                scratch,
            )?;
            diffusion_from_factor(lr, d, q, &mut dm_stage[dd])?;
        }
        w.copy_from_slice(w_stage);
        if !v.is_empty() {
            v.copy_from_slice(v_stage);
        }
        if !dm.is_empty() {
            dm.copy_from_slice(dm_stage);
        }
        Ok(())
    })
}

/// Energy distance E = 2 mean|x_i - y_j| - mean|x_i - x_i'| - mean|y_j -
/// y_j'| between clouds x (n x d, x_len = n*d) and y (m x d), every mean
/// over all ordered pairs (V-statistic, dcor's default; not its square
/// root), written to *out. State units. Cost O((n+m)^2 d); no workspace.
///
/// Errors: NULL pointers, d = 0, lengths not multiples of d or empty
/// clouds (MSDE_ERR_BAD_DIMENSION), NaN/Inf in x or y.
///
/// # Safety
/// `x`, `y` valid for their lengths; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_energy_distance(
    x: *const f32,
    x_len: usize,
    y: *const f32,
    y_len: usize,
    d: usize,
    out: *mut f32,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let x = unsafe { input(x, x_len, "x") }?;
        let y = unsafe { input(y, y_len, "y") }?;
        let out = unsafe { value_out(out, "out") }?;
        *out = energy_distance(x, y, d)?;
        Ok(())
    })
}

/// Workspace (floats) of msde_sliced_wasserstein for clouds of n and m
/// points in d dimensions and `projections` directions, to *out_len.
///
/// # Safety
/// `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_sliced_wasserstein_workspace_len(
    n: usize,
    m: usize,
    d: usize,
    projections: usize,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out_len, "out_len") }?;
        *out = size_answer::<f32>(
            sliced_wasserstein_workspace_len(n, m, d, projections),
            "out_len",
        )?;
        Ok(())
    })
}

/// Sliced Wasserstein distance of order 2, (mean over `projections` seeded
/// random unit directions theta of W2^2(theta#x, theta#y))^(1/2), between
/// clouds x (n x d) and y (m x d) as uniform empirical measures (POT's
/// sliced_wasserstein_distance convention), written to *out. State units.
/// Direction l is drawn from stream (seed, projection, l).
///
/// Errors: as msde_energy_distance, projections = 0 (MSDE_ERR_BAD_CONFIG),
/// a short workspace.
///
/// # Safety
/// Buffers valid for their lengths; `workspace` disjoint from x and y.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_sliced_wasserstein(
    x: *const f32,
    x_len: usize,
    y: *const f32,
    y_len: usize,
    d: usize,
    projections: usize,
    seed: u64,
    workspace: *mut f32,
    workspace_len: usize,
    out: *mut f32,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let x = unsafe { input(x, x_len, "x") }?;
        let y = unsafe { input(y, y_len, "y") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        let out = unsafe { value_out(out, "out") }?;
        *out = sliced_wasserstein(x, y, d, projections, seed, ws)?;
        Ok(())
    })
}
