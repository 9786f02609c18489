//! Small dense linear algebra on row-major slices, in place, no allocation:
//! the symmetric eigen-decomposition (cyclic Jacobi), the Cholesky
//! factorisation, a pivoted square solve and the nearest PSD matrix. Sizes
//! are runtime values; these routines are meant for the small matrices of
//! the library (d ≤ 64 covariance matrices, Rayleigh–Ritz blocks, the
//! d(d+1)/2 systems of the propagated estimator), not for large problems.

mod eigen;
pub mod gemm;
mod solve;

pub use eigen::{SYM_EIGEN_MAX_SWEEPS, sym_eigen};
pub use solve::{nearest_psd_in_place, solve_in_place};

use crate::error::{Error, ErrorKind, Result, check_len};
use crate::float::Float;

/// Cholesky factorisation `A = G Gᵀ` of a symmetric positive-definite `d×d`
/// matrix, in place: on success the lower triangle of `a` holds `G` and the
/// strict upper triangle is zeroed. Only the lower triangle of `a` is read.
/// A non-positive pivot is [`ErrorKind::NumericalFailure`] and leaves `a`
/// partly overwritten.
pub fn cholesky_in_place<F: Float>(a: &mut [F], d: usize) -> Result<()> {
    check_len(a, d * d, "a")?;
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        if diag <= F::ZERO || !diag.is_finite() {
            return Err(Error::new(
                ErrorKind::NumericalFailure,
                "a",
                "matrix is not positive definite",
            )
            .with(crate::error::Detail::Index(j)));
        }
        let g_jj = diag.sqrt();
        a[j * d + j] = g_jj;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / g_jj;
        }
        for k in j + 1..d {
            a[j * d + k] = F::ZERO;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_reconstructs_spd_matrix() {
        // A = B Bᵀ + I for a fixed B.
        let d = 4;
        let b = [
            1.0, 2.0, 0.5, -1.0, 0.0, 1.5, -0.3, 2.0, 0.7, 0.1, 1.0, 0.0, -0.2, 0.4, 0.9, 1.1,
        ];
        let mut a = [0.0f64; 16];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let original = a;
        cholesky_in_place(&mut a, d).unwrap();
        for i in 0..d {
            for j in 0..d {
                let r: f64 = (0..d).map(|k| a[i * d + k] * a[j * d + k]).sum();
                assert!((r - original[i * d + j]).abs() < 1e-12);
            }
        }
        assert_eq!(a[1], 0.0);
    }

    #[test]
    fn cholesky_refuses_indefinite_matrix() {
        let mut a = [1.0f32, 2.0, 2.0, 1.0];
        let e = cholesky_in_place(&mut a, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumericalFailure);
    }
}
