//! The Gibbs kernel `e^{(pot − C)/ε}` evaluated from the points: one point
//! against a cloud ([`Cloud`]: cost tiles from point differences, streaming
//! log-sum-exp, weighted means) and every point of one side against the
//! other ([`Ctx`], the view of the problem the half-steps share). Reductions
//! use eight independent accumulators in a fixed order so that they
//! vectorise and give the same bits on every run.
//!
//! Precision: the per-pair work (costs, exponentials, the sums within a
//! row or column) runs in `F`; everything per point — potentials, their
//! scaled forms, log-sums, masses — is `f64`, so an `f32` kernel still
//! reaches marginal errors far below `f32`'s resolution of a potential
//! (`ulp(f)/ε`). The other side's scaled potential enters the inner loop
//! as `F` values relative to their maximum (the `center`, kept in `f64`).

use crate::fastmath::exp_in_place;
use crate::float::Float;
use crate::linalg::squared_distance;
use crate::par::for_each_chunk;

/// Columns per stack tile of the streaming loops (1 KiB of f32).
pub(super) const TILE: usize = 256;

const LANES: usize = 8;

/// `Σ xs` (eight interleaved partial sums, then combined in order).
pub(super) fn sum<F: Float>(xs: &[F]) -> F {
    let mut acc = [F::ZERO; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += x;
    }
    fold(acc)
}

/// `acc += alpha · x`.
pub(super) fn axpy<F: Float>(acc: &mut [F], alpha: F, x: &[F]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += alpha * v;
    }
}

/// Largest element (`−∞` for an empty slice; NaN is ignored).
pub(super) fn max<F: Float>(xs: &[F]) -> F {
    let mut acc = [F::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a = a.max(x);
    }
    acc.iter().fold(F::NEG_INFINITY, |m, &x| m.max(x))
}

fn fold<F: Float>(acc: [F; LANES]) -> F {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// The other cloud, transposed (`d × count`, coordinate-major), so that one
/// point's costs to a run of others vectorise over the others.
#[derive(Clone, Copy)]
pub(super) struct Cloud<'a, F> {
    /// Row-major `count × d`.
    pub rows: &'a [F],
    /// Coordinate-major `d × count`.
    pub cols: &'a [F],
    pub count: usize,
    pub d: usize,
}

impl<'a, F: Float> Cloud<'a, F> {
    /// The cloud `rows` (`count×d`, row-major), its transpose written into
    /// `cols` (`d×count`).
    pub fn transposed(rows: &'a [F], count: usize, d: usize, cols: &'a mut [F]) -> Self {
        for k in 0..count {
            for c in 0..d {
                cols[c * count + k] = rows[k * d + c];
            }
        }
        Cloud {
            rows,
            cols,
            count,
            d,
        }
    }

    pub fn point(&self, k: usize) -> &[F] {
        &self.rows[k * self.d..][..self.d]
    }

    /// `out[t] = pot[k0+t] − ‖p − q_{k0+t}‖² · inv_eps`.
    pub fn fill_w(&self, p: &[F], k0: usize, pot: &[F], inv_eps: F, out: &mut [F]) {
        let len = out.len();
        out.fill(F::ZERO);
        for (c, &pc) in p.iter().enumerate() {
            let col = &self.cols[c * self.count + k0..][..len];
            for (o, &q) in out.iter_mut().zip(col) {
                let t = pc - q;
                *o += t * t;
            }
        }
        for (o, &w) in out.iter_mut().zip(&pot[k0..k0 + len]) {
            *o = w - *o * inv_eps;
        }
    }

    /// `ln Σ_k exp(pot_k − ‖p − q_k‖²/ε)`, streamed over stack tiles (one
    /// exponential per pair; the running sum is rescaled when a tile raises
    /// the maximum); the final log in `f64`.
    pub fn lse(&self, p: &[F], pot: &[F], inv_eps: F) -> f64 {
        self.lse_excluding(p, pot, inv_eps, usize::MAX)
    }

