//! The Sinkhorn iterations (see the module docs): ε-scaling stages, each a
//! run of iterations of two half-steps. A half-step is written once for
//! either side ([`Half`]): its log-sums ([`Stage::log_sums`], the inner
//! loop: from the points, or from the stored kernel in dense mode), then
//! the update of its potential ([`Stage::update`]: damping, translation,
//! tracked pairs). The row half-step of an absorbing iteration rebuilds the
//! stored kernel instead ([`Stage::absorb`]); the column half-step's sums
//! also give the stopping error.

use super::kernel::{Ctx, Half, Side, TILE, axpy, inv, max, sum};
use super::problem::{Pairs, UotConfig, UotMode, UotOutput, UotReport};
use super::tracks::{add_pair_masses, bound_potentials};
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
    /// The half-step's log-sums `l_k = ln Σ_o w_o e^{(pot_o − C_ko)/ε}`.
    pub lse: &'a mut [F],
    /// Dense mode: the potential absorbed into the stored kernel.
    bar: &'a mut [F],
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
    /// Scratch (`max(n, m)`).
    tmp: &'a mut [F],
    /// Dense mode: the stored kernel `K_ij = e^{(f̄_i + ḡ_j − C_ij)/ε}`
    /// (`n×m`, row-major).
    kernel: Option<&'a mut [F]>,
}

impl<'a, F: Float> Buffers<'a, F> {
    /// The buffers from `arena` (what [`super::uot_workspace_len`] counts
    /// beyond the transposed clouds and the log-weights).
    pub fn carve(arena: &mut Arena<'a, F>, n: usize, m: usize, mode: UotMode) -> Result<Self> {
        let (lr, lc) = (arena.take(n)?, arena.take(m)?);
        let (fbar, gbar) = (arena.take(n)?, arena.take(m)?);
        let (su, sv) = (arena.take(n)?, arena.take(m)?);
        let scaled = arena.take(n.max(m))?;
        let tmp = arena.take(n.max(m))?;
        let (mark_r, mark_c) = (arena.take(n)?, arena.take(m)?);
        let kernel = match mode {
            UotMode::Dense => Some(arena.take(n * m)?),
            UotMode::Online => None,
        };
        Ok(Buffers {
            source: SideBuffers {
                lse: lr,
                bar: fbar,
                scaling: su,
                mark: mark_r,
            },
            target: SideBuffers {
                lse: lc,
                bar: gbar,
                scaling: sv,
                mark: mark_c,
            },
            scaled,
            tmp,
            kernel,
        })
    }
}

