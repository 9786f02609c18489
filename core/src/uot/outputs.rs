//! What a solve writes at the final potentials: the marginals `Π1` and
//! `Πᵀ1`, the barycentric targets and teacher velocities (softmax-weighted
//! means of the target points), the plan, and the objective and dual of
//! the report.

use super::kernel::{Ctx, Half};
use super::problem::{Pairs, UotOutput, UotReport};
use super::tracks::{pair_entry, pair_masses};
use crate::error::{Error, ErrorKind, Result};
use crate::fastmath::exp_in_place;
use crate::float::Float;
use crate::par::{for_each_chunk, for_each_chunk2};

/// The final potentials and the scratch vectors [`finish`] reuses from the
/// iterations.
pub(super) struct Scratch<'a, F> {
    /// `f` (`n`).
    pub f: &'a [f64],
    /// `g` (`m`).
    pub g: &'a [f64],
    /// `max(n, m)`.
    pub scaled: &'a mut [F],
    /// `n`.
    pub source_lse: &'a mut [f64],
    /// `m`.
    pub target_lse: &'a mut [f64],
}

/// Writes masses, barycentres, velocities (frame gap `h`) and the plan at
/// the potentials `s.f`, `s.g` (at `ctx.eps`), and fills the report's
/// objective, dual, gap and total mass.
pub(super) fn finish<F: Float>(
    ctx: &Ctx<'_, F>,
    pairs: Option<&Pairs<'_, F>>,
    h: F,
    out: &mut UotOutput<'_, F>,
    mut s: Scratch<'_, F>,
    mut report: UotReport<F>,
) -> Result<UotReport<F>> {
    let m = ctx.target.cloud.count;
    let (f, g) = (s.f, s.g);
    // Leaves the target's scaled potential in `s.scaled`.
    let center = masses_and_means(ctx, pairs, out, &mut s);
    if let (Some(bc), Some(v)) = (out.barycenter.as_deref(), out.velocity.as_deref_mut()) {
        v.copy_from_slice(bc);
    }
    if let Some(v) = out.velocity.as_deref_mut() {
        let inv_h = F::ONE / h;
        for (vv, &x) in v.iter_mut().zip(ctx.source.cloud.rows) {
            *vv = (*vv - x) * inv_h;
        }
    }
    if let Some(plan) = out.plan.as_deref_mut() {
        write_plan(ctx, f, (&s.scaled[..m], center), plan);
    }
    // Pairs: masses of the bounded entries, and Σ ℓ·μ of the active ones.
    let mut bound_term = 0.0f64;
    if let Some(pairs) = pairs {
        for (j, extra) in pair_masses(ctx, pairs, f, g) {
            out.col_mass[j] += F::from_f64(extra);
        }
        for pr in pairs.iter() {
            let (log_gibbs, entry) = pair_entry(ctx, f, g, &pr);
            if let Some(plan) = out.plan.as_deref_mut() {
                plan[pr.i * m + pr.j] = F::from_f64(entry);
            }
            let log_bound = pr.bound.to_f64().ln();
            if pr.bound > F::ZERO && log_bound > log_gibbs {
                bound_term += pr.bound.to_f64() * ctx.eps * (log_bound - log_gibbs);
            }
        }
    }
    let (objective, dual, mass) = objective_and_dual(ctx, out, f, g, bound_term);
    report.objective = F::from_f64(objective);
    report.dual = F::from_f64(dual);
    report.gap = F::from_f64(objective - dual);
    report.total_mass = F::from_f64(mass);
    if !(objective.is_finite() && mass.is_finite()) {
        return Err(Error::new(
            ErrorKind::NumericalFailure,
            "epsilon",
            "the plan has a non-finite mass or objective",
        ));
    }
    Ok(report)
}

