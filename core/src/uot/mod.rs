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
//! With the `std` feature rows and column blocks run on rayon's pool; the
//! results are bit-identical for every thread count.

mod kernel;

use crate::error::{Arena, Detail, Error, ErrorKind, Result, check_finite, check_len, checked_mul};
use crate::fastmath::{exp_in_place, log_sum_exp};
use crate::float::Float;
use crate::par::{for_each_chunk, for_each_chunk2, for_each_chunk3};
use kernel::{Cloud, TILE, axpy, dot, sq_dist, sum};

/// How the solver holds the costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UotMode {
    /// Stored `n·m` kernel, scaling-domain iterations with absorption.
    Dense,
    /// Costs recomputed from the points, O((n + m)·d) memory.
    Online,
}

/// The lower bound on tracked pairs.
#[derive(Clone, Copy, Debug)]
pub enum TrackBound<'a, F> {
    /// `ℓ_ij = β·min(a_i, b_j)` with `β ∈ [0, 1]`.
    Fraction(F),
    /// One bound per pair, each in `[0, min(a_i, b_j)]`.
    PerPair(&'a [F]),
}

/// Known tracks: `pairs` holds `(source i, target j)` as two `u32`s per pair
/// (0-based), each source and each target in at most one pair.
#[derive(Clone, Copy, Debug)]
pub struct Tracks<'a, F> {
    pub pairs: &'a [u32],
    pub bound: TrackBound<'a, F>,
}

/// The data of one problem. `x` is `n×d`, `y` is `m×d` (row-major), `a` and
/// `b` are nonnegative weights with positive sums (any total mass).
#[derive(Clone, Copy, Debug)]
pub struct UotProblem<'a, F> {
    pub x: &'a [F],
    pub y: &'a [F],
    pub a: &'a [F],
    pub b: &'a [F],
    pub n: usize,
    pub m: usize,
    pub d: usize,
    pub tracks: Option<Tracks<'a, F>>,
}

/// Solver settings. [`UotConfig::new`] gives the defaults.
#[derive(Clone, Copy, Debug)]
pub struct UotConfig<F> {
    /// Entropic regularisation ε > 0 (absolute, cost units).
    pub epsilon: F,
    /// Marginal penalty on the source side, > 0; `∞` = hard constraint.
    pub rho_source: F,
    /// Marginal penalty on the target side, > 0; `∞` = hard constraint.
    pub rho_target: F,
    /// Stop when the relative marginal error is at most this (> 0).
    pub tol: F,
    /// Iteration cap (all ε-scaling stages together), ≥ 1.
    pub max_iter: u32,
    /// Run exactly `max_iter` iterations (benchmarks); `converged` still
    /// reports whether the last checked error met `tol`.
    pub fixed_iterations: bool,
    pub mode: UotMode,
    /// Séjourné–Vialard–Peyré translation step (ignored with tracks or when
    /// both ρ are infinite).
    pub translation: bool,
    /// Extra ε-scaling stages at `4^s·ε`, `s = stages..1`, each run to a
    /// relative error of `max(tol, 1e-3)`; 0 = off. Skipped on warm starts.
    pub eps_scaling_stages: u32,
    /// Start from the potentials in the output's `f`, `g` (else from 0).
    pub warm_start: bool,
    /// Frame gap `h > 0` dividing the velocities.
    pub h: F,
}

impl<F: Float> UotConfig<F> {
    /// Balanced (ρ = ∞), tol 1e-5, 10 000 iterations, dense, translation on,
    /// no ε-scaling, cold start, h = 1.
    pub fn new(epsilon: F) -> Self {
        UotConfig {
            epsilon,
            rho_source: F::INFINITY,
            rho_target: F::INFINITY,
            tol: F::from_f64(1e-5),
            max_iter: 10_000,
            fixed_iterations: false,
            mode: UotMode::Dense,
            translation: true,
            eps_scaling_stages: 0,
            warm_start: false,
            h: F::ONE,
        }
    }
}

/// Where the solver writes. `f`, `g`, `row_mass`, `col_mass` are required;
/// the others are computed only when given. Shapes: `f`, `row_mass`: `n`;
/// `g`, `col_mass`: `m`; `velocity`, `barycenter`: `n×d`; `plan`: `n×m`.
#[derive(Debug)]
pub struct UotOutput<'a, F> {
    pub f: &'a mut [F],
    pub g: &'a mut [F],
    /// `r_i = Σ_j Π_ij`.
    pub row_mass: &'a mut [F],
    /// `Σ_i Π_ij`.
    pub col_mass: &'a mut [F],
    /// Teacher velocities `(Σ_j Π_ij y_j / r_i − x_i) / h`, computed as a
    /// softmax of `ln Π_i·`, so defined even where `r_i` underflows.
    pub velocity: Option<&'a mut [F]>,
    /// Barycentric targets `Σ_j Π_ij y_j / r_i`.
    pub barycenter: Option<&'a mut [F]>,
    pub plan: Option<&'a mut [F]>,
}

