//! The diffusion matrix `D = L Lᵀ` of a factor and its eigen-decomposition.

use crate::error::{Error, Result, check_finite, check_len, check_room};
use crate::float::Float;
use crate::linalg::sym_eigen;

/// Largest state dimension of [`diffusion_spectrum`].
pub const MAX_SPECTRUM_DIM: usize = 64;

/// `D = L Lᵀ` (`d×d`, row-major, exactly symmetric) of the factor `l`
/// (`d×q`, row-major; full, low-rank or diagonal heads alike).
pub fn diffusion_from_factor<F: Float>(l: &[F], d: usize, q: usize, dm: &mut [F]) -> Result<()> {
    if d == 0 || q == 0 {
        return Err(Error::bad_dim("l", "d and q must be positive"));
    }
    check_len(l, d.saturating_mul(q), "l")?;
    check_len(dm, d.saturating_mul(d), "dm")?;
    check_finite(l, "l")?;
    for i in 0..d {
        for j in 0..=i {
            let s = l[i * q..(i + 1) * q]
                .iter()
                .zip(&l[j * q..(j + 1) * q])
                .map(|(&a, &b)| a * b)
                .sum();
            dm[i * d + j] = s;
            dm[j * d + i] = s;
        }
    }
    Ok(())
}

/// Eigen-decomposition of `D = L Lᵀ` for a factor `l` (`d×q`, `d ≤ 64`):
/// eigenvalues `w` (`d`, descending, ≥ 0 up to rounding) and unit
/// eigenvectors as the columns of `v` (`d×d`, column `k` for `w[k]`, sign
/// fixed so its largest-magnitude entry is positive), by
/// [`sym_eigen`]; `scratch` holds at least `d×d` elements.
pub fn diffusion_spectrum<F: Float>(
    l: &[F],
    d: usize,
    q: usize,
    w: &mut [F],
    v: &mut [F],
    scratch: &mut [F],
) -> Result<()> {
    if d > MAX_SPECTRUM_DIM {
        return Err(Error::bad_dim("l", "state dimension above 64"));
    }
    check_room(scratch, d * d, "scratch")?;
    let dm = &mut scratch[..d * d];
    diffusion_from_factor(l, d, q, dm)?;
    sym_eigen(dm, d, w, v)
}
