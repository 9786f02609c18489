//! The Sinkhorn iterations (see the module docs): ε-scaling stages, each a
//! run of iterations of two half-steps. A half-step is written once for
//! either side ([`Half`]): its log-sums ([`Stage::log_sums`], the inner
//! loop: from the points, or from the stored kernel in dense mode), then
//! the update of its potential ([`Stage::update`]: damping, translation,
//! tracked pairs). The row half-step of an absorbing iteration rebuilds the
//! stored kernel instead ([`Stage::absorb`]); the column half-step's sums
//! also give the stopping error. Potentials and everything else per point
//! are `f64` (see `kernel`); the stored kernel and its products are `F`.

use super::kernel::{Ctx, Half, Side, TILE, axpy, inv, max};
use super::problem::{Pairs, UotConfig, UotMode, UotReport};
use super::tracks::{bound_potentials, pair_masses};
use crate::error::{Arena, Error, ErrorKind, Result};
use crate::fastmath::{exp_in_place, log_sum_exp};
use crate::float::Float;
use crate::linalg::dot;
use crate::par::{for_each_chunk2, for_each_chunk3};

/// Dense mode: a potential this many ε away from its absorbed value (a
/// scaling outside `[e^{−20}, e^{20}]`) triggers a re-absorption.
const ABSORB_AFTER: f64 = 20.0;

/// Dense mode: a rebuilt kernel row's exponent is clamped to this many
/// units around the row's maximum.
const ROW_CLAMP: f64 = 80.0;

/// A side's working vectors, each of the side's length.
pub(super) struct SideBuffers<'a, F> {
    /// The side's potential (`f` or `g`).
    pub pot: &'a mut [f64],
    /// The half-step's log-sums `l_k = ln Σ_o w_o e^{(pot_o − C_ko)/ε}`.
    pub lse: &'a mut [f64],
    /// Dense mode: the potential absorbed into the stored kernel.
    bar: &'a mut [f64],
    /// Dense mode: `w·e^{(pot − bar)/ε}`, this side's factor in the other
    /// side's kernel products.
    scaling: &'a mut [F],
    /// Dense mode: 1 where this side's kernel product underflowed and its
    /// log-sum was recomputed from the points, else 0.
    mark: &'a mut [F],
}

/// The iterations' working memory besides the potentials.
pub(super) struct Buffers<'a, F> {
    pub source: SideBuffers<'a, F>,
    pub target: SideBuffers<'a, F>,
    /// The summed-over side's [`Ctx::scaled_potential`] (`max(n, m)`).
    pub scaled: &'a mut [F],
    /// Its center.
    center: f64,
    /// Scratch (`max(n, m)`).
    tmp: &'a mut [f64],
    /// Dense mode: the stored kernel `K_ij = e^{(f̄_i + ḡ_j − C_ij)/ε}`
    /// (`n×m`, row-major).
    kernel: Option<&'a mut [F]>,
}

impl<'a, F: Float> Buffers<'a, F> {
    /// The buffers from `arena` and `wide` (what [`super::uot_workspace_len`]
    /// counts beyond the transposed clouds and the log-weights).
    pub fn carve(
        arena: &mut Arena<'a, F>,
        wide: &mut Arena<'a, f64>,
        n: usize,
        m: usize,
        mode: UotMode,
    ) -> Result<Self> {
        let (f, g) = (wide.take(n)?, wide.take(m)?);
        let (lr, lc) = (wide.take(n)?, wide.take(m)?);
        let (fbar, gbar) = (wide.take(n)?, wide.take(m)?);
        let tmp = wide.take(n.max(m))?;
        let (su, sv) = (arena.take(n)?, arena.take(m)?);
        let scaled = arena.take(n.max(m))?;
        let (mark_r, mark_c) = (arena.take(n)?, arena.take(m)?);
        let kernel = match mode {
            UotMode::Dense => Some(arena.take(n * m)?),
            UotMode::Online => None,
        };
        Ok(Buffers {
            source: SideBuffers {
                pot: f,
                lse: lr,
                bar: fbar,
                scaling: su,
                mark: mark_r,
            },
            target: SideBuffers {
                pot: g,
                lse: lc,
                bar: gbar,
                scaling: sv,
                mark: mark_c,
            },
            scaled,
            center: 0.0,
            tmp,
            kernel,
        })
    }
}

/// The wide carve [`Buffers::carve`] takes: `f64` values for `n` sources
/// and `m` targets.
pub(super) fn wide_len(n: usize, m: usize) -> usize {
    3 * (n + m) + n.max(m)
}