/// Column masses, then the row log-sums — through the weighted means of
/// the target points when barycentres or velocities are asked for (into
/// the barycentres if given, else the velocities), the tracked pairs'
/// bounds raising their entries — and the row masses. Leaves the target's
/// [`Ctx::scaled_potential`] in `s.scaled` and returns its center.
fn masses_and_means<F: Float>(
    ctx: &Ctx<'_, F>,
    pairs: Option<&Pairs<'_, F>>,
    out: &mut UotOutput<'_, F>,
    s: &mut Scratch<'_, F>,
) -> f64 {
    let (xs, ys, inv_eps) = (ctx.source.cloud, ctx.target.cloud, ctx.kernel_inv_eps);
    let d = xs.d;
    let (f, g) = (s.f, s.g);
    let center = ctx.scaled_potential(&ctx.source, f, s.scaled);
    ctx.point_log_sums(Half::Column, s.scaled, center, s.target_lse);
    ctx.masses(&ctx.target, g, s.target_lse, out.col_mass);
    let center = ctx.scaled_potential(&ctx.target, g, s.scaled);
    let pot = &s.scaled[..ys.count];
    let means = match (out.barycenter.as_deref_mut(), out.velocity.as_deref_mut()) {
        (Some(bc), _) => Some(bc),
        (None, Some(v)) => Some(v),
        (None, None) => None,
    };
    match means {
        Some(mean) => {
            for_each_chunk2(s.source_lse, 1, mean, d, |i, l, row| {
                l[0] = center + ys.weighted_mean(xs.point(i), pot, inv_eps, None, row);
            });
            if let Some(pairs) = pairs {
                for pr in pairs.iter().filter(|pr| pr.bound > F::ZERO) {
                    let floor = pr.bound.to_f64().ln()
                        - ctx.source.log_w[pr.i]
                        - f[pr.i] * ctx.inv_eps
                        - center;
                    s.source_lse[pr.i] = center
                        + ys.weighted_mean(
                            xs.point(pr.i),
                            pot,
                            inv_eps,
                            Some((pr.j, F::from_f64(floor))),
                            &mut mean[pr.i * d..][..d],
                        );
                }
            }
        }
        None => ctx.point_log_sums(Half::Row, pot, center, s.source_lse),
    }
    ctx.masses(&ctx.source, f, s.source_lse, out.row_mass);
    center
}

/// The Gibbs plan `Π_ij = e^{ln a_i + f_i/ε + scaled_j − C_ij/ε}` (`n×m`)
/// with `(scaled, center)` the target's [`Ctx::scaled_potential`] (the
/// caller writes the tracked pairs' entries over it).
fn write_plan<F: Float>(
    ctx: &Ctx<'_, F>,
    f: &[f64],
    (scaled, center): (&[F], f64),
    plan: &mut [F],
) {
    let (xs, ys) = (ctx.source.cloud, ctx.target.cloud);
    let la = ctx.source.log_w;
    for_each_chunk(plan, ys.count, |i, row| {
        ys.fill_w(xs.point(i), 0, scaled, ctx.kernel_inv_eps, row);
        let shift = F::from_f64(la[i] + f[i] * ctx.inv_eps + center);
        row.iter_mut().for_each(|w| *w += shift);
        exp_in_place(row);
    });
}

/// The primal objective, the dual value and the total mass, summed in
/// f64, with `bound_term = Σ ℓ·μ` of the active bounds.
fn objective_and_dual<F: Float>(
    ctx: &Ctx<'_, F>,
    out: &UotOutput<'_, F>,
    f: &[f64],
    g: &[f64],
    bound_term: f64,
) -> (f64, f64, f64) {
    let (a, b) = (ctx.source.w, ctx.target.w);
    let eps = ctx.eps;
    let sum_a: f64 = a.iter().map(|v| v.to_f64()).sum();
    let sum_b: f64 = b.iter().map(|v| v.to_f64()).sum();
    let mass: f64 = out.row_mass.iter().map(|v| v.to_f64()).sum();
    let rf: f64 = out
        .row_mass
        .iter()
        .zip(f)
        .map(|(r, v)| r.to_f64() * v)
        .sum();
    let cg: f64 = out
        .col_mass
        .iter()
        .zip(g)
        .map(|(c, v)| c.to_f64() * v)
        .sum();
    let kl = |r: &[F], w: &[F]| -> f64 {
        r.iter()
            .zip(w)
            .map(|(&r, &w)| {
                let (r, w) = (r.to_f64(), w.to_f64());
                if r > 0.0 { r * (r / w).ln() - r + w } else { w }
            })
            .sum()
    };
    let mut objective = rf + cg + bound_term - eps * mass + eps * sum_a * sum_b;
    let mut dual = bound_term - eps * (mass - sum_a * sum_b);
    for (rho, masses, w, pot) in [
        (ctx.source.rho, &*out.row_mass, a, f),
        (ctx.target.rho, &*out.col_mass, b, g),
    ] {
        if rho.is_finite() {
            objective += rho * kl(masses, w);
            dual += w
                .iter()
                .zip(pot)
                .map(|(w, v)| -rho * w.to_f64() * libm::expm1(-v / rho))
                .sum::<f64>();
        } else {
            dual += w.iter().zip(pot).map(|(w, v)| w.to_f64() * v).sum::<f64>();
        }
    }
    (objective, dual, mass)
}
