//! Spectral embedding: the leading eigenpairs of the normalised affinity
//! `M = D^{-1/2} W D^{-1/2}` by Chebyshev-filtered subspace iteration, and
//! the Ng–Jordan–Weiss row normalisation.
//!
//! The spectrum of `M` lies in `[−1, 1]` with `λ₁ = 1` (`M` is similar to
//! the row-stochastic `D⁻¹W`). Each outer iteration applies a degree-
//! [`CHEB_DEGREE`] Chebyshev polynomial that damps `[−1, c]` (`c` the
//! smallest Ritz value of the block) and keeps `λ = 1` at scale one, then
//! orthonormalises (classical Gram–Schmidt, twice) and does a Rayleigh–Ritz
//! step on the block (dense Jacobi on `p × p`). It stops when the residuals
//! `‖M v_j − θ_j v_j‖` of the wanted pairs are below `10 √ε`. When the
//! block is as wide as the matrix the first Rayleigh–Ritz step is exact.

use super::for_each_row;
use crate::error::{Detail, Error, ErrorKind, Result, checked_mul};
use crate::float::Float;
use crate::linalg::gemm::linear_forward;
use crate::linalg::sym_eigen;
use crate::rng::Rng;
use crate::size::Size;

/// Chebyshev polynomial degree per outer iteration (matrix products).
const CHEB_DEGREE: usize = 10;

/// A symmetric `n × n` operator applied to row-major `n × p` blocks.
pub(super) trait SymOp<F>: Sync {
    fn n(&self) -> usize;
    /// `y = M x`.
    fn apply(&self, x: &[F], y: &mut [F], p: usize);
}

/// Dense row-major `n × n` matrix; `zeros` holds `p` zeros (the bias of
/// the shared GEMM kernel).
pub(super) struct DenseOp<'a, F> {
    pub m: &'a [F],
    pub n: usize,
    pub zeros: &'a [F],
}

/// Rows of `M` per parallel GEMM call.
const DENSE_ROWS: usize = 64;

impl<F: Float> SymOp<F> for DenseOp<'_, F> {
    fn n(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[F], y: &mut [F], p: usize) {
        let n = self.n;
        for_each_row(y, DENSE_ROWS * p, |g, yb| {
            let rows = yb.len() / p;
            let mg = &self.m[g * DENSE_ROWS * n..][..rows * n];
            // Lengths match by construction, so this cannot fail.
            let _ = linear_forward(mg, x, &self.zeros[..p], rows, n, p, yb);
        });
    }
}

/// Sparse matrix in compressed rows.
pub(super) struct CsrOp<'a, F> {
    pub offsets: &'a [u32],
    pub cols: &'a [u32],
    pub vals: &'a [F],
    pub n: usize,
}

impl<F: Float> SymOp<F> for CsrOp<'_, F> {
    fn n(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[F], y: &mut [F], p: usize) {
        for_each_row(y, p, |i, yi| {
            yi.fill(F::ZERO);
            let range = self.offsets[i] as usize..self.offsets[i + 1] as usize;
            for (&j, &w) in self.cols[range.clone()].iter().zip(&self.vals[range]) {
                for (a, &b) in yi.iter_mut().zip(&x[j as usize * p..][..p]) {
                    *a += w * b;
                }
            }
        });
    }
}

/// Block width for `want` eigenpairs of an `n × n` matrix.
pub(super) fn block_width(n: usize, want: usize) -> usize {
    n.min((2 * want).max(want + 8))
}

/// Floats [`top_eigen`] needs: four `n × p` blocks, two `p × p` matrices
/// and three `p`-vectors.
pub(super) fn workspace_floats(n: usize, p: usize) -> Result<usize> {
    Ok((Size(checked_mul(n, p, "n")?) * 4 + 2 * p * p + 3 * p).get())
}

/// Leading eigenpairs: `values` (`p`, descending) and `vectors` (`n × p`
/// row-major, column `j` belongs to `values[j]`); the first `want` are
/// converged.
pub(super) struct Eigen<'w, F> {
    pub values: &'w [F],
    pub vectors: &'w [F],
}