/// Runs the ε-scaling stages (none on a warm start, which is already near
/// the target ε's solution) and the final stage at `cfg.epsilon`, from the
/// potentials in `out.f`, `out.g`. Leaves the potentials in `out.f`,
/// `out.g` and the last column masses in `out.col_mass`; returns the
/// counters and the error (the report's other fields are zero).
pub(super) fn run<F: Float>(
    source: Side<'_, F>,
    target: Side<'_, F>,
    pairs: Option<&Pairs<'_, F>>,
    cfg: &UotConfig<F>,
    out: &mut UotOutput<'_, F>,
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
        let stage = Stage {
            ctx: Ctx::new(source, target, eps),
            pairs,
            translate: cfg.translation && pairs.is_none() && !balanced,
            tol: match (last, cfg.fixed_iterations) {
                (true, true) => None,
                (true, false) => Some(cfg.tol),
                (false, _) => Some(cfg.tol.max(F::from_f64(1e-3))),
            },
            max_iter: cfg.max_iter,
        };
        if !stage.run(out, buf, &mut report)? {
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

/// The potentials of a half-step's two sides: `(updated, other)`.
fn potentials<'s, F>(half: Half, out: &'s mut UotOutput<'_, F>) -> (&'s mut [F], &'s mut [F]) {
    match half {
        Half::Row => (&mut *out.f, &mut *out.g),
        Half::Column => (&mut *out.g, &mut *out.f),
    }
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
    tol: Option<F>,
    max_iter: u32,
}

impl<F: Float> Stage<'_, F> {
    /// Iterates until the marginal error meets the stage's tolerance
    /// (`Ok(true)`) or the iteration count reaches the cap (`Ok(false)`).
    fn run(
        &self,
        out: &mut UotOutput<'_, F>,
        buf: &mut Buffers<'_, F>,
        report: &mut UotReport<F>,
    ) -> Result<bool> {
        let ctx = &self.ctx;
        // Dense mode: a new ε needs a new kernel.
        let mut absorb = true;
        loop {
            if report.iterations >= self.max_iter {
                return Ok(false);
            }
            report.iterations += 1;
            // Row half-step.
            ctx.scaled_potential(&ctx.target, out.g, buf.scaled);
            let absorbing = absorb && self.absorb(out.g, buf);
            if absorbing {
                report.absorptions += 1;
                absorb = false;
            } else if self.log_sums(Half::Row, out, buf) {
                absorb = true;
            }
            self.update(Half::Row, absorbing, out, buf);
            // Column half-step; its sums give the stopping error.
            ctx.scaled_potential(&ctx.source, out.f, buf.scaled);
            if self.log_sums(Half::Column, out, buf) {
                absorb = true;
            }
            let error = self.marginal_error(out, buf);
            report.marginal_error = error;
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
            self.update(Half::Column, absorbing, out, buf);
            if buf.kernel.is_some()
                && (self.far(out.f, buf.source.bar) || self.far(out.g, buf.target.bar))
            {
                absorb = true;
            }
        }
    }

    /// Whether a potential is [`ABSORB_AFTER`]·ε or more from its absorbed
    /// value anywhere (NaN counts as far).
    fn far(&self, pot: &[F], bar: &[F]) -> bool {
        let tau = F::from_f64(ABSORB_AFTER);
        pot.iter().zip(bar).any(|(&a, &b)| {
            ((a - b).abs() * self.ctx.inv_eps).partial_cmp(&tau) != Some(core::cmp::Ordering::Less)
        })
    }

    /// The half-step's inner loop: the log-sums `l_k` of every point of
    /// the updated side into its `lse`, over the other side's
    /// [`Ctx::scaled_potential`] in `buf.scaled`. From the stored kernel in
    /// dense mode (one product per point, no exponentials; a sum that
    /// underflows is recomputed from the points and marked), else from the
    /// points ([`Ctx::point_log_sums`]). Returns whether a marked point has
    /// positive weight: the kernel then needs re-absorbing.
    fn log_sums(&self, half: Half, out: &mut UotOutput<'_, F>, buf: &mut Buffers<'_, F>) -> bool {
        let ctx = &self.ctx;
        let (this_side, other_side) = ctx.sides(half);
        let (this, other) = match half {
            Half::Row => (&mut buf.source, &mut buf.target),
            Half::Column => (&mut buf.target, &mut buf.source),
        };
        let Some(kernel) = buf.kernel.as_deref() else {
            ctx.point_log_sums(half, buf.scaled, this.lse);
            return false;
        };
        let (_, other_pot) = potentials(half, out);
        for (s, (&v, &b)) in other
            .scaling
            .iter_mut()
            .zip(other_pot.iter().zip(other.bar.iter()))
        {
            *s = (v - b) * ctx.inv_eps;
        }
        exp_in_place(other.scaling);
        for (s, &w) in other.scaling.iter_mut().zip(other_side.w) {
            *s *= w;
        }
        let (scaling, bar, scaled) = (&*other.scaling, &*this.bar, &*buf.scaled);
        let (this_cloud, other_cloud, inv_eps) = (this_side.cloud, other_side.cloud, ctx.inv_eps);
        let threshold = F::MIN_POSITIVE.sqrt();
        // `(l_k, mark_k)` from the kernel product `s` of point `k`.
        let settle = |k: usize, s: F| {
            if s >= threshold && s.is_finite() {
                (s.ln() - bar[k] * inv_eps, F::ZERO)
            } else {
                (
                    other_cloud.lse(this_cloud.point(k), scaled, inv_eps),
                    F::ONE,
                )
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
    /// log-sums and the absorbed potentials `f̄`, `ḡ = g`. Returns whether
    /// it did: false in online mode (no stored kernel).
    fn absorb(&self, g: &[F], buf: &mut Buffers<'_, F>) -> bool {
        let Some(kernel) = buf.kernel.as_deref_mut() else {
            return false;
        };
        let ctx = &self.ctx;
        let (xs, ys, b) = (ctx.source.cloud, ctx.target.cloud, ctx.target.w);
        let m = ys.count;
        let (eps, inv_eps) = (ctx.eps, ctx.inv_eps);
        let ka = ctx.source.damping(eps);
        let clamp = F::from_f64(ROW_CLAMP);
        for (q, &gv) in buf.tmp.iter_mut().zip(g) {
            *q = gv * inv_eps;
        }
        buf.target.bar.copy_from_slice(g);
        let wpot = &buf.tmp[..m];
        let (lr, fbar) = (&mut *buf.source.lse, &mut *buf.source.bar);
        for_each_chunk3((kernel, m), (lr, 1), (fbar, 1), |i, row, l, fb| {
            ys.fill_w(xs.point(i), 0, wpot, inv_eps, row);
            let top = max(row);
            row.iter_mut().for_each(|w| *w -= top);
            exp_in_place(row);
            l[0] = top + dot(row, b).ln();
            let fi = ka * (-eps * l[0]);
            let shift = (top + fi * inv_eps).max(-clamp).min(clamp);
            let scale = shift.exp();
            row.iter_mut().for_each(|w| *w *= scale);
            fb[0] = eps * (shift - top);
        });
        true
    }

    /// The half-step's update of its potential from its log-sums:
    /// `pot = ρ/(ρ+ε)·(−ε·l)`, with the translation step unless
    /// `absorbing`, then the tracked pairs' bounded entries.
    fn update(
        &self,
        half: Half,
        absorbing: bool,
        out: &mut UotOutput<'_, F>,
        buf: &mut Buffers<'_, F>,
    ) {
        let ctx = &self.ctx;
        let eps = ctx.eps;
        let damping = ctx.sides(half).0.damping(eps);
        let lse = match half {
            Half::Row => &*buf.source.lse,
            Half::Column => &*buf.target.lse,
        };
        let (this_pot, other_pot) = potentials(half, out);
        if self.translate && !absorbing {
            let lam = translation(ctx, half, lse, other_pot, buf.tmp);
            for (v, &l) in this_pot.iter_mut().zip(lse) {
                *v = damping * (-eps * l + lam);
            }
            other_pot.iter_mut().for_each(|v| *v -= lam);
        } else {
            for (v, &l) in this_pot.iter_mut().zip(lse) {
                *v = damping * (-eps * l);
            }
        }
        if let Some(pairs) = self.pairs {
            bound_potentials(ctx, half, pairs, this_pot, other_pot, buf.scaled);
        }
    }

    /// Column masses at `(f, g)` into `out.col_mass` and the relative
    /// marginal error `‖Πᵀ1 − b·e^{−g/ρ_b}‖₁ / Σ Π` (the row term is zero
    /// after a row half-step).
    fn marginal_error(&self, out: &mut UotOutput<'_, F>, buf: &mut Buffers<'_, F>) -> F {
        let ctx = &self.ctx;
        let target = &ctx.target;
        let col_mass = &mut *out.col_mass;
        ctx.masses(target, out.g, buf.target.lse, col_mass);
        if let Some(pairs) = self.pairs {
            add_pair_masses(ctx, pairs, out.f, out.g, col_mass);
        }
        let tmp = &mut buf.tmp[..out.g.len()];
        let c = inv(target.rho);
        for (v, &gv) in tmp.iter_mut().zip(out.g.iter()) {
            *v = -gv * c;
        }
        exp_in_place(tmp);
        let mut err = F::ZERO;
        for ((&cm, &e), &bv) in col_mass.iter().zip(tmp.iter()).zip(target.w) {
            err += (cm - bv * e).abs();
        }
        err / sum(col_mass)
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
    l_self: &[F],
    other: &[F],
    tmp: &mut [F],
) -> F {
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
    if lam.is_finite() { lam } else { F::ZERO }
}
