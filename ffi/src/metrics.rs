//! Diagnostics over the C ABI: the symmetric eigen-decomposition of a
//! diffusion matrix D (directions along which embryos diverge), and the
//! distances between clouds of samples (energy, sliced Wasserstein).

use crate::buffers::{input, output, value_out};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::error::{Error, check_len, check_room, checked_mul};
use morphosde_core::linalg::sym_eigen;
use morphosde_core::metrics::{
    energy_distance, sliced_wasserstein, sliced_wasserstein_workspace_len,
};

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
        *out = eigen_workspace(d)?;
        Ok(())
    })
}

/// Eigen-decomposition D = V diag(w) V^T of a symmetric d×d matrix (e.g. a
/// diffusion matrix D = L L^T).
///
/// - `a`: d×d row-major, a_len = d*d; read only (both triangles averaged).
/// - `w`: d eigenvalues, descending.
/// - `v`: d×d row-major; column k is the unit eigenvector of w[k], its
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
        *out = sliced_wasserstein_workspace_len(n, m, d, projections);
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