/// What a solve did. Never a silent wrong plan: check `converged` (or call
/// [`UotReport::ensure_converged`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UotReport<F> {
    pub iterations: u32,
    /// Relative marginal error at the last check.
    pub marginal_error: F,
    pub converged: bool,
    /// Primal objective (all terms; a hard marginal contributes 0).
    pub objective: F,
    /// Dual value at the returned potentials.
    pub dual: F,
    /// `objective − dual`.
    pub gap: F,
    /// `Σ_ij Π_ij`.
    pub total_mass: F,
    /// Log-domain re-absorptions of the dense kernel.
    pub absorptions: u32,
}

impl<F: Float> UotReport<F> {
    /// `Err(NotConverged)` when the tolerance was not met.
    pub fn ensure_converged(&self) -> Result<()> {
        if self.converged {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotConverged,
                "max_iter",
                "Sinkhorn hit the iteration cap before the tolerance",
            )
            .with(Detail::Value(self.marginal_error.to_f64())))
        }
    }
}

/// Workspace elements [`solve_uot`] needs.
pub fn uot_workspace_len(n: usize, m: usize, d: usize, mode: UotMode) -> usize {
    let k = n.max(m);
    let base = d * (n + m) + 6 * (n + m) + 2 * k;
    match mode {
        UotMode::Online => base,
        UotMode::Dense => base + n * m,
    }
}

/// Pairs at most this many are used exactly by [`median_sq_distance`].
pub const MEDIAN_SAMPLE: usize = 1 << 18;

/// Workspace elements [`median_sq_distance`] needs.
pub fn median_sq_distance_workspace_len(n: usize, m: usize) -> usize {
    n.saturating_mul(m).min(MEDIAN_SAMPLE)
}

/// Median of `‖x_i − y_j‖²` over all pairs (NumPy's convention: the mean
/// of the two middle values for an even count), for ε given relative to the
/// data's scale. Exact when `n·m ≤ MEDIAN_SAMPLE`; otherwise over the
/// evenly spaced pairs `k·(n·m)/MEDIAN_SAMPLE` (deterministic).
pub fn median_sq_distance<F: Float>(
    x: &[F],
    y: &[F],
    n: usize,
    m: usize,
    d: usize,
    workspace: &mut [F],
) -> Result<F> {
    check_dims(x, y, n, m, d)?;
    let total = checked_mul(n, m, "m")?;
    let count = total.min(MEDIAN_SAMPLE);
    let buf = Arena::new(workspace).take(count)?;
    for (k, v) in buf.iter_mut().enumerate() {
        let pair = if total <= MEDIAN_SAMPLE {
            k
        } else {
            ((k as u128 * total as u128) / count as u128) as usize
        };
        let (i, j) = (pair / m, pair % m);
        *v = sq_dist(&x[i * d..][..d], &y[j * d..][..d]);
    }
    let order = |p: &F, q: &F| p.partial_cmp(q).unwrap_or(core::cmp::Ordering::Equal);
    let mid = count / 2;
    let (low, upper, _) = buf.select_nth_unstable_by(mid, order);
    let upper = *upper;
    if count % 2 == 1 {
        Ok(upper)
    } else {
        let lower = low.iter().fold(F::NEG_INFINITY, |a, &v| a.max(v));
        Ok((lower + upper) * F::HALF)
    }
}

fn check_dims<F: Float>(x: &[F], y: &[F], n: usize, m: usize, d: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::bad_dim("n", "the source cloud is empty"));
    }
    if m == 0 {
        return Err(Error::bad_dim("m", "the target cloud is empty"));
    }
    if d == 0 {
        return Err(Error::bad_dim("d", "the dimension is zero"));
    }
    check_len(x, checked_mul(n, d, "x")?, "x")?;
    check_len(y, checked_mul(m, d, "y")?, "y")?;
    check_finite(x, "x")?;
    check_finite(y, "y")
}

fn check_weights<F: Float>(w: &[F], len: usize, arg: &'static str) -> Result<F> {
    check_len(w, len, arg)?;
    check_finite(w, arg)?;
    if let Some(i) = w.iter().position(|&v| v < F::ZERO) {
        return Err(Error::bad_config(arg, "weights must be nonnegative").with(Detail::Index(i)));
    }
    let total: F = w.iter().copied().sum();
    if total.partial_cmp(&F::ZERO) != Some(core::cmp::Ordering::Greater) || !total.is_finite() {
        return Err(Error::bad_config(
            arg,
            "weights must have a positive finite sum",
        ));
    }
    Ok(total)
}

fn check_positive<F: Float>(v: F, arg: &'static str, allow_inf: bool) -> Result<()> {
    if v > F::ZERO && (v.is_finite() || allow_inf) {
        Ok(())
    } else {
        Err(Error::bad_config(arg, "must be positive").with(Detail::Value(v.to_f64())))
    }
}

