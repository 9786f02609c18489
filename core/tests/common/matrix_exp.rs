//! Closed forms of linear SDEs for tests: the matrix exponential and Van
//! Loan's block exponential for the covariance a constant diffusion builds
//! up under a linear drift, in f64.
//!
//! One copy for every test that needs them: integration tests include it
//! with `#[path = "common/matrix_exp.rs"] mod matrix_exp;` (from the root
//! package's tests, `#[path = "../core/tests/common/matrix_exp.rs"]`), the
//! core's unit tests with the path relative to their own file. It names
//! `std` explicitly because the core's unit tests may be built without it.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::vec;
use std::vec::Vec;

/// The product `a b` of two `n×n` matrices (row-major).
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|ij| (0..n).map(|k| a[ij / n * n + k] * b[k * n + ij % n]).sum())
        .collect()
}

/// `e^C` of an `n×n` matrix (row-major) by scaling and squaring of a
/// 30-term Taylor series: the scaled matrix has entries summing to at most
/// 1/4 in magnitude, where 30 terms are exact in f64.
pub fn expm(c: &[f64], n: usize) -> Vec<f64> {
    let norm: f64 = c[..n * n].iter().map(|x| x.abs()).sum();
    let mut squarings = 0;
    while norm / f64::from(1u32 << squarings) > 0.25 {
        squarings += 1;
    }
    let scaled: Vec<f64> = c[..n * n]
        .iter()
        .map(|x| x / f64::from(1u32 << squarings))
        .collect();
    let mut result = vec![0.0; n * n];
    let mut term = vec![0.0; n * n];
    for i in 0..n {
        result[i * n + i] = 1.0;
        term[i * n + i] = 1.0;
    }
    for k in 1..30 {
        term = matmul(&term, &scaled, n)
            .iter()
            .map(|x| x / k as f64)
            .collect();
        for (r, t) in result.iter_mut().zip(&term) {
            *r += t;
        }
    }
    for _ in 0..squarings {
        result = matmul(&result, &result, n);
    }
    result
}

/// The flow and the covariance of `dz = A z dt + L dW` (`D = L Lᵀ`) over a
/// time `t`, both `d×d` row-major.
pub struct VanLoan {
    /// `e^{At}`.
    pub flow: Vec<f64>,
    /// `Σ_t = ∫₀ᵗ e^{As} D e^{Aᵀs} ds`.
    pub covariance: Vec<f64>,
}

/// [`VanLoan`] of the drift matrix `a` and the diffusion `dm` (`d×d`) over
/// `t`, by Van Loan's block exponential: `exp([[−A, D], [0, Aᵀ]] t) =
/// [[·, G], [0, F]]` with `F = (e^{At})ᵀ` and `Σ_t = Fᵀ G`.
pub fn van_loan(a: &[f64], dm: &[f64], d: usize, t: f64) -> VanLoan {
    let n = 2 * d;
    let mut c = vec![0.0; n * n];
    for i in 0..d {
        for j in 0..d {
            c[i * n + j] = -a[i * d + j] * t;
            c[i * n + d + j] = dm[i * d + j] * t;
            c[(d + i) * n + d + j] = a[j * d + i] * t;
        }
    }
    let e = expm(&c, n);
    let flow: Vec<f64> = (0..d * d)
        .map(|ij| e[(d + ij % d) * n + d + ij / d])
        .collect();
    let covariance = (0..d * d)
        .map(|ij| {
            let (i, j) = (ij / d, ij % d);
            (0..d).map(|k| flow[i * d + k] * e[k * n + d + j]).sum()
        })
        .collect();
    VanLoan { flow, covariance }
}