/// Runs the ε-scaling stages (none on a warm start, which is already near
/// the target ε's solution) and the final stage at `cfg.epsilon`, from the
/// potentials in `buf`'s sides. Leaves the potentials there; returns the
/// counters and the error (the report's other fields are zero).
pub(super) fn run<F: Float>(
    source: Side<'_, F>,
    target: Side<'_, F>,
    pairs: Option<&Pairs<'_, F>>,
    cfg: &UotConfig<F>,
    buf: &mut Buffers<'_, F>,
) -> Result<UotReport<F>> {
    let balanced = !source.rho.is_finite() && !target.rho.is_finite();
    let mut report = UotReport {
        iterations: 0,
        marginal_error: F::INFINITY,
        converged: false,
        objective: F::ZERO,
        dual: F::ZERO,
        gap: F::ZERO,
        total_mass: F::ZERO,
        absorptions: 0,
    };
    let first = if cfg.warm_start {
        0
    } else {
        cfg.eps_scaling_stages
    };
    for s in (0..=first).rev() {
        let mut eps = cfg.epsilon;
        for _ in 0..s {
            eps *= F::from_f64(4.0);
        }
        let last = s == 0;
        let tol = cfg.tol.to_f64();
        let stage = Stage {
            ctx: Ctx::new(source, target, eps),
            pairs,
            translate: cfg.translation && pairs.is_none() && !balanced,
            tol: match (last, cfg.fixed_iterations) {
                (true, true) => None,
                (true, false) => Some(tol),
                (false, _) => Some(tol.max(1e-3)),
            },
            max_iter: cfg.max_iter,
        };
        if !stage.run(buf, &mut report)? {
            break;
        }
        if last {
            report.converged = true;
        }
    }
    if cfg.fixed_iterations {
        report.converged = report.marginal_error <= cfg.tol;
    }
    Ok(report)
}

/// One stage: the iterations at one ε.
struct Stage<'a, F> {
    ctx: Ctx<'a, F>,
    pairs: Option<&'a Pairs<'a, F>>,
    /// Take the translation step after each half-step (not in absorbing
    /// iterations).
    translate: bool,
    /// Stop once the marginal error is at most this; `None`: run to the
    /// iteration cap.
    tol: Option<f64>,
    max_iter: u32,
}