/// A resolved tracked pair.
#[derive(Clone, Copy)]
struct Pair<F> {
    i: usize,
    j: usize,
    bound: F,
}

fn pair_at<F: Float>(t: &Tracks<'_, F>, a: &[F], b: &[F], p: usize) -> Pair<F> {
    let i = t.pairs[2 * p] as usize;
    let j = t.pairs[2 * p + 1] as usize;
    let bound = match t.bound {
        TrackBound::Fraction(beta) => beta * a[i].min(b[j]),
        TrackBound::PerPair(l) => l[p],
    };
    Pair { i, j, bound }
}

fn check_tracks<F: Float>(t: &Tracks<'_, F>, a: &[F], b: &[F]) -> Result<usize> {
    if !t.pairs.len().is_multiple_of(2) {
        return Err(Error::bad_dim("pairs", "pairs need two indices each"));
    }
    let count = t.pairs.len() / 2;
    for (k, pair) in t.pairs.chunks_exact(2).enumerate() {
        if pair[0] as usize >= a.len() || pair[1] as usize >= b.len() {
            return Err(Error::bad_config("pairs", "index out of range").with(Detail::Index(k)));
        }
        for other in t.pairs[..2 * k].chunks_exact(2) {
            if other[0] == pair[0] || other[1] == pair[1] {
                return Err(Error::bad_config(
                    "pairs",
                    "a source or target occurs in more than one pair",
                )
                .with(Detail::Index(k)));
            }
        }
    }
    match t.bound {
        TrackBound::Fraction(beta) => {
            if !(beta >= F::ZERO && beta <= F::ONE) {
                return Err(
                    Error::bad_config("self_edge_bound", "beta must be in [0, 1]")
                        .with(Detail::Value(beta.to_f64())),
                );
            }
        }
        TrackBound::PerPair(l) => {
            check_len(l, count, "bounds")?;
            check_finite(l, "bounds")?;
            for p in 0..count {
                let pr = pair_at(t, a, b, p);
                if !(pr.bound >= F::ZERO && pr.bound <= a[pr.i].min(b[pr.j])) {
                    return Err(
                        Error::bad_config("bounds", "bound outside [0, min(a_i, b_j)]")
                            .with(Detail::Index(p)),
                    );
                }
            }
        }
    }
    Ok(count)
}

/// `ρ/(ρ+ε)`, 1 for ρ = ∞.
fn damping<F: Float>(rho: F, eps: F) -> F {
    if rho.is_finite() {
        rho / (rho + eps)
    } else {
        F::ONE
    }
}

/// `1/ρ`, 0 for ρ = ∞.
fn inv<F: Float>(rho: F) -> F {
    if rho.is_finite() {
        F::ONE / rho
    } else {
        F::ZERO
    }
}

/// Shared, read-only state of a solve at one ε.
struct Ctx<'a, F> {
    xs: Cloud<'a, F>,
    ys: Cloud<'a, F>,
    la: &'a [F],
    lb: &'a [F],
    eps: F,
    inv_eps: F,
    rho_a: F,
    rho_b: F,
}

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

