//! Dense square solves and the nearest positive semi-definite matrix.

use crate::error::{Detail, Error, ErrorKind, Result, check_finite, check_len};
use crate::float::Float;

use super::sym_eigen;

/// Solves `A x = b` for a general `n×n` matrix by Gaussian elimination with
/// partial pivoting, in place: `a` (row-major, destroyed) and `b` (length
/// `n`, overwritten by `x`). Cost `n³/3` multiply-adds; meant for the small
/// systems of the library (n up to a few hundred).
///
/// A pivot that is zero or below `n·ε` times the largest entry of `A` is
/// [`ErrorKind::NumericalFailure`] (the matrix is singular to working
/// precision); `a` and `b` are then partly overwritten.
pub fn solve_in_place<F: Float>(a: &mut [F], n: usize, b: &mut [F]) -> Result<()> {
    check_len(a, n.saturating_mul(n), "a")?;
    check_len(b, n, "b")?;
    check_finite(a, "a")?;
    check_finite(b, "b")?;
    let scale = a.iter().fold(F::ZERO, |m, &x| m.max(x.abs()));
    let tiny = scale * F::EPSILON * F::from_usize(n);
    for col in 0..n {
        let mut pivot = col;
        for row in col + 1..n {
            if a[row * n + col].abs() > a[pivot * n + col].abs() {
                pivot = row;
            }
        }
        let p = a[pivot * n + col];
        if p.abs() <= tiny || p == F::ZERO {
            return Err(
                Error::new(ErrorKind::NumericalFailure, "a", "matrix is singular")
                    .with(Detail::Index(col)),
            );
        }
        if pivot != col {
            for k in col..n {
                a.swap(pivot * n + k, col * n + k);
            }
            b.swap(pivot, col);
        }
        let inv = F::ONE / p;
        for row in col + 1..n {
            let factor = a[row * n + col] * inv;
            if factor == F::ZERO {
                continue;
            }
            for k in col + 1..n {
                let v = a[col * n + k];
                a[row * n + k] -= factor * v;
            }
            let v = b[col];
            b[row] -= factor * v;
        }
    }
    for col in (0..n).rev() {
        let mut s = b[col];
        for k in col + 1..n {
            s -= a[col * n + k] * b[k];
        }
        b[col] = s / a[col * n + col];
    }
    Ok(())
}

/// Replaces the symmetric `d×d` matrix `a` by the nearest positive
/// semi-definite matrix in the Frobenius norm: `V diag(max(λ, 0)) Vᵀ` from
/// the eigen-decomposition of its symmetric part. `w` (`d`) and `v` (`d×d`)
/// are scratch; on return `w` holds the clipped eigenvalues (descending).
pub fn nearest_psd_in_place<F: Float>(
    a: &mut [F],
    d: usize,
    w: &mut [F],
    v: &mut [F],
) -> Result<()> {
    sym_eigen(a, d, w, v)?;
    for x in w.iter_mut() {
        *x = x.max(F::ZERO);
    }
    for i in 0..d {
        for j in 0..=i {
            let mut s = F::ZERO;
            for k in 0..d {
                s += v[i * d + k] * w[k] * v[j * d + k];
            }
            a[i * d + j] = s;
            a[j * d + i] = s;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_needs_pivoting_and_matches_known_solution() {
        // Zero leading pivot: elimination without row exchanges fails.
        let a0 = [0.0, 2.0, 1.0, 1.0, 1.0, -1.0, 3.0, -1.0, 2.0];
        let x = [1.5f64, -2.0, 0.25];
        let mut b = [0.0; 3];
        for i in 0..3 {
            b[i] = (0..3).map(|k| a0[i * 3 + k] * x[k]).sum();
        }
        let mut a = a0;
        solve_in_place(&mut a, 3, &mut b).unwrap();
        for i in 0..3 {
            assert!((b[i] - x[i]).abs() < 1e-14, "{b:?}");
        }
    }

    #[test]
    fn solve_refuses_singular_and_malformed_input() {
        let mut a = [1.0f32, 2.0, 2.0, 4.0];
        let mut b = [1.0f32, 2.0];
        let e = solve_in_place(&mut a, 2, &mut b).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumericalFailure);
        let mut a = [1.0f32, 0.0, 0.0, f32::NAN];
        assert_eq!(solve_in_place(&mut a, 2, &mut b).unwrap_err().arg, "a");
        let mut a = [1.0f32; 3];
        assert_eq!(
            solve_in_place(&mut a, 2, &mut b).unwrap_err().kind,
            ErrorKind::BadDimension
        );
    }

    #[test]
    fn nearest_psd_clips_only_negative_eigenvalues() {
        // A = Q diag(3, −1) Qᵀ with Q a rotation by 0.3 rad: the nearest PSD
        // matrix is 3 q₁q₁ᵀ and the distance is exactly 1.
        let (s, c) = libm::sincos(0.3);
        let q1 = [c, s];
        let q2 = [-s, c];
        let mut a = [0.0f64; 4];
        for i in 0..2 {
            for j in 0..2 {
                a[i * 2 + j] = 3.0 * q1[i] * q1[j] - q2[i] * q2[j];
            }
        }
        let orig = a;
        let (mut w, mut v) = ([0.0; 2], [0.0; 4]);
        nearest_psd_in_place(&mut a, 2, &mut w, &mut v).unwrap();
        for i in 0..2 {
            for j in 0..2 {
                assert!((a[i * 2 + j] - 3.0 * q1[i] * q1[j]).abs() < 1e-14);
            }
        }
        let dist: f64 = a.iter().zip(&orig).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dist - 1.0).abs() < 1e-13);
        // A PSD matrix is left as it is.
        let mut p = [2.0f64, 0.5, 0.5, 1.0];
        nearest_psd_in_place(&mut p, 2, &mut w, &mut v).unwrap();
        assert!((p[1] - 0.5).abs() < 1e-15 && (p[3] - 1.0).abs() < 1e-15);
    }
}
