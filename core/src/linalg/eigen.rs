//! Symmetric eigen-decomposition by the cyclic Jacobi method.

use crate::error::{Detail, Error, ErrorKind, Result, check_finite, check_len};
use crate::float::Float;

/// Sweep cap of [`sym_eigen`]; Jacobi converges quadratically, typically in
/// 6–12 sweeps for d ≤ 64.
pub const SYM_EIGEN_MAX_SWEEPS: usize = 64;

/// Eigen-decomposition `A = V diag(w) Vᵀ` of a symmetric `d×d` matrix.
///
/// - `a`: `d×d` row-major; read (both triangles are averaged) and destroyed.
/// - `w`: `d` eigenvalues in descending order.
/// - `v`: `d×d` row-major orthogonal matrix whose column `k` is the unit
///   eigenvector of `w[k]` (NumPy's `eigh` layout, reversed order). Each
///   eigenvector's sign is fixed so its largest-magnitude entry is positive.
///
/// Accuracy: absolute eigenvalue error of order `ε·‖A‖_F`; Jacobi also gives
/// small eigenvalues to high relative accuracy for graded matrices.
/// Errors: length mismatches, non-finite entries, or (never seen in
/// practice) no convergence in [`SYM_EIGEN_MAX_SWEEPS`] sweeps.
pub fn sym_eigen<F: Float>(a: &mut [F], d: usize, w: &mut [F], v: &mut [F]) -> Result<()> {
    check_len(a, d * d, "a")?;
    check_len(w, d, "w")?;
    check_len(v, d * d, "v")?;
    check_finite(a, "a")?;
    // Symmetrise and start from V = I.
    for i in 0..d {
        for j in 0..i {
            let s = (a[i * d + j] + a[j * d + i]) * F::HALF;
            a[i * d + j] = s;
            a[j * d + i] = s;
        }
        for j in 0..d {
            v[i * d + j] = if i == j { F::ONE } else { F::ZERO };
        }
    }
    let total: F = a.iter().map(|&x| x * x).sum();
    let tiny = F::EPSILON * F::EPSILON * total;
    let mut converged = false;
    for _ in 0..SYM_EIGEN_MAX_SWEEPS {
        let mut off = F::ZERO;
        for p in 0..d {
            for q in p + 1..d {
                off += a[p * d + q] * a[p * d + q];
            }
        }
        if off <= tiny || off == F::ZERO {
            converged = true;
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == F::ZERO {
                    continue;
                }
                let app = a[p * d + p];
                let aqq = a[q * d + q];
                // Rotation angle: tan(2θ) = 2 a_pq / (a_qq − a_pp), smaller root.
                let theta = (aqq - app) / (F::TWO * apq);
                let t = {
                    let sign = if theta >= F::ZERO { F::ONE } else { -F::ONE };
                    sign / (theta.abs() + (theta * theta + F::ONE).sqrt())
                };
                let c = F::ONE / (t * t + F::ONE).sqrt();
                let s = t * c;
                // A ← Jᵀ A J on rows/columns p and q.
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                a[p * d + q] = F::ZERO;
                a[q * d + p] = F::ZERO;
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    if !converged {
        return Err(Error::new(
            ErrorKind::NotConverged,
            "a",
            "Jacobi eigen-decomposition did not converge",
        )
        .with(Detail::Index(SYM_EIGEN_MAX_SWEEPS)));
    }
    for k in 0..d {
        w[k] = a[k * d + k];
    }
    // Selection sort into descending order (d ≤ 64: trivial cost), swapping
    // eigenvector columns along.
    for k in 0..d {
        let mut best = k;
        for j in k + 1..d {
            if w[j] > w[best] {
                best = j;
            }
        }
        if best != k {
            w.swap(k, best);
            for r in 0..d {
                v.swap(r * d + k, r * d + best);
            }
        }
        let mut big = 0;
        for r in 1..d {
            if v[r * d + k].abs() > v[big * d + k].abs() {
                big = r;
            }
        }
        if v[big * d + k] < F::ZERO {
            for r in 0..d {
                v[r * d + k] = -v[r * d + k];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Family, Rng};

    /// Builds A = Q diag(λ) Qᵀ from a random orthogonal Q (Gram–Schmidt).
    fn planted(d: usize, lambda: &[f64], seed: u64) -> ([f64; 64 * 64], [f64; 64 * 64]) {
        let mut rng = Rng::stream(seed, Family::Data, 0);
        let mut q = [0.0f64; 64 * 64];
        rng.fill_normal(&mut q[..d * d]);
        // Orthonormalise columns of q.
        for k in 0..d {
            for j in 0..k {
                let dot: f64 = (0..d).map(|r| q[r * d + k] * q[r * d + j]).sum();
                for r in 0..d {
                    q[r * d + k] -= dot * q[r * d + j];
                }
            }
            let norm: f64 = (0..d)
                .map(|r| q[r * d + k] * q[r * d + k])
                .sum::<f64>()
                .sqrt();
            for r in 0..d {
                q[r * d + k] /= norm;
            }
        }
        let mut a = [0.0f64; 64 * 64];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d)
                    .map(|k| q[i * d + k] * lambda[k] * q[j * d + k])
                    .sum();
            }
        }
        (a, q)
    }

    #[test]
    fn recovers_planted_spectrum_and_vectors() {
        for &d in &[1usize, 2, 5, 16, 64] {
            let lambda: heapless::Vec<f64, 64> = (0..d)
                .map(|k| 3.0 - 0.1 * k as f64 * (k % 3) as f64)
                .collect();
            let (mut a, _) = planted(d, &lambda, d as u64);
            let a0 = a;
            let mut w = [0.0f64; 64];
            let mut v = [0.0f64; 64 * 64];
            sym_eigen(&mut a[..d * d], d, &mut w[..d], &mut v[..d * d]).unwrap();
            let mut sorted = lambda.clone();
            sorted.sort_by(|x, y| y.partial_cmp(x).unwrap());
            for k in 0..d {
                assert!((w[k] - sorted[k]).abs() < 1e-12, "d={d} k={k}");
            }
            // A v_k = w_k v_k and VᵀV = I.
            for k in 0..d {
                for i in 0..d {
                    let av: f64 = (0..d).map(|j| a0[i * d + j] * v[j * d + k]).sum();
                    assert!((av - w[k] * v[i * d + k]).abs() < 1e-11);
                }
                for l in 0..d {
                    let dot: f64 = (0..d).map(|r| v[r * d + k] * v[r * d + l]).sum();
                    let want = if k == l { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn f32_accuracy_on_anisotropic_covariance() {
        let d = 8;
        let lambda = [5.0, 2.0, 1.0, 0.5, 0.1, 0.05, 0.01, 0.001];
        let (a, _) = planted(d, &lambda, 3);
        let mut a32 = [0.0f32; 64];
        for i in 0..d * d {
            a32[i] = a[i] as f32;
        }
        let mut w = [0.0f32; 8];
        let mut v = [0.0f32; 64];
        sym_eigen(&mut a32, d, &mut w, &mut v).unwrap();
        for k in 0..d {
            assert!(
                ((w[k] as f64) - lambda[k]).abs() < 5e-6 * 5.0,
                "{k} {}",
                w[k]
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        let mut a = [1.0f64, f64::NAN, 0.0, 1.0];
        let (mut w, mut v) = ([0.0; 2], [0.0; 4]);
        assert_eq!(
            sym_eigen(&mut a, 2, &mut w, &mut v).unwrap_err().kind,
            ErrorKind::NonFinite
        );
        let mut a = [1.0f64; 3];
        assert_eq!(
            sym_eigen(&mut a, 2, &mut w, &mut v).unwrap_err().kind,
            ErrorKind::BadDimension
        );
    }
}