/// Solves the problem; see the module docs. Writes `out` (also when the
/// tolerance is not met: check the report). Workspace: at least
/// [`uot_workspace_len`]`(n, m, d, cfg.mode)` elements.
pub fn solve_uot<F: Float>(
    p: &UotProblem<'_, F>,
    cfg: &UotConfig<F>,
    out: &mut UotOutput<'_, F>,
    workspace: &mut [F],
) -> Result<UotReport<F>> {
    let (n, m, d) = (p.n, p.m, p.d);
    check_dims(p.x, p.y, n, m, d)?;
    let sum_a = check_weights(p.a, n, "a")?;
    let sum_b = check_weights(p.b, m, "b")?;
    let nm = checked_mul(n, m, "m")?;
    let eps_target = cfg.epsilon;
    check_positive(eps_target, "epsilon", false)?;
    check_positive(cfg.rho_source, "rho_source", true)?;
    check_positive(cfg.rho_target, "rho_target", true)?;
    check_positive(cfg.tol, "tol", false)?;
    check_positive(cfg.h, "h", false)?;
    if cfg.max_iter == 0 {
        return Err(Error::bad_config("max_iter", "must be at least 1"));
    }
    if cfg.eps_scaling_stages > 30 {
        return Err(Error::bad_config("eps_scaling_stages", "at most 30"));
    }
    let balanced = !cfg.rho_source.is_finite() && !cfg.rho_target.is_finite();
    if balanced && (sum_a - sum_b).abs() > F::EPSILON.sqrt() * sum_a.max(sum_b) {
        return Err(Error::bad_config(
            "b",
            "balanced transport (both rho infinite) needs equal total masses",
        ));
    }
    let pair_count = match &p.tracks {
        Some(t) => check_tracks(t, p.a, p.b)?,
        None => 0,
    };
    check_len(out.f, n, "f")?;
    check_len(out.g, m, "g")?;
    check_len(out.row_mass, n, "row_mass")?;
    check_len(out.col_mass, m, "col_mass")?;
    let nd = checked_mul(n, d, "x")?;
    if let Some(v) = out.velocity.as_deref() {
        check_len(v, nd, "velocity")?;
    }
    if let Some(v) = out.barycenter.as_deref() {
        check_len(v, nd, "barycenter")?;
    }
    if let Some(v) = out.plan.as_deref() {
        check_len(v, nm, "plan")?;
    }
    if cfg.warm_start {
        check_finite(out.f, "f")?;
        check_finite(out.g, "g")?;
    } else {
        out.f.fill(F::ZERO);
        out.g.fill(F::ZERO);
    }
    let need = uot_workspace_len(n, m, d, cfg.mode);
    if workspace.len() < need {
        return Err(Error::too_small("workspace", need, workspace.len()));
    }

    let mut arena = Arena::new(workspace);
    let xt = arena.take(d * n)?;
    let yt = arena.take(d * m)?;
    transpose(p.x, n, d, xt);
    transpose(p.y, m, d, yt);
    let la = arena.take(n)?;
    let lb = arena.take(m)?;
    for (l, &w) in la.iter_mut().zip(p.a) {
        *l = w.ln();
    }
    for (l, &w) in lb.iter_mut().zip(p.b) {
        *l = w.ln();
    }
    let lr = arena.take(n)?;
    let lc = arena.take(m)?;
    let fbar = arena.take(n)?;
    let gbar = arena.take(m)?;
    let su = arena.take(n)?;
    let sv = arena.take(m)?;
    let pot = arena.take(n.max(m))?;
    let tmp = arena.take(n.max(m))?;
    let (mark_r, mark_c) = (arena.take(n)?, arena.take(m)?);
    let mut kmat = match cfg.mode {
        UotMode::Dense => Some(arena.take(nm)?),
        UotMode::Online => None,
    };

    let xs = Cloud {
        rows: p.x,
        cols: xt,
        count: n,
        d,
    };
    let ys = Cloud {
        rows: p.y,
        cols: yt,
        count: m,
        d,
    };
    // Zero bounds constrain nothing: such tracks give exactly the plain solve.
    let tracks = p
        .tracks
        .filter(|t| (0..pair_count).any(|q| pair_at(t, p.a, p.b, q).bound > F::ZERO));
    let translate = cfg.translation && tracks.is_none() && !balanced;
    let f = &mut *out.f;
    let g = &mut *out.g;
    let thr = F::MIN_POSITIVE.sqrt();
    let tau = F::from_f64(20.0);
    let clamp = F::from_f64(80.0);
    let four = F::from_f64(4.0);

    let mut iterations = 0u32;
    let mut error = F::INFINITY;
    let mut converged = false;
    let mut absorptions = 0u32;
    // A warm start is already near the target ε's solution: no annealing.
    let mut stage = if cfg.warm_start {
        0
    } else {
        cfg.eps_scaling_stages
    };
    'stages: loop {
        let mut eps = eps_target;
        for _ in 0..stage {
            eps *= four;
        }
        let final_stage = stage == 0;
        let stage_tol = if final_stage {
            cfg.tol
        } else {
            cfg.tol.max(F::from_f64(1e-3))
        };
        let ctx = Ctx {
            xs,
            ys,
            la,
            lb,
            eps,
            inv_eps: F::ONE / eps,
            rho_a: cfg.rho_source,
            rho_b: cfg.rho_target,
        };
        let ka = damping(ctx.rho_a, eps);
        let kb = damping(ctx.rho_b, eps);
        let mut absorb = true;
        loop {
            if iterations >= cfg.max_iter {
                break 'stages;
            }
            iterations += 1;
            // ---- row half-step: lr_i = ln Σ_j b_j e^{(g_j − C_ij)/ε}.
            for (q, (&l, &gv)) in pot.iter_mut().zip(lb.iter().zip(g.iter())) {
                *q = l + gv * ctx.inv_eps;
            }
            let absorbing = kmat.is_some() && absorb;
            match kmat.as_deref_mut() {
                None => {
                    let pot = &pot[..m];
                    for_each_chunk(lr, 8, |c, rows| {
                        for (t, l) in rows.iter_mut().enumerate() {
                            *l = ys.lse(xs.point(c * 8 + t), pot, ctx.inv_eps);
                        }
                    });
                }
                Some(k) if absorbing => {
                    absorptions += 1;
                    for (q, &gv) in tmp.iter_mut().zip(g.iter()) {
                        *q = gv * ctx.inv_eps;
                    }
                    gbar.copy_from_slice(g);
                    let wpot = &tmp[..m];
                    // K row = e^{(f̄_i + g_j − C_ij)/ε} with f̄_i the new f_i
                    // (exponent clamped to ±80 around the row maximum).
                    for_each_chunk3((k, m), (lr, 1), (fbar, 1), |i, row, l, fb| {
                        ys.fill_w(xs.point(i), 0, wpot, ctx.inv_eps, row);
                        let top = kernel::max(row);
                        row.iter_mut().for_each(|w| *w -= top);
                        exp_in_place(row);
                        l[0] = top + dot(row, p.b).ln();
                        let fi = ka * (-eps * l[0]);
                        let shift = (top + fi * ctx.inv_eps).max(-clamp).min(clamp);
                        let scale = shift.exp();
                        row.iter_mut().for_each(|w| *w *= scale);
                        fb[0] = eps * (shift - top);
                    });
                    absorb = false;
                }
                Some(k) => {
                    for (s, (&gv, &gb)) in sv.iter_mut().zip(g.iter().zip(gbar.iter())) {
                        *s = (gv - gb) * ctx.inv_eps;
                    }
                    exp_in_place(sv);
                    for (s, &bv) in sv.iter_mut().zip(p.b) {
                        *s *= bv;
                    }
                    let (sv, fbar, pot) = (&*sv, &*fbar, &pot[..m]);
                    let k = &*k;
                    for_each_chunk2(lr, 1, mark_r, 1, |i, l, mk| {
                        let s = dot(&k[i * m..][..m], sv);
                        if s >= thr && s.is_finite() {
                            l[0] = s.ln() - fbar[i] * ctx.inv_eps;
                            mk[0] = F::ZERO;
                        } else {
                            l[0] = ys.lse(xs.point(i), pot, ctx.inv_eps);
                            mk[0] = F::ONE;
                        }
                    });
                    if mark_r
                        .iter()
                        .zip(p.a)
                        .any(|(&mk, &av)| mk > F::ZERO && av > F::ZERO)
                    {
                        absorb = true;
                    }
                }
            }
            if translate && !absorbing {
                let lam = translation(lr, la, g, lb, ctx.rho_a, ctx.rho_b, eps, tmp);
                for (fv, &l) in f.iter_mut().zip(lr.iter()) {
                    *fv = ka * (-eps * l + lam);
                }
                g.iter_mut().for_each(|gv| *gv -= lam);
            } else {
                for (fv, &l) in f.iter_mut().zip(lr.iter()) {
                    *fv = ka * (-eps * l);
                }
            }
            if let Some(t) = &tracks {
                let kappa = eps * inv(ctx.rho_a);
                for q in 0..pair_count {
                    let pr = pair_at(t, p.a, p.b, q);
                    if pr.bound > F::ZERO {
                        let c = sq_dist(xs.point(pr.i), ys.point(pr.j));
                        let log_g = lb[pr.j] + (g[pr.j] - c) * ctx.inv_eps;
                        let log_l = pr.bound.ln() - la[pr.i];
                        let log_s = ys.lse_excluding(xs.point(pr.i), &pot[..m], ctx.inv_eps, pr.j);
                        f[pr.i] = eps * bounded_update(log_s, log_g, log_l, kappa);
                    }
                }
            }
            // ---- column pass: lc_j = ln Σ_i a_i e^{(f_i − C_ij)/ε}.
            column_lse(
                &ctx,
                f,
                kmat.as_deref(),
                fbar,
                gbar,
                p.a,
                su,
                pot,
                lc,
                mark_c,
                thr,
            );
            if kmat.is_some()
                && mark_c
                    .iter()
                    .zip(p.b)
                    .any(|(&mk, &bv)| mk > F::ZERO && bv > F::ZERO)
            {
                absorb = true;
            }
            error = column_error(
                &ctx,
                f,
                g,
                lc,
                p,
                tracks.as_ref(),
                pair_count,
                out.col_mass,
                tmp,
            );
            let done = if final_stage {
                !cfg.fixed_iterations && error <= cfg.tol
            } else {
                error <= stage_tol
            };
            if done {
                if final_stage {
                    converged = true;
                    break 'stages;
                }
                break;
            }
            if !error.is_finite() {
                return Err(Error::new(
                    ErrorKind::NumericalFailure,
                    "epsilon",
                    "the iterations produced a non-finite value",
                ));
            }
            // ---- column half-step.
            if translate && !absorbing {
                let lam = translation(lc, lb, f, la, ctx.rho_b, ctx.rho_a, eps, tmp);
                for (gv, &l) in g.iter_mut().zip(lc.iter()) {
                    *gv = kb * (-eps * l + lam);
                }
                f.iter_mut().for_each(|fv| *fv -= lam);
            } else {
                for (gv, &l) in g.iter_mut().zip(lc.iter()) {
                    *gv = kb * (-eps * l);
                }
            }
            if let Some(t) = &tracks {
                let kappa = eps * inv(ctx.rho_b);
                for q in 0..pair_count {
                    let pr = pair_at(t, p.a, p.b, q);
                    if pr.bound > F::ZERO {
                        let c = sq_dist(xs.point(pr.i), ys.point(pr.j));
                        let log_g = la[pr.i] + (f[pr.i] - c) * ctx.inv_eps;
                        let log_l = pr.bound.ln() - lb[pr.j];
                        let log_s = xs.lse_excluding(ys.point(pr.j), &pot[..n], ctx.inv_eps, pr.i);
                        g[pr.j] = eps * bounded_update(log_s, log_g, log_l, kappa);
                    }
                }
            }
            if kmat.is_some() {
                let far = |v: &[F], bar: &[F]| {
                    v.iter().zip(bar).any(|(&a, &b)| {
                        // NaN counts as far.
                        ((a - b).abs() * ctx.inv_eps).partial_cmp(&tau)
                            != Some(core::cmp::Ordering::Less)
                    })
                };
                if far(f, fbar) || far(g, gbar) {
                    absorb = true;
                }
            }
            if cfg.fixed_iterations && final_stage && iterations >= cfg.max_iter {
                break 'stages;
            }
        }
        stage -= 1;
    }
    if cfg.fixed_iterations {
        converged = error <= cfg.tol;
    }

    // ---- outputs at the final potentials.
    let eps = eps_target;
    let ctx = Ctx {
        xs,
        ys,
        la,
        lb,
        eps,
        inv_eps: F::ONE / eps,
        rho_a: cfg.rho_source,
        rho_b: cfg.rho_target,
    };
    let state = UotReport {
        iterations,
        marginal_error: error,
        converged,
        objective: F::ZERO,
        dual: F::ZERO,
        gap: F::ZERO,
        total_mass: F::ZERO,
        absorptions,
    };
    let scratch = Scratch { pot, lr, lc };
    finish(
        &ctx,
        p,
        cfg,
        tracks.as_ref(),
        pair_count,
        out,
        scratch,
        state,
    )
}