    /// [`Cloud::lse`] without the term `skip`.
    pub fn lse_excluding(&self, p: &[F], pot: &[F], inv_eps: F, skip: usize) -> f64 {
        let mut buf = [F::ZERO; TILE];
        let mut top = F::NEG_INFINITY;
        let mut total = F::ZERO;
        let mut k0 = 0;
        while k0 < self.count {
            let len = TILE.min(self.count - k0);
            let b = &mut buf[..len];
            self.fill_w(p, k0, pot, inv_eps, b);
            if skip >= k0 && skip < k0 + len {
                b[skip - k0] = F::NEG_INFINITY;
            }
            k0 += len;
            let tile_top = max(b);
            if tile_top == F::NEG_INFINITY {
                continue;
            }
            if tile_top > top {
                total *= (top - tile_top).exp();
                top = tile_top;
            }
            for w in b.iter_mut() {
                *w -= top;
            }
            exp_in_place(b);
            total += sum(b);
        }
        log_of(top, total)
    }

    /// Softmax-weighted mean `Σ_k e^{w_k} q_k / Σ_k e^{w_k}` of the other
    /// cloud's points, with `w_k = pot_k − ‖p − q_k‖²/ε` except that the
    /// entry `floor.0` is raised to at least `e^{floor.1}` when given.
    /// Writes the mean to `mean` (`d`) and returns `ln Σ_k e^{w_k}`.
    pub fn weighted_mean(
        &self,
        p: &[F],
        pot: &[F],
        inv_eps: F,
        floor: Option<(usize, F)>,
        mean: &mut [F],
    ) -> f64 {
        let mut buf = [F::ZERO; TILE];
        let mut top = F::NEG_INFINITY;
        let mut total = F::ZERO;
        mean.fill(F::ZERO);
        let mut k0 = 0;
        while k0 < self.count {
            let len = TILE.min(self.count - k0);
            let b = &mut buf[..len];
            self.fill_w(p, k0, pot, inv_eps, b);
            let tile_top = max(b);
            if tile_top != F::NEG_INFINITY {
                if tile_top > top {
                    let s = (top - tile_top).exp();
                    total *= s;
                    mean.iter_mut().for_each(|x| *x *= s);
                    top = tile_top;
                }
                for w in b.iter_mut() {
                    *w -= top;
                }
                exp_in_place(b);
                total += sum(b);
                for (t, &e) in b.iter().enumerate() {
                    axpy(mean, e, self.point(k0 + t));
                }
            }
            k0 += len;
        }
        if let Some((k, log_floor)) = floor {
            let w = pot[k] - squared_distance(p, self.point(k)) * inv_eps;
            if log_floor > w {
                if log_floor > top {
                    let s = (top - log_floor).exp();
                    total *= s;
                    mean.iter_mut().for_each(|x| *x *= s);
                    top = log_floor;
                }
                let extra = (log_floor - top).exp() - (w - top).exp();
                total += extra;
                axpy(mean, extra, self.point(k));
            }
        }
        let inv = F::ONE / total;
        mean.iter_mut().for_each(|x| *x *= inv);
        log_of(top, total)
    }
}

/// `top + ln total` in `f64` (`top` is exact; only the sum is rounded).
fn log_of<F: Float>(top: F, total: F) -> f64 {
    top.to_f64() + total.to_f64().ln()
}

/// Which potential a half-step updates: the row half-step the source's
/// `f`, the column half-step the target's `g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Half {
    Row,
    Column,
}

impl Half {
    /// The pair `(source i, target j)` as `(updated side's index, other
    /// side's index)`.
    pub fn ends(self, i: usize, j: usize) -> (usize, usize) {
        match self {
            Half::Row => (i, j),
            Half::Column => (j, i),
        }
    }
}

/// `1/x`, 0 for `x = ∞`.
pub(super) fn inv(x: f64) -> f64 {
    if x.is_finite() { 1.0 / x } else { 0.0 }
}

