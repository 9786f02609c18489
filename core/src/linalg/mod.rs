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

/// `Σ a_k b_k` over the shorter length, in eight interleaved partial sums
/// (so the compiler vectorises it; the summation order is fixed, results
/// do not depend on the machine).
#[inline]
pub fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [F::ZERO; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    for (k, (&x, &y)) in ar.iter().zip(br).enumerate() {
        acc[k] += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Copies row `rows[k]` of `z` (`·×d`, row-major) to row `k` of `out`,
/// for every `k` (`out` holds at least `rows.len()` rows).
pub fn gather_rows<F: Copy>(z: &[F], d: usize, rows: &[u32], out: &mut [F]) {
    for (dst, &row) in out.chunks_exact_mut(d).zip(rows) {
        dst.copy_from_slice(&z[row as usize * d..][..d]);
    }
}

/// `Σ (a_k − b_k)²` over the shorter length, the coordinates summed in
/// order: the library's one squared distance. Every pairwise cost (UOT's
/// kernel tiles, the self-edge floor, the clustering affinities, k-means,
/// the k-d tree, the pairwise targets' neighbours) sums in this order, so a
/// pair's distance has the same bits wherever it is computed. O(d); the
/// one-to-many loops vectorise over the other points instead.
#[inline]
pub fn squared_distance<F: Float>(a: &[F], b: &[F]) -> F {
    let mut s = F::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        let t = x - y;
        s += t * t;
    }
    s
}

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
    fn dot_and_distance_match_plain_sums() {
        let a: [f64; 19] = core::array::from_fn(|i| (i as f64 * 0.7).sin());
        let b: [f64; 19] = core::array::from_fn(|i| (i as f64 * 1.3).cos());
        for n in [0, 1, 7, 8, 9, 16, 19] {
            let want: f64 = (0..n).map(|i| a[i] * b[i]).sum();
            assert!((dot(&a[..n], &b[..n]) - want).abs() < 1e-14);
            let want: f64 = (0..n).map(|i| (a[i] - b[i]) * (a[i] - b[i])).sum();
            assert!((squared_distance(&a[..n], &b[..n]) - want).abs() < 1e-14);
        }
    }

    #[test]
    fn cholesky_refuses_indefinite_matrix() {
        let mut a = [1.0f32, 2.0, 2.0, 1.0];
        let e = cholesky_in_place(&mut a, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumericalFailure);
    }
}