fn transpose<F: Float>(rows: &[F], count: usize, d: usize, cols: &mut [F]) {
    for k in 0..count {
        for c in 0..d {
            cols[c * count + k] = rows[k * d + c];
        }
    }
}

/// The Séjourné–Vialard–Peyré shift after a half-step on "self": with
/// `h = −ε·l_self`, the λ maximising the dual along `(h + λ)·ρ/(ρ+ε)`,
/// `other − λ`: `λ = (ln Σ w e^{−h/(ρ_s+ε)} − ln Σ w' e^{−other/ρ_o}) /
/// (1/ρ_o + 1/(ρ_s+ε))`.
#[allow(clippy::too_many_arguments)]
fn translation<F: Float>(
    l_self: &[F],
    log_w_self: &[F],
    other: &[F],
    log_w_other: &[F],
    rho_self: F,
    rho_other: F,
    eps: F,
    tmp: &mut [F],
) -> F {
    let c_self = eps * inv(rho_self + eps);
    let t = &mut tmp[..l_self.len()];
    for (v, (&l, &lw)) in t.iter_mut().zip(l_self.iter().zip(log_w_self)) {
        *v = lw + c_self * l;
    }
    let a = log_sum_exp(t);
    let c_other = inv(rho_other);
    let t = &mut tmp[..other.len()];
    for (v, (&o, &lw)) in t.iter_mut().zip(other.iter().zip(log_w_other)) {
        *v = lw - c_other * o;
    }
    let b = log_sum_exp(t);
    let lam = (a - b) / (c_other + inv(rho_self + eps));
    if lam.is_finite() { lam } else { F::ZERO }
}

