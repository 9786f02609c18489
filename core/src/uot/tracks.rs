//! The self-edge lower bound on tracked pairs (see the module docs): the
//! exact one-entry update of a bounded pair's potential after each
//! half-step, and a bounded entry of the plan at the potentials.

use super::kernel::{Ctx, Half, inv};
use super::problem::{Pair, Pairs};
use crate::float::Float;
use crate::linalg::squared_distance;

/// One side's exact update with a lower bound on one of its entries:
/// solves for `u = f_i/ε` in `e^u·S + max(ℓ', e^u·G) = e^{−κu}` where
/// `ln S = log_s` (the other entries), `ln G = log_g`, `ln ℓ' = log_l`,
/// `κ = ε/ρ`. Returns `u` (the unconstrained `−ln(S+G)/(1+κ)` when the bound
/// is inactive).
fn bounded_update<F: Float>(log_s: F, log_g: F, log_l: F, kappa: F) -> F {
    let top = log_s.max(log_g);
    let lse = top + ((log_s - top).exp() + (log_g - top).exp()).ln();
    let u_free = -lse / (F::ONE + kappa);
    if u_free + log_g >= log_l {
        return u_free;
    }
    let fallback = log_l - log_g;
    if kappa == F::ZERO {
        // e^u·S + ℓ' = 1.
        let u = (-log_l.exp_m1()).ln() - log_s;
        return if u.is_finite() {
            u.min(u_free)
        } else {
            fallback.min(u_free)
        };
    }
    // ψ(u) = ln(e^{u + ln S} + ℓ') + κu is convex and increasing, ψ(u_free) ≥ 0:
    // Newton from the right converges monotonically.
    let mut u = u_free;
    for _ in 0..100 {
        let s = u + log_s;
        let top = s.max(log_l);
        let lse2 = top + ((s - top).exp() + (log_l - top).exp()).ln();
        let psi = lse2 + kappa * u;
        let slope = (s - lse2).exp() + kappa;
        let step = psi / slope;
        if !step.is_finite() {
            break;
        }
        u -= step;
        if step.abs() <= F::EPSILON * F::from_f64(4.0) * (F::ONE + u.abs()) {
            break;
        }
    }
    u
}

/// After a half-step's update of `this_pot` (the updated side's potential,
/// `other_pot` the other's): each pair with a positive bound gets the
/// exact update of its entry of `this_pot` under `Π_ij ≥ ℓ_ij`
/// ([`bounded_update`]). `(scaled, center)` is the other side's
/// [`Ctx::scaled_potential`] the half-step summed over.
pub(super) fn bound_potentials<F: Float>(
    ctx: &Ctx<'_, F>,
    half: Half,
    pairs: &Pairs<'_, F>,
    this_pot: &mut [f64],
    other_pot: &[f64],
    (scaled, center): (&[F], f64),
) {
    let (this, other) = ctx.sides(half);
    let kappa = ctx.eps * inv(this.rho);
    let scaled = &scaled[..other.cloud.count];
    for pr in pairs.iter() {
        if pr.bound > F::ZERO {
            let (s, o) = half.ends(pr.i, pr.j);
            let c = squared_distance(this.cloud.point(s), other.cloud.point(o)).to_f64();
            let log_g = other.log_w[o] + (other_pot[o] - c) * ctx.inv_eps;
            let log_l = pr.bound.to_f64().ln() - this.log_w[s];
            let log_s = center
                + other
                    .cloud
                    .lse_excluding(this.cloud.point(s), scaled, ctx.kernel_inv_eps, o);
            this_pot[s] = ctx.eps * bounded_update(log_s, log_g, log_l, kappa);
        }
    }
}

/// `Π_ij` of a tracked pair at the potentials: `(ln Gibbs_ij, max(ℓ, Gibbs))`.
pub(super) fn pair_entry<F: Float>(
    ctx: &Ctx<'_, F>,
    f: &[f64],
    g: &[f64],
    pr: &Pair<F>,
) -> (f64, f64) {
    let c = squared_distance(ctx.source.cloud.point(pr.i), ctx.target.cloud.point(pr.j)).to_f64();
    let log_gibbs =
        ctx.source.log_w[pr.i] + ctx.target.log_w[pr.j] + (f[pr.i] + g[pr.j] - c) * ctx.inv_eps;
    (log_gibbs, log_gibbs.exp().max(pr.bound.to_f64()))
}

/// What the bounded entries add to the Gibbs plan's `Πᵀ1`: `(j, max(ℓ,
/// Gibbs) − Gibbs)` for each pair.
pub(super) fn pair_masses<'p, F: Float>(
    ctx: &'p Ctx<'_, F>,
    pairs: &'p Pairs<'_, F>,
    f: &'p [f64],
    g: &'p [f64],
) -> impl Iterator<Item = (usize, f64)> + 'p {
    pairs.iter().map(move |pr| {
        let (log_gibbs, entry) = pair_entry(ctx, f, g, &pr);
        (pr.j, entry - log_gibbs.exp())
    })
}