/// The `want` leading eigenpairs of `op` with block width `p`
/// (`want ≤ p ≤ n`). `rng` draws the start block.
pub(super) fn top_eigen<'w, F: Float>(
    op: &impl SymOp<F>,
    want: usize,
    p: usize,
    max_iter: usize,
    rng: &mut Rng,
    ws: &'w mut [F],
) -> Result<Eigen<'w, F>> {
    let n = op.n();
    let (mut x, rest) = ws.split_at_mut(n * p);
    let (mut ax, rest) = rest.split_at_mut(n * p);
    let (mut v, rest) = rest.split_at_mut(n * p);
    let (av, rest) = rest.split_at_mut(n * p);
    let (h, rest) = rest.split_at_mut(p * p);
    let (s, rest) = rest.split_at_mut(p * p);
    let (theta, rest) = rest.split_at_mut(p);
    let (dots, rest) = rest.split_at_mut(p);
    let resid = &mut rest[..p];
    for e in x.iter_mut() {
        *e = F::from_f64(rng.normal());
    }
    let tol = F::from_f64(10.0) * F::EPSILON.sqrt();
    let mut worst = F::INFINITY;
    for _ in 0..max_iter {
        orthonormalise(x, n, p, dots, rng);
        // Rayleigh–Ritz: H = Xᵀ M X = S Θ Sᵀ, V = X S, MV = (MX) S.
        op.apply(x, ax, p);
        h.fill(F::ZERO);
        for r in 0..n {
            let (xr, axr) = (&x[r * p..][..p], &ax[r * p..][..p]);
            for (a, &xa) in xr.iter().enumerate() {
                for (hb, &axb) in h[a * p..][..p].iter_mut().zip(axr) {
                    *hb += xa * axb;
                }
            }
        }
        sym_eigen(h, p, theta, s)?;
        rotate(x, s, v, n, p);
        rotate(ax, s, av, n, p);
        resid.fill(F::ZERO);
        for r in 0..n {
            let (vr, avr) = (&v[r * p..][..p], &av[r * p..][..p]);
            for j in 0..want {
                let e = avr[j] - theta[j] * vr[j];
                resid[j] += e * e;
            }
        }
        worst = resid[..want].iter().fold(F::ZERO, |a, &b| a.max(b)).sqrt();
        if worst <= tol {
            return Ok(Eigen {
                values: theta,
                vectors: v,
            });
        }
        // Filter V; the result becomes the next X.
        let cut = theta[p - 1]
            .max(F::from_f64(-0.999))
            .min(F::from_f64(0.999));
        chebyshev(op, p, cut, &mut v, &mut x, &mut ax);
        core::mem::swap(&mut x, &mut v);
    }
    Err(Error::new(
        ErrorKind::NotConverged,
        "eigen_max_iter",
        "spectral embedding did not converge (worst residual)",
    )
    .with(Detail::Value(worst.to_f64())))
}

/// `out = a s` for `a` (`n × p`) and `s` (`p × p`).
fn rotate<F: Float>(a: &[F], s: &[F], out: &mut [F], n: usize, p: usize) {
    for_each_row(&mut out[..n * p], p, |r, o| {
        o.fill(F::ZERO);
        for (k, &ark) in a[r * p..][..p].iter().enumerate() {
            for (oj, &skj) in o.iter_mut().zip(&s[k * p..][..p]) {
                *oj += ark * skj;
            }
        }
    });
}