/// `lc_j = ln Σ_i a_i e^{(f_i − C_ij)/ε}` for every column: from the stored
/// kernel when there is one (`mark_c_j = 1` where the column sum underflowed
/// and was recomputed from the points), else from the points.
#[allow(clippy::too_many_arguments)]
fn column_lse<F: Float>(
    ctx: &Ctx<'_, F>,
    f: &[F],
    kmat: Option<&[F]>,
    fbar: &[F],
    gbar: &[F],
    a: &[F],
    su: &mut [F],
    pot: &mut [F],
    lc: &mut [F],
    mark_c: &mut [F],
    thr: F,
) {
    let (n, m) = (ctx.xs.count, ctx.ys.count);
    for (q, (&l, &fv)) in pot.iter_mut().zip(ctx.la.iter().zip(f)) {
        *q = l + fv * ctx.inv_eps;
    }
    let pot = &pot[..n];
    let (xs, ys, inv_eps) = (ctx.xs, ctx.ys, ctx.inv_eps);
    match kmat {
        None => for_each_chunk(lc, 8, |c, cols| {
            for (t, l) in cols.iter_mut().enumerate() {
                *l = xs.lse(ys.point(c * 8 + t), pot, inv_eps);
            }
        }),
        Some(k) => {
            for (s, (&fv, &fb)) in su.iter_mut().zip(f.iter().zip(fbar)) {
                *s = (fv - fb) * inv_eps;
            }
            exp_in_place(su);
            for (s, &av) in su.iter_mut().zip(a) {
                *s *= av;
            }
            let su = &*su;
            for_each_chunk2(lc, TILE, mark_c, TILE, |blk, lcs, mks| {
                let j0 = blk * TILE;
                let len = lcs.len();
                let mut acc = [F::ZERO; TILE];
                let acc = &mut acc[..len];
                for (i, &u) in su.iter().enumerate() {
                    axpy(acc, u, &k[i * m + j0..][..len]);
                }
                for t in 0..len {
                    let s = acc[t];
                    if s >= thr && s.is_finite() {
                        lcs[t] = s.ln() - gbar[j0 + t] * inv_eps;
                        mks[t] = F::ZERO;
                    } else {
                        lcs[t] = xs.lse(ys.point(j0 + t), pot, inv_eps);
                        mks[t] = F::ONE;
                    }
                }
            });
        }
    }
}

