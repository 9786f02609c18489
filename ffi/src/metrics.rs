//! Diagnostics over the C ABI: the symmetric eigen-decomposition of a
//! diffusion matrix D (directions along which embryos diverge).

use crate::buffers::{input, output, value_out};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::error::{Error, check_len, check_room, checked_mul};
use morphosde_core::linalg::sym_eigen;

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