impl<F: Float> Stage<'_, F> {
    /// Iterates until the marginal error meets the stage's tolerance
    /// (`Ok(true)`) or the iteration count reaches the cap (`Ok(false)`).
    fn run(&self, buf: &mut Buffers<'_, F>, report: &mut UotReport<F>) -> Result<bool> {
        let ctx = &self.ctx;
        // Dense mode: a new ε needs a new kernel.
        let mut absorb = true;
        loop {
            if report.iterations >= self.max_iter {
                return Ok(false);
            }
            report.iterations += 1;
            // Row half-step.
            buf.center = ctx.scaled_potential(&ctx.target, buf.target.pot, buf.scaled);
            let absorbing = absorb && self.absorb(buf);
            if absorbing {
                report.absorptions += 1;
                absorb = false;
            } else if self.log_sums(Half::Row, buf) {
                absorb = true;
            }
            self.update(Half::Row, absorbing, buf);
            // Column half-step; its sums give the stopping error.
            buf.center = ctx.scaled_potential(&ctx.source, buf.source.pot, buf.scaled);
            if self.log_sums(Half::Column, buf) {
                absorb = true;
            }
            let error = self.marginal_error(buf);
            report.marginal_error = F::from_f64(error);
            if self.tol.is_some_and(|tol| error <= tol) {
                return Ok(true);
            }
            if !error.is_finite() {
                return Err(Error::new(
                    ErrorKind::NumericalFailure,
                    "epsilon",
                    "the iterations produced a non-finite value",
                ));
            }
            self.update(Half::Column, absorbing, buf);
            if buf.kernel.is_some()
                && (self.far(buf.source.pot, buf.source.bar)
                    || self.far(buf.target.pot, buf.target.bar))
            {
                absorb = true;
            }
        }
    }

    /// Whether a potential is [`ABSORB_AFTER`]·ε or more from its absorbed
    /// value anywhere (NaN counts as far).
    fn far(&self, pot: &[f64], bar: &[f64]) -> bool {
        pot.iter().zip(bar).any(|(&a, &b)| {
            ((a - b).abs() * self.ctx.inv_eps).partial_cmp(&ABSORB_AFTER)
                != Some(core::cmp::Ordering::Less)
        })
    }

    /// The half-step's inner loop: the log-sums `l_k` of every point of
    /// the updated side into its `lse`, over the other side's
    /// [`Ctx::scaled_potential`] in `buf.scaled`. From the stored kernel in
    /// dense mode (one product per point, no exponentials; a sum that
    /// underflows is recomputed from the points and marked), else from the
    /// points ([`Ctx::point_log_sums`]). Returns whether a marked point has
    /// positive weight: the kernel then needs re-absorbing.
    fn log_sums(&self, half: Half, buf: &mut Buffers<'_, F>) -> bool {
        let ctx = &self.ctx;
        let (this_side, other_side) = ctx.sides(half);
        let (scaled, center) = (&*buf.scaled, buf.center);
        let Some(kernel) = buf.kernel.as_deref() else {
            let this = match half {
                Half::Row => &mut buf.source,
                Half::Column => &mut buf.target,
            };
            ctx.point_log_sums(half, scaled, center, this.lse);
            return false;
        };
        let (this, other) = match half {
            Half::Row => (&mut buf.source, &mut buf.target),
            Half::Column => (&mut buf.target, &mut buf.source),
        };
        for (s, (&v, &b)) in other
            .scaling
            .iter_mut()
            .zip(other.pot.iter().zip(other.bar.iter()))
        {
            *s = F::from_f64((v - b) * ctx.inv_eps);
        }
        exp_in_place(other.scaling);
        for (s, &w) in other.scaling.iter_mut().zip(other_side.w) {
            *s *= w;
        }
        let (scaling, bar) = (&*other.scaling, &*this.bar);
        let (this_cloud, other_cloud) = (this_side.cloud, other_side.cloud);
        let (inv_eps, kernel_inv_eps) = (ctx.inv_eps, ctx.kernel_inv_eps);
        let threshold = F::MIN_POSITIVE.sqrt();
        // `(l_k, mark_k)` from the kernel product `s` of point `k`.
        let settle = |k: usize, s: F| {
            if s >= threshold && s.is_finite() {
                (s.to_f64().ln() - bar[k] * inv_eps, F::ZERO)
            } else {
                let l = other_cloud.lse(this_cloud.point(k), scaled, kernel_inv_eps);
                (center + l, F::ONE)
            }
        };
        let m = ctx.target.cloud.count;
        match half {
            // Rows of K against the target's scalings.
            Half::Row => for_each_chunk2(this.lse, 1, this.mark, 1, |i, l, mk| {
                (l[0], mk[0]) = settle(i, dot(&kernel[i * m..][..m], scaling));
            }),
            // Columns of K against the source's scalings, a tile at a time.
            Half::Column => for_each_chunk2(this.lse, TILE, this.mark, TILE, |blk, ls, mks| {
                let j0 = blk * TILE;
                let len = ls.len();
                let mut acc = [F::ZERO; TILE];
                let acc = &mut acc[..len];
                for (i, &u) in scaling.iter().enumerate() {
                    axpy(acc, u, &kernel[i * m + j0..][..len]);
                }
                for t in 0..len {
                    (ls[t], mks[t]) = settle(j0 + t, acc[t]);
                }
            }),
        }
        this.mark
            .iter()
            .zip(this_side.w)
            .any(|(&mk, &w)| mk > F::ZERO && w > F::ZERO)
    }

    /// The row half-step of an absorbing iteration (dense mode): rebuilds
    /// the stored kernel at the current `g` with the row update folded in,
    /// `K_ij = e^{(f̄_i + g_j − C_ij)/ε}` with `f̄_i` the new `f_i` (its
    /// exponent clamped around the row's maximum), and writes the row
    /// log-sums and the absorbed potentials `f̄`, `ḡ` (`g` as the kernel's
    /// `F` values of `g/ε` hold it). Returns whether
    /// it did: false in online mode (no stored kernel).
    fn absorb(&self, buf: &mut Buffers<'_, F>) -> bool {
        let Some(kernel) = buf.kernel.as_deref_mut() else {
            return false;
        };
        let ctx = &self.ctx;
        let (xs, ys, b) = (ctx.source.cloud, ctx.target.cloud, ctx.target.w);
        let m = ys.count;
        let (eps, inv_eps, kernel_inv_eps) = (ctx.eps, ctx.inv_eps, ctx.kernel_inv_eps);
        let ka = ctx.source.damping(eps);
        // `g/ε` as the kernel's `F` values; `ḡ` is what they hold exactly.
        let wpot = &mut *buf.target.scaling;
        for ((q, gb), &gv) in wpot
            .iter_mut()
            .zip(buf.target.bar.iter_mut())
            .zip(&*buf.target.pot)
        {
            *q = F::from_f64(gv * inv_eps);
            *gb = q.to_f64() * eps;
        }
        let wpot = &*wpot;
        let (lr, fbar) = (&mut *buf.source.lse, &mut *buf.source.bar);
        for_each_chunk3((kernel, m), (lr, 1), (fbar, 1), |i, row, l, fb| {
            ys.fill_w(xs.point(i), 0, wpot, kernel_inv_eps, row);
            let top = max(row);
            row.iter_mut().for_each(|w| *w -= top);
            exp_in_place(row);
            l[0] = top.to_f64() + dot(row, b).to_f64().ln();
            let fi = ka * (-eps * l[0]);
            let shift = F::from_f64((top.to_f64() + fi * inv_eps).clamp(-ROW_CLAMP, ROW_CLAMP));
            let scale = shift.exp();
            row.iter_mut().for_each(|w| *w *= scale);
            fb[0] = eps * (shift.to_f64() - top.to_f64());
        });
        true
    }

    /// The half-step's update of its potential from its log-sums:
    /// `pot = ρ/(ρ+ε)·(−ε·l)`, with the translation step unless
    /// `absorbing`, then the tracked pairs' bounded entries.
    fn update(&self, half: Half, absorbing: bool, buf: &mut Buffers<'_, F>) {
        let ctx = &self.ctx;
        let eps = ctx.eps;
        let damping = ctx.sides(half).0.damping(eps);
        let (scaled, center, tmp) = (&*buf.scaled, buf.center, &mut *buf.tmp);
        let (this, other) = match half {
            Half::Row => (&mut buf.source, &mut buf.target),
            Half::Column => (&mut buf.target, &mut buf.source),
        };
        if self.translate && !absorbing {
            let lam = translation(ctx, half, this.lse, other.pot, tmp);
            for (v, &l) in this.pot.iter_mut().zip(&*this.lse) {
                *v = damping * (-eps * l + lam);
            }
            other.pot.iter_mut().for_each(|v| *v -= lam);
        } else {
            for (v, &l) in this.pot.iter_mut().zip(&*this.lse) {
                *v = damping * (-eps * l);
            }
        }
        if let Some(pairs) = self.pairs {
            bound_potentials(ctx, half, pairs, this.pot, other.pot, (scaled, center));
        }
    }

    /// The relative marginal error `‖Πᵀ1 − b·e^{−g/ρ_b}‖₁ / Σ Π` at
    /// `(f, g)` (the row term is zero after a row half-step), from the
    /// column log-sums. Each term is `b_j e^{−g_j/ρ_b}·|e^{δ_j} − 1|` with
    /// `δ_j = ln(Πᵀ1)_j − ln b_j + g_j/ρ_b` formed in `f64`, so it keeps
    /// its relative precision as `δ → 0`.
    fn marginal_error(&self, buf: &mut Buffers<'_, F>) -> f64 {
        let ctx = &self.ctx;
        let target = &ctx.target;
        let c = inv(target.rho);
        let (g, lse, diff) = (&*buf.target.pot, &*buf.target.lse, &mut *buf.tmp);
        let mut mass = 0.0;
        for ((dv, &gv), (&l, &w)) in diff.iter_mut().zip(g).zip(lse.iter().zip(target.w)) {
            let want = w.to_f64() * (-gv * c).exp();
            *dv = want * (gv * (ctx.inv_eps + c) + l).exp_m1();
            mass += want + *dv;
        }
        if let Some(pairs) = self.pairs {
            for (j, extra) in pair_masses(ctx, pairs, buf.source.pot, g) {
                diff[j] += extra;
                mass += extra;
            }
        }
        diff[..g.len()].iter().map(|v| v.abs()).sum::<f64>() / mass
    }
}