/// `Π_ij` of a tracked pair at the potentials: `(ln Gibbs_ij, max(ℓ, Gibbs))`.
fn pair_entry<F: Float>(ctx: &Ctx<'_, F>, f: &[F], g: &[F], pr: &Pair<F>) -> (F, F) {
    let c = sq_dist(ctx.xs.point(pr.i), ctx.ys.point(pr.j));
    let log_gibbs = ctx.la[pr.i] + ctx.lb[pr.j] + (f[pr.i] + g[pr.j] - c) * ctx.inv_eps;
    (log_gibbs, log_gibbs.exp().max(pr.bound))
}

/// Column masses at `(f, g)` into `col_mass` and the relative marginal error
/// `‖Πᵀ1 − b·e^{−g/ρ_b}‖₁ / Σ Π` (the row term is zero after a row step).
#[allow(clippy::too_many_arguments)]
fn column_error<F: Float>(
    ctx: &Ctx<'_, F>,
    f: &[F],
    g: &[F],
    lc: &[F],
    p: &UotProblem<'_, F>,
    tracks: Option<&Tracks<'_, F>>,
    pair_count: usize,
    col_mass: &mut [F],
    tmp: &mut [F],
) -> F {
    for (c, (&l, (&gv, &lcv))) in col_mass.iter_mut().zip(ctx.lb.iter().zip(g.iter().zip(lc))) {
        *c = l + gv * ctx.inv_eps + lcv;
    }
    exp_in_place(col_mass);
    if let Some(t) = tracks {
        for q in 0..pair_count {
            let pr = pair_at(t, p.a, p.b, q);
            let (log_gibbs, entry) = pair_entry(ctx, f, g, &pr);
            col_mass[pr.j] += entry - log_gibbs.exp();
        }
    }
    let tmp = &mut tmp[..g.len()];
    let c = inv(ctx.rho_b);
    for (v, &gv) in tmp.iter_mut().zip(g) {
        *v = -gv * c;
    }
    exp_in_place(tmp);
    let mut err = F::ZERO;
    for ((&cm, &e), &bv) in col_mass.iter().zip(tmp.iter()).zip(p.b) {
        err += (cm - bv * e).abs();
    }
    err / sum(col_mass)
}

/// Scratch vectors reused by [`finish`].
struct Scratch<'a, F> {
    pot: &'a mut [F],
    lr: &'a mut [F],
    lc: &'a mut [F],
}