/// One side of the problem: its points, its weights `w` and their logs,
/// and its marginal penalty `ρ` (`∞`: hard constraint).
#[derive(Clone, Copy)]
pub(super) struct Side<'a, F> {
    pub cloud: Cloud<'a, F>,
    pub w: &'a [F],
    pub log_w: &'a [f64],
    pub rho: f64,
}

impl<F: Float> Side<'_, F> {
    /// `ρ/(ρ+ε)`, 1 for `ρ = ∞`: the exact half-step is
    /// `pot = ρ/(ρ+ε)·(−ε·l)`.
    pub fn damping(&self, eps: f64) -> f64 {
        if self.rho.is_finite() {
            self.rho / (self.rho + eps)
        } else {
            1.0
        }
    }
}

/// Both sides at one ε: what every half-step and output reads.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a, F> {
    pub source: Side<'a, F>,
    pub target: Side<'a, F>,
    pub eps: f64,
    pub inv_eps: f64,
    /// `1/ε` in `F`, for the per-pair loops.
    pub kernel_inv_eps: F,
}

impl<'a, F: Float> Ctx<'a, F> {
    pub fn new(source: Side<'a, F>, target: Side<'a, F>, eps: F) -> Self {
        Ctx {
            source,
            target,
            eps: eps.to_f64(),
            inv_eps: 1.0 / eps.to_f64(),
            kernel_inv_eps: F::ONE / eps,
        }
    }

    /// `(updated side, other side)` of a half-step.
    pub fn sides(&self, half: Half) -> (&Side<'a, F>, &Side<'a, F>) {
        match half {
            Half::Row => (&self.source, &self.target),
            Half::Column => (&self.target, &self.source),
        }
    }

    /// `scaled_k = ln w_k + pot_k/ε` for the points of `side` (its terms in
    /// the other side's log-sums), written as `F` values relative to their
    /// maximum, which is returned (the center; 0 when not finite).
    pub fn scaled_potential(&self, side: &Side<'_, F>, pot: &[f64], scaled: &mut [F]) -> f64 {
        let inv_eps = self.inv_eps;
        let term = |(&l, &v): (&f64, &f64)| l + v * inv_eps;
        let top = side
            .log_w
            .iter()
            .zip(pot)
            .map(term)
            .fold(f64::NEG_INFINITY, f64::max);
        let center = if top.is_finite() { top } else { 0.0 };
        for (q, t) in scaled.iter_mut().zip(side.log_w.iter().zip(pot).map(term)) {
            *q = F::from_f64(t - center);
        }
        center
    }

    /// The marginal of `side` from its log-sums: `mass_k = e^{ln w_k +
    /// pot_k/ε + l_k}` (`Π1` for the source, `Πᵀ1` for the target).
    pub fn masses(&self, side: &Side<'_, F>, pot: &[f64], lse: &[f64], mass: &mut [F]) {
        for (c, (&l, (&v, &lv))) in mass
            .iter_mut()
            .zip(side.log_w.iter().zip(pot.iter().zip(lse)))
        {
            *c = F::from_f64(l + v * self.inv_eps + lv);
        }
        exp_in_place(mass);
    }

    /// A half-step's log-sums from the points:
    /// `l_k = ln Σ_o e^{scaled_o − C_ko/ε}` for every point `k` of the
    /// updated side, with `(scaled, center)` the other side's
    /// [`Ctx::scaled_potential`]. One exponential per pair; O(d) memory.
    pub fn point_log_sums(&self, half: Half, scaled: &[F], center: f64, lse: &mut [f64]) {
        let (this, other) = self.sides(half);
        let (this, other, inv_eps) = (this.cloud, other.cloud, self.kernel_inv_eps);
        for_each_chunk(lse, 8, |c, ls| {
            for (t, l) in ls.iter_mut().enumerate() {
                *l = center + other.lse(this.point(c * 8 + t), scaled, inv_eps);
            }
        });
    }
}
