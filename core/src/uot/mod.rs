//! Unbalanced optimal transport between two point clouds by Sinkhorn
//! iterations: the teacher of the drift (plan `Π`, row masses, velocities).
//!
//! ## The problem (our convention)
//!
//! ```text
//! min_{Π ≥ 0} ⟨C, Π⟩ + ε·KL(Π | a⊗b) + ρ_a·KL(Π1 | a) + ρ_b·KL(Πᵀ1 | b)
//! C_ij = ‖x_i − y_j‖²   (full squared Euclidean: no ½, not normalised)
//! KL(p | q) = Σ p·ln(p/q) − p + q   (generalised KL, mass terms included)
//! ```
//!
//! `ε` and `ρ` are absolute (cost units); `ρ = ∞` makes that marginal a hard
//! constraint (both infinite: balanced OT, which needs `Σa = Σb`); `ρ_a ≠ ρ_b`
//! is allowed. POT's `ot.sinkhorn_unbalanced(..., reg_type='kl')` solves the
//! same problem (`reg_m = (ρ_a, ρ_b)`); OTT-JAX uses the reference `1⊗1`
//! (a different unbalanced plan) and GeomLoss halves the cost (`blur² = ε`,
//! `reach² = ρ` after conversion). [`median_sq_distance`] helps give `ε`
//! relative to the data's scale.
//!
//! The optimum has the Gibbs form `Π_ij = a_i b_j e^{(f_i + g_j − C_ij)/ε}`
//! with dual potentials `f` (length `n`) and `g` (length `m`), which the
//! solver returns and accepts back for warm starts.
//!
//! ## Known tracks (self-edge lower bound)
//!
//! Pairs `(i, j)` known to be the same object in both clouds can carry a
//! bound `ℓ_ij` (default `β·min(a_i, b_j)`, `β ∈ [0, 1]`, or one bound per
//! pair); the plan then solves the same problem subject to `Π_ij ≥ ℓ_ij`,
//! whose optimum is `Π_ij = max(ℓ_ij, Gibbs_ij)` on the pairs and the Gibbs
//! form elsewhere. A pair's source and target must each occur in one pair only
//! (a track links one observation to one). `β = 0` gives the plain plan.
//!
//! ## Algorithm
//!
//! Alternating exact maximisation of the dual, in the log domain: each
//! half-step is a streaming log-sum-exp per row (column) of
//! `ln b_j + (g_j − C_ij)/ε`, then `f = ρ_a/(ρ_a+ε) · (−ε·LSE)`; this stays
//! finite in `f32` down to `ε ≈ 1e-3 ×` the median squared distance.
//! Each half-step is followed by the translation step of Séjourné, Vialard &
//! Peyré (2022) (the optimal common shift `f + λ`, `g − λ`), which removes the
//! slow mode of unbalanced Sinkhorn when `ρ` is large (not used with tracks).
//! Optional ε-scaling runs stages at `4^s·ε` down to `ε`.
//!
//! - [`UotMode::Online`]: costs are recomputed from point differences in
//!   tiles (O((n + m)·d) memory). One exponential per pair per half-step.
//! - [`UotMode::Dense`]: stores the kernel `K_ij = e^{(f̄_i + ḡ_j − C_ij)/ε}`
//!   (`n·m` workspace) at absorbed potentials `f̄, ḡ` and iterates on scaling
//!   vectors (two matrix–vector products per iteration, no exponentials);
//!   when the scalings leave `[e^{−20}, e^{20}]` (or a row/column sum
//!   underflows) the next half-step is a log-domain step from the points that
//!   re-absorbs. Both modes converge to the same plan.
//!
//! The stopping error is `‖Π1 − a·e^{−f/ρ_a}‖₁ + ‖Πᵀ1 − b·e^{−g/ρ_b}‖₁`
//! relative to the total mass; after the row half-step the first term is zero
//! by construction, and the second comes for free from the column pass, so it
//! is checked every iteration.
//!
//! ## Precision
//!
//! The per-pair work (costs, exponentials, kernel products) runs in `F`;
//! the potentials, log-sums, masses, translation and stopping error are
//! `f64` whatever `F` is. An `f32` potential holds `f/ε` only to about
//! `|f/ε|·6e-8`, which puts a floor near 1e-6 under the marginal error when
//! potentials are large; kept in `f64`, the iterations settle on a fixed
//! point of the `f32` kernel's map and the error keeps falling (to ~1e-7 and
//! below), so an `f32` solve reaches a 1e-6 tolerance whenever Sinkhorn
//! converges. The `f32` kernel's rounding perturbs the plan itself by about
//! 1e-6 relative; an `F = f64` solve removes that too.
//!
//! With the `std` feature rows and column blocks run on rayon's pool; the
//! results are bit-identical for every thread count.
//!
//! ## Files
//!
//! - `problem`: the problem's data, settings, outputs and report, every
//!   check made where they enter, and [`median_sq_distance`].
//! - `sinkhorn`: the iterations — ε-scaling stages, one half-step written
//!   for either side (its log-sums, the inner loop, then its potential's
//!   update), the stopping error, the dense kernel's absorption.
//! - `tracks`: the self-edge bound's exact updates and bounded entries.
//! - `outputs`: masses, barycentres, velocities, plan, objective and dual.
//! - `kernel`: the Gibbs kernel evaluated from the points (one point
//!   against a cloud, one side against the other).