/// Writes masses, barycentres, velocities and the plan at the final
/// potentials, and fills the report's objective, dual and mass.
#[allow(clippy::too_many_arguments)]
fn finish<F: Float>(
    ctx: &Ctx<'_, F>,
    p: &UotProblem<'_, F>,
    cfg: &UotConfig<F>,
    tracks: Option<&Tracks<'_, F>>,
    pair_count: usize,
    out: &mut UotOutput<'_, F>,
    s: Scratch<'_, F>,
    mut report: UotReport<F>,
) -> Result<UotReport<F>> {
    let (n, m, d) = (p.n, p.m, p.d);
    let (xs, ys, inv_eps) = (ctx.xs, ctx.ys, ctx.inv_eps);
    let (f, g) = (&*out.f, &*out.g);
    // Columns.
    for (q, (&l, &fv)) in s.pot.iter_mut().zip(ctx.la.iter().zip(f)) {
        *q = l + fv * inv_eps;
    }
    {
        let pot = &s.pot[..n];
        for_each_chunk(s.lc, 8, |c, cols| {
            for (t, l) in cols.iter_mut().enumerate() {
                *l = xs.lse(ys.point(c * 8 + t), pot, inv_eps);
            }
        });
    }
    let col_mass = &mut *out.col_mass;
    for (c, (&l, (&gv, &lcv))) in col_mass
        .iter_mut()
        .zip(ctx.lb.iter().zip(g.iter().zip(s.lc.iter())))
    {
        *c = l + gv * inv_eps + lcv;
    }
    exp_in_place(col_mass);
    // Rows.
    for (q, (&l, &gv)) in s.pot.iter_mut().zip(ctx.lb.iter().zip(g)) {
        *q = l + gv * inv_eps;
    }
    let pot = &s.pot[..m];
    let means = match (out.barycenter.as_deref_mut(), out.velocity.as_deref_mut()) {
        (Some(bc), _) => Some(bc),
        (None, Some(v)) => Some(v),
        (None, None) => None,
    };
    match means {
        Some(mean) => {
            for_each_chunk2(s.lr, 1, mean, d, |i, l, row| {
                l[0] = ys.weighted_mean(xs.point(i), pot, inv_eps, None, row);
            });
            if let Some(t) = tracks {
                for q in 0..pair_count {
                    let pr = pair_at(t, p.a, p.b, q);
                    if pr.bound > F::ZERO {
                        let floor = pr.bound.ln() - ctx.la[pr.i] - f[pr.i] * inv_eps;
                        s.lr[pr.i] = ys.weighted_mean(
                            xs.point(pr.i),
                            pot,
                            inv_eps,
                            Some((pr.j, floor)),
                            &mut mean[pr.i * d..][..d],
                        );
                    }
                }
            }
        }
        None => for_each_chunk(s.lr, 8, |c, rows| {
            for (t, l) in rows.iter_mut().enumerate() {
                *l = ys.lse(xs.point(c * 8 + t), pot, inv_eps);
            }
        }),
    }
    let row_mass = &mut *out.row_mass;
    for (r, (&l, (&fv, &lrv))) in row_mass
        .iter_mut()
        .zip(ctx.la.iter().zip(f.iter().zip(s.lr.iter())))
    {
        *r = l + fv * inv_eps + lrv;
    }
    exp_in_place(row_mass);
    if let (Some(bc), Some(v)) = (out.barycenter.as_deref(), out.velocity.as_deref_mut()) {
        v.copy_from_slice(bc);
    }
    if let Some(v) = out.velocity.as_deref_mut() {
        let inv_h = F::ONE / cfg.h;
        for (vv, &x) in v.iter_mut().zip(p.x) {
            *vv = (*vv - x) * inv_h;
        }
    }
    if let Some(plan) = out.plan.as_deref_mut() {
        let (la, f) = (ctx.la, f);
        for_each_chunk(plan, m, |i, row| {
            ys.fill_w(xs.point(i), 0, pot, inv_eps, row);
            let shift = la[i] + f[i] * inv_eps;
            row.iter_mut().for_each(|w| *w += shift);
            exp_in_place(row);
        });
    }
    // Pairs: masses of the bounded entries, and Σ ℓ·μ of the active ones.
    let mut bound_term = 0.0f64;
    if let Some(t) = tracks {
        for q in 0..pair_count {
            let pr = pair_at(t, p.a, p.b, q);
            let (log_gibbs, entry) = pair_entry(ctx, f, g, &pr);
            let extra = entry - log_gibbs.exp();
            out.col_mass[pr.j] += extra;
            if let Some(plan) = out.plan.as_deref_mut() {
                plan[pr.i * m + pr.j] = entry;
            }
            if pr.bound > F::ZERO && pr.bound.ln() > log_gibbs {
                let mu = ctx.eps.to_f64() * (pr.bound.ln() - log_gibbs).to_f64();
                bound_term += pr.bound.to_f64() * mu;
            }
        }
    }
    // Objective and dual (f64 sums).
    let eps = ctx.eps.to_f64();
    let sum_a: f64 = p.a.iter().map(|v| v.to_f64()).sum();
    let sum_b: f64 = p.b.iter().map(|v| v.to_f64()).sum();
    let mass: f64 = out.row_mass.iter().map(|v| v.to_f64()).sum();
    let rf: f64 = out
        .row_mass
        .iter()
        .zip(f)
        .map(|(r, v)| r.to_f64() * v.to_f64())
        .sum();
    let cg: f64 = out
        .col_mass
        .iter()
        .zip(g)
        .map(|(c, v)| c.to_f64() * v.to_f64())
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
        (cfg.rho_source, &*out.row_mass, p.a, f),
        (cfg.rho_target, &*out.col_mass, p.b, g),
    ] {
        if rho.is_finite() {
            let rho = rho.to_f64();
            objective += rho * kl(masses, w);
            dual += w
                .iter()
                .zip(pot)
                .map(|(w, v)| -rho * w.to_f64() * libm::expm1(-v.to_f64() / rho))
                .sum::<f64>();
        } else {
            dual += w
                .iter()
                .zip(pot)
                .map(|(w, v)| w.to_f64() * v.to_f64())
                .sum::<f64>();
        }
    }
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