/// The Séjourné–Vialard–Peyré shift after a half-step on "self" (the
/// updated side, log-sums `l_self`; `other` the other side's potential):
/// with `h = −ε·l_self`, the λ maximising the dual along
/// `(h + λ)·ρ/(ρ+ε)`, `other − λ`: `λ = (ln Σ w e^{−h/(ρ_s+ε)} −
/// ln Σ w' e^{−other/ρ_o}) / (1/ρ_o + 1/(ρ_s+ε))`. `tmp`: `max(n, m)`.
fn translation<F: Float>(
    ctx: &Ctx<'_, F>,
    half: Half,
    l_self: &[f64],
    other: &[f64],
    tmp: &mut [f64],
) -> f64 {
    let (this, that) = ctx.sides(half);
    let eps = ctx.eps;
    let c_self = eps * inv(this.rho + eps);
    let t = &mut tmp[..l_self.len()];
    for (v, (&l, &lw)) in t.iter_mut().zip(l_self.iter().zip(this.log_w)) {
        *v = lw + c_self * l;
    }
    let a = log_sum_exp(t);
    let c_other = inv(that.rho);
    let t = &mut tmp[..other.len()];
    for (v, (&o, &lw)) in t.iter_mut().zip(other.iter().zip(that.log_w)) {
        *v = lw - c_other * o;
    }
    let b = log_sum_exp(t);
    let lam = (a - b) / (c_other + inv(this.rho + eps));
    if lam.is_finite() { lam } else { 0.0 }
}