mod kernel;
mod outputs;
mod problem;
mod sinkhorn;
mod tracks;

pub use problem::{
    MEDIAN_SAMPLE, TrackBound, Tracks, UotConfig, UotMode, UotOutput, UotProblem, UotReport,
    median_sq_distance, median_sq_distance_workspace_len, uot_workspace_len,
};

use crate::error::{Arena, Result};
use crate::float::Float;
use kernel::{Cloud, Ctx, Side};
use problem::{Pairs, take_wide};
use sinkhorn::Buffers;

/// Solves the problem; see the module docs. Writes `out` (also when the
/// tolerance is not met: check the report). Workspace: at least
/// [`uot_workspace_len`]`(n, m, d, cfg.mode)` elements.
pub fn solve_uot<F: Float>(
    p: &UotProblem<'_, F>,
    cfg: &UotConfig<F>,
    out: &mut UotOutput<'_, F>,
    workspace: &mut [F],
) -> Result<UotReport<F>> {
    let pair_count = problem::prepare(p, cfg, out, workspace.len())?;
    let (n, m, d) = (p.n, p.m, p.d);
    let mut arena = Arena::new(workspace);
    let mut wide = Arena::new(take_wide(&mut arena, n + m + sinkhorn::wide_len(n, m))?);
    let xs = Cloud::transposed(p.x, n, d, arena.take(d * n)?);
    let ys = Cloud::transposed(p.y, m, d, arena.take(d * m)?);
    let source = Side {
        cloud: xs,
        w: p.a,
        log_w: log_weights(p.a, wide.take(n)?),
        rho: cfg.rho_source.to_f64(),
    };
    let target = Side {
        cloud: ys,
        w: p.b,
        log_w: log_weights(p.b, wide.take(m)?),
        rho: cfg.rho_target.to_f64(),
    };
    let mut buf = Buffers::carve(&mut arena, &mut wide, n, m, cfg.mode)?;
    widen(out.f, buf.source.pot);
    widen(out.g, buf.target.pot);
    let pairs = Pairs::constraining(p.tracks, p.a, p.b, pair_count);
    let report = sinkhorn::run(source, target, pairs.as_ref(), cfg, &mut buf)?;
    narrow(buf.source.pot, out.f);
    narrow(buf.target.pot, out.g);
    let scratch = outputs::Scratch {
        f: buf.source.pot,
        g: buf.target.pot,
        scaled: buf.scaled,
        source_lse: buf.source.lse,
        target_lse: buf.target.lse,
    };
    let ctx = Ctx::new(source, target, cfg.epsilon);
    outputs::finish(&ctx, pairs.as_ref(), cfg.h, out, scratch, report)
}

/// `ln w` into `out`.
fn log_weights<'a, F: Float>(w: &[F], out: &'a mut [f64]) -> &'a [f64] {
    for (l, &v) in out.iter_mut().zip(w) {
        *l = v.to_f64().ln();
    }
    out
}

fn widen<F: Float>(v: &[F], out: &mut [f64]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o = x.to_f64();
    }
}

fn narrow<F: Float>(v: &[f64], out: &mut [F]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o = F::from_f64(x);
    }
}