/// Applies the scaled Chebyshev filter damping `[−1, cut]` (Zhou & Saad's
/// recurrence, normalised to 1 at λ = 1) to the block in `*start`; the
/// result ends in `*start` (the other two blocks are scratch).
fn chebyshev<'b, F: Float>(
    op: &impl SymOp<F>,
    p: usize,
    cut: F,
    start: &mut &'b mut [F],
    b1: &mut &'b mut [F],
    b2: &mut &'b mut [F],
) {
    let e = (cut + F::ONE) * F::HALF;
    let c = (cut - F::ONE) * F::HALF;
    let mut sigma = e / (F::ONE - c);
    let tau = F::TWO / sigma;
    // prev = start, cur = (M − c) prev · σ/e.
    let (prev, cur, next) = (start, b1, b2);
    op.apply(prev, cur, p);
    let scale = sigma / e;
    for (y, &x0) in cur.iter_mut().zip(prev.iter()) {
        *y = (*y - c * x0) * scale;
    }
    for _ in 1..CHEB_DEGREE {
        let sigma_new = F::ONE / (tau - sigma);
        op.apply(cur, next, p);
        let (a, b) = (F::TWO * sigma_new / e, sigma * sigma_new);
        for ((y, &x1), &x0) in next.iter_mut().zip(cur.iter()).zip(prev.iter()) {
            *y = (*y - c * x1) * a - b * x0;
        }
        sigma = sigma_new;
        // (prev, cur, next) ← (cur, next, prev)
        core::mem::swap(prev, cur);
        core::mem::swap(cur, next);
    }
    core::mem::swap(prev, cur);
}

/// Orthonormalises the columns of `x` (`n × p`) by classical Gram–Schmidt
/// applied twice; a column that vanishes (dependent) is replaced by random
/// normals from `rng` and orthonormalised again.
fn orthonormalise<F: Float>(x: &mut [F], n: usize, p: usize, dots: &mut [F], rng: &mut Rng) {
    for j in 0..p {
        for attempt in 0..4 {
            let before = column_norm(x, n, p, j);
            for _ in 0..2 {
                dots[..j].fill(F::ZERO);
                for r in 0..n {
                    let row = &x[r * p..][..p];
                    let xj = row[j];
                    for (d, &xi) in dots[..j].iter_mut().zip(&row[..j]) {
                        *d += xi * xj;
                    }
                }
                for r in 0..n {
                    let row = &mut x[r * p..][..p];
                    let mut sub = F::ZERO;
                    for (&d, &xi) in dots[..j].iter().zip(&row[..j]) {
                        sub += d * xi;
                    }
                    row[j] -= sub;
                }
            }
            let norm = column_norm(x, n, p, j);
            if norm > before * F::from_f64(64.0) * F::EPSILON
                && norm > F::MIN_POSITIVE
                && attempt < 3
            {
                let inv = F::ONE / norm;
                for r in 0..n {
                    x[r * p + j] *= inv;
                }
                break;
            }
            for r in 0..n {
                x[r * p + j] = F::from_f64(rng.normal());
            }
        }
    }
}

fn column_norm<F: Float>(x: &[F], n: usize, p: usize, j: usize) -> F {
    (0..n)
        .map(|r| x[r * p + j] * x[r * p + j])
        .sum::<F>()
        .sqrt()
}

/// The first `k` columns of `vectors` (`n × p`), each row scaled to unit
/// length (zero rows stay zero), into `out` (`n × k`).
pub(super) fn normalised_rows<F: Float>(vectors: &[F], p: usize, k: usize, out: &mut [F]) {
    for (o, row) in out.chunks_exact_mut(k).zip(vectors.chunks_exact(p)) {
        o.copy_from_slice(&row[..k]);
        let norm = o.iter().map(|&a| a * a).sum::<F>().sqrt();
        if norm > F::ZERO {
            for a in o.iter_mut() {
                *a /= norm;
            }
        }
    }
}

/// Number of clusters `j ∈ 1..values.len()` maximising the eigengap
/// `λ_j − λ_{j+1}` (1-based; ties to the smaller `j`).
pub(super) fn eigengap_choice<F: Float>(values: &[F]) -> usize {
    let mut best = (1, F::NEG_INFINITY);
    for j in 1..values.len() {
        let gap = values[j - 1] - values[j];
        if gap > best.1 {
            best = (j, gap);
        }
    }
    best.0
}
