//! The problem's data (clouds, weights, tracks, settings, where the solver
//! writes, what it reports), every check made where it enters, and the
//! median helper that gives ε relative to the data's scale.

use crate::error::{Arena, Detail, Error, ErrorKind, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::linalg::squared_distance;
use crate::size::Size;
use core::any::TypeId;

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

/// Workspace elements [`super::solve_uot`] needs (for `f32` or `f64`; the
/// per-point vectors are `f64`, two `f32` elements each).
pub fn uot_workspace_len(n: usize, m: usize, d: usize, mode: UotMode) -> usize {
    let points = Size(n) + m;
    let wide = points * 4 + Size(n).max(m);
    let base = points * d + points * 2 + Size(n).max(m) + wide * 2 + 1;
    match mode {
        UotMode::Online => base.get(),
        UotMode::Dense => (base + Size(n) * m).get(),
    }
}

/// `len` `f64` values carved from `arena`'s elements: two `f32` elements
/// each plus one for alignment, or one `f64` each.
#[allow(
    unsafe_code,
    reason = "the f64 view of an f32 or f64 workspace (the solver's per-point vectors)"
)]
pub(super) fn take_wide<'a, F: Float>(
    arena: &mut Arena<'a, F>,
    len: usize,
) -> Result<&'a mut [f64]> {
    let per = 8 / F::BYTES;
    let raw = arena.take(len * per + per - 1)?;
    let plain_float =
        TypeId::of::<F>() == TypeId::of::<f32>() || TypeId::of::<F>() == TypeId::of::<f64>();
    if !plain_float {
        return Err(Error::bad_config(
            "workspace",
            "the solver runs on f32 or f64 only",
        ));
    }
    // SAFETY: F is f32 or f64 (checked above): initialised plain floats,
    // every bit pattern of which is a valid f64; `align_to_mut` hands out
    // only whole, aligned f64s inside `raw`.
    let (_, mid, _) = unsafe { raw.align_to_mut::<f64>() };
    let got = mid.len();
    mid.get_mut(..len)
        .ok_or_else(|| Error::too_small("workspace", len, got))
}

/// Every check of [`super::solve_uot`] on its arguments, then the starting
/// potentials (the given ones on a warm start, else zero). Returns the
/// number of tracked pairs.
pub(super) fn prepare<F: Float>(
    p: &UotProblem<'_, F>,
    cfg: &UotConfig<F>,
    out: &mut UotOutput<'_, F>,
    workspace_len: usize,
) -> Result<usize> {
    let (n, m, d) = (p.n, p.m, p.d);
    check_dims(p.x, p.y, n, m, d)?;
    let sum_a = check_weights(p.a, n, "a")?;
    let sum_b = check_weights(p.b, m, "b")?;
    let nm = checked_mul(n, m, "m")?;
    cfg.validate()?;
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
    if workspace_len < need {
        return Err(Error::too_small("workspace", need, workspace_len));
    }
    Ok(pair_count)
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
        *v = squared_distance(&x[i * d..][..d], &y[j * d..][..d]);
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

impl<F: Float> UotConfig<F> {
    /// The settings' ranges (epsilon, tol and h finite and > 0, rho > 0 or
    /// infinite, max_iter ≥ 1, at most 30 ε-scaling stages): the checks
    /// [`super::solve_uot`] runs on its config, for size queries to run
    /// too.
    pub fn validate(&self) -> Result<()> {
        check_positive(self.epsilon, "epsilon", false)?;
        check_positive(self.rho_source, "rho_source", true)?;
        check_positive(self.rho_target, "rho_target", true)?;
        check_positive(self.tol, "tol", false)?;
        check_positive(self.h, "h", false)?;
        if self.max_iter == 0 {
            return Err(Error::bad_config("max_iter", "must be at least 1"));
        }
        if self.eps_scaling_stages > 30 {
            return Err(Error::bad_config("eps_scaling_stages", "at most 30"));
        }
        Ok(())
    }
}

fn check_positive<F: Float>(v: F, arg: &'static str, allow_inf: bool) -> Result<()> {
    if v > F::ZERO && (v.is_finite() || allow_inf) {
        Ok(())
    } else {
        Err(Error::bad_config(arg, "must be positive").with(Detail::Value(v.to_f64())))
    }
}

/// A resolved tracked pair: source `i`, target `j`, lower bound `ℓ_ij`.
#[derive(Clone, Copy)]
pub(super) struct Pair<F> {
    pub i: usize,
    pub j: usize,
    pub bound: F,
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

/// Checked tracks whose bounds constrain the plan (some bound is positive):
/// their pairs resolved against the weights.
#[derive(Clone, Copy)]
pub(super) struct Pairs<'a, F> {
    tracks: Tracks<'a, F>,
    a: &'a [F],
    b: &'a [F],
    count: usize,
}

impl<'a, F: Float> Pairs<'a, F> {
    /// The first `count` pairs of `tracks` (checked), or `None` when no
    /// bound is positive: zero bounds constrain nothing, and such tracks
    /// give exactly the plain solve.
    pub fn constraining(
        tracks: Option<Tracks<'a, F>>,
        a: &'a [F],
        b: &'a [F],
        count: usize,
    ) -> Option<Self> {
        let pairs = Pairs {
            tracks: tracks?,
            a,
            b,
            count,
        };
        pairs.iter().any(|pr| pr.bound > F::ZERO).then_some(pairs)
    }

    pub fn iter(&self) -> impl Iterator<Item = Pair<F>> + '_ {
        (0..self.count).map(|p| pair_at(&self.tracks, self.a, self.b, p))
    }
}
