//! Unbalanced optimal transport over the C ABI (caller buffers only: usable
//! without std): the Sinkhorn solve that gives the drift its teacher (row
//! masses, velocities, optionally the dense plan), with an optional
//! self-edge lower bound on known tracks.

use crate::buffers::{flag, input, optional_out, output, size_answer, value_in, value_out};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::Result;
use morphosde_core::error::{Arena, Detail, Error, check_len, check_room};
use morphosde_core::size::Size;
use morphosde_core::uot::{
    MEDIAN_SAMPLE, TrackBound, Tracks, UotConfig, UotMode, UotOutput, UotProblem,
    median_sq_distance, median_sq_distance_workspace_len, solve_uot, uot_workspace_len,
};

/// msde_uot_config.mode: the n*m kernel is stored (fastest; n*m floats of
/// workspace).
pub const MSDE_UOT_DENSE: u32 = 0;
/// msde_uot_config.mode: costs are recomputed from the points (O((n+m)*d)
/// workspace; the dense plan output then still needs n*m floats).
pub const MSDE_UOT_ONLINE: u32 = 1;

/// Settings of msde_uot_solve; fill with msde_uot_config_default. The
/// problem is min <C, P> + epsilon KL(P | a b^T) + rho_source KL(P 1 | a) +
/// rho_target KL(P^T 1 | b) with C_ij = |x_i - y_j|^2 (full squared
/// distance, state units squared), the generalised KL, and on tracked pairs
/// the bound P_ij >= l_ij.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_uot_config {
    /// Entropic regularisation (> 0, finite; absolute, cost units).
    pub epsilon: f32,
    /// Source-marginal penalty (> 0, cost units); +INFINITY makes it a hard
    /// constraint (both rho infinite: balanced transport, equal totals).
    pub rho_source: f32,
    /// Target-marginal penalty (> 0, cost units; +INFINITY: hard).
    pub rho_target: f32,
    /// Stop when the relative marginal error is at most tol (> 0).
    pub tol: f32,
    /// Iteration cap over all epsilon-scaling stages (>= 1).
    pub max_iter: u32,
    /// MSDE_UOT_DENSE or MSDE_UOT_ONLINE (same plan, different memory).
    pub mode: u32,
    /// 1: the translation step of Sejourne, Vialard and Peyre (2022)
    /// (ignored with bounded tracks or balanced transport); 0: off.
    pub translation: u32,
    /// Extra epsilon-scaling stages at 4^s epsilon, s = stages..1 (0..=30).
    pub eps_scaling_stages: u32,
    /// Frame gap h > 0 (time units) dividing the teacher velocities.
    pub h: f32,
    /// Self-edge bound beta in [0, 1] of tracked pairs without explicit
    /// bounds: P_ij >= beta min(a_i, b_j). 0: plain plan.
    pub self_edge_bound: f32,
}

/// What msde_uot_solve found (written only on MSDE_OK).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct msde_uot_summary {
    /// Primal objective (all terms; a hard marginal contributes 0).
    pub objective: f32,
    /// Dual value at the final potentials.
    pub dual: f32,
    /// objective - dual.
    pub gap: f32,
    /// Relative marginal error at the last check (<= tol).
    pub marginal_error: f32,
    /// Total mass of the plan, sum_ij P_ij.
    pub total_mass: f32,
    /// Sinkhorn iterations over all stages.
    pub iterations: u32,
    /// Log-domain re-absorptions of the dense kernel.
    pub absorptions: u32,
}

/// The core config of a C config: enum and flag fields checked here, the
/// numbers by the solver.
fn to_core(c: &msde_uot_config) -> Result<UotConfig<f32>> {
    let mut cfg = UotConfig::new(c.epsilon);
    cfg.rho_source = c.rho_source;
    cfg.rho_target = c.rho_target;
    cfg.tol = c.tol;
    cfg.max_iter = c.max_iter;
    cfg.mode = match c.mode {
        MSDE_UOT_DENSE => UotMode::Dense,
        MSDE_UOT_ONLINE => UotMode::Online,
        m => {
            return Err(
                Error::bad_config("mode", "must be MSDE_UOT_DENSE or MSDE_UOT_ONLINE")
                    .with(Detail::Index(m as usize)),
            );
        }
    };
    cfg.translation = flag(c.translation, "translation")?;
    cfg.eps_scaling_stages = c.eps_scaling_stages;
    cfg.h = c.h;
    cfg.validate()?;
    Ok(cfg)
}

/// Fills *out with the defaults for regularisation epsilon: balanced
/// (both rho +INFINITY), tol 1e-5, 10000 iterations, dense, translation on,
/// no epsilon scaling, h = 1, self_edge_bound 0. Values are checked by the
/// calls that use the config (msde_uot_workspace_len too), not here.
///
/// # Safety
/// `out` NULL (refused) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_uot_config_default(
    epsilon: f32,
    out: *mut msde_uot_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out, "out") }?;
        let c = UotConfig::<f32>::new(epsilon);
        *out = msde_uot_config {
            epsilon: c.epsilon,
            rho_source: c.rho_source,
            rho_target: c.rho_target,
            tol: c.tol,
            max_iter: c.max_iter,
            mode: MSDE_UOT_DENSE,
            translation: c.translation as u32,
            eps_scaling_stages: c.eps_scaling_stages,
            h: c.h,
            self_edge_bound: 0.0,
        };
        Ok(())
    })
}

/// (staged output floats, solver floats): potentials f, g, row and column
/// masses, velocities and (with_plan) the plan are staged before the
/// solver's own workspace.
fn sizes(n: usize, m: usize, d: usize, mode: UotMode, with_plan: bool) -> Result<(usize, usize)> {
    for (v, arg) in [(n, "n"), (m, "m"), (d, "d")] {
        if v == 0 {
            return Err(Error::bad_dim(arg, "must be at least 1"));
        }
    }
    let n_m = Size(n) + m;
    let plan = if with_plan { Size(n) * m } else { Size(0) };
    let staged = (n_m * 2 + Size(n) * d + plan).get();
    Ok((staged, uot_workspace_len(n, m, d, mode)))
}

/// Workspace (floats) msde_uot_solve needs for n sources, m targets in d
/// dimensions with *config's mode, written to *out_len; with_plan = 1 when
/// the dense plan is wanted (its n*m floats are staged in the workspace),
/// 0 otherwise.
///
/// # Safety
/// `config` valid; `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_uot_workspace_len(
    n: usize,
    m: usize,
    d: usize,
    config: *const msde_uot_config,
    with_plan: u32,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let with_plan = flag(with_plan, "with_plan")?;
        let out = unsafe { value_out(out_len, "out_len") }?;
        let (staged, solver) = sizes(n, m, d, cfg.mode, with_plan)?;
        *out = size_answer::<f32>((Size(staged) + solver).get(), "n")?;
        Ok(())
    })
}

/// Solves the unbalanced transport from x (n x d, row-major) with weights a
/// (n, >= 0, positive sum) to y (m x d) with weights b (m) by log-domain
/// Sinkhorn (the Rust core's solve_uot).
///
/// - `pairs`: optional known tracks, (source i, target j) as two uint32 per
///   pair, 0-based, each source and target in at most one pair
///   (pairs_len = 2 * count; NULL/0 for none).
/// - `bounds`: optional per-pair lower bounds l_p in [0, min(a_i, b_j)]
///   (bounds_len = count); NULL/0 uses config->self_edge_bound * min(a_i,
///   b_j) on every pair.
/// - `row_mass`: n row masses r_i = sum_j P_ij (required).
/// - `col_mass`: m column masses sum_i P_ij, or NULL/0 to skip.
/// - `velocity`: n x d teacher velocities (sum_j P_ij y_j / r_i - x_i) / h,
///   state units per time unit, or NULL/0 to skip.
/// - `plan`: n x m dense plan P (row-major), or NULL/0 to skip; the
///   workspace must then be sized with with_plan = 1.
/// - `workspace`: msde_uot_workspace_len floats (outputs are staged in it).
/// - `summary`: optional (NULL to skip).
///
/// Errors: NULL pointers, n, m or d of 0, lengths that disagree
/// (MSDE_ERR_BAD_DIMENSION), NaN/Inf in x, y, a, b or bounds, negative
/// weights, a zero total weight, unequal totals with both rho infinite,
/// out-of-range settings, pairs or bounds (MSDE_ERR_BAD_CONFIG), a short
/// workspace, the iteration cap reached before tol
/// (MSDE_ERR_NOT_CONVERGED, the last marginal error in the message).
/// Outputs are written only on MSDE_OK.
///
/// # Safety
/// Each buffer NULL (refused unless its length is 0) or valid for its
/// length; outputs and workspace disjoint from each other and the inputs.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_uot_solve(
    x: *const f32,
    x_len: usize,
    y: *const f32,
    y_len: usize,
    a: *const f32,
    a_len: usize,
    b: *const f32,
    b_len: usize,
    d: usize,
    pairs: *const u32,
    pairs_len: usize,
    bounds: *const f32,
    bounds_len: usize,
    config: *const msde_uot_config,
    row_mass: *mut f32,
    row_mass_len: usize,
    col_mass: *mut f32,
    col_mass_len: usize,
    velocity: *mut f32,
    velocity_len: usize,
    plan: *mut f32,
    plan_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
    summary: *mut msde_uot_summary,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let c = unsafe { value_in(config, "config") }?;
        let cfg = to_core(c)?;
        let x = unsafe { input(x, x_len, "x") }?;
        let y = unsafe { input(y, y_len, "y") }?;
        let a = unsafe { input(a, a_len, "a") }?;
        let b = unsafe { input(b, b_len, "b") }?;
        let pairs = unsafe { input(pairs, pairs_len, "pairs") }?;
        let bounds = unsafe { input(bounds, bounds_len, "bounds") }?;
        let row_mass = unsafe { output(row_mass, row_mass_len, "row_mass") }?;
        let col_mass = unsafe { output(col_mass, col_mass_len, "col_mass") }?;
        let velocity = unsafe { output(velocity, velocity_len, "velocity") }?;
        let plan = unsafe { output(plan, plan_len, "plan") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        let summary = unsafe { optional_out(summary, "summary") }?;
        let (n, m) = (a.len(), b.len());
        let (staged, solver) = sizes(n, m, d, cfg.mode, !plan.is_empty())?;
        check_len(x, n * d, "x")?;
        check_len(y, m * d, "y")?;
        check_len(row_mass, n, "row_mass")?;
        for (out, len, arg) in [
            (&*col_mass, m, "col_mass"),
            (&*velocity, n * d, "velocity"),
            (&*plan, n * m, "plan"),
        ] {
            if !out.is_empty() {
                check_len(out, len, arg)?;
            }
        }
        if pairs.is_empty() && !bounds.is_empty() {
            return Err(Error::bad_dim("bounds", "bounds given without pairs"));
        }
        check_room(ws, staged + solver, "workspace")?;
        let tracks = (!pairs.is_empty()).then_some(Tracks {
            pairs,
            bound: if bounds.is_empty() {
                TrackBound::Fraction(c.self_edge_bound)
            } else {
                TrackBound::PerPair(bounds)
            },
        });
        let problem = UotProblem {
            x,
            y,
            a,
            b,
            n,
            m,
            d,
            tracks,
        };
        let mut arena = Arena::new(ws);
        let f = arena.take(n)?;
        let g = arena.take(m)?;
        let rows = arena.take(n)?;
        let cols = arena.take(m)?;
        let vel = arena.take(n * d)?;
        let pl = arena.take(plan.len())?;
        let mut out = UotOutput {
            f,
            g,
            row_mass: rows,
            col_mass: cols,
            velocity: Some(vel),
            barycenter: None,
            plan: (!plan.is_empty()).then_some(pl),
        };
        let report = solve_uot(&problem, &cfg, &mut out, arena.rest())?;
        report.ensure_converged()?;
        row_mass.copy_from_slice(out.row_mass);
        if !col_mass.is_empty() {
            col_mass.copy_from_slice(out.col_mass);
        }
        if let (false, Some(v)) = (velocity.is_empty(), out.velocity.as_deref()) {
            velocity.copy_from_slice(v);
        }
        if let Some(p) = out.plan.as_deref() {
            plan.copy_from_slice(p);
        }
        if let Some(s) = summary {
            *s = msde_uot_summary {
                objective: report.objective,
                dual: report.dual,
                gap: report.gap,
                marginal_error: report.marginal_error,
                total_mass: report.total_mass,
                iterations: report.iterations,
                absorptions: report.absorptions,
            };
        }
        Ok(())
    })
}

/// Pairs msde_median_sq_distance uses exactly; above it, evenly spaced
/// pairs of this count.
pub const MSDE_MEDIAN_SAMPLE: usize = 1 << 18;
const _: () = assert!(MSDE_MEDIAN_SAMPLE == MEDIAN_SAMPLE);

/// Workspace (floats) msde_median_sq_distance needs for n sources and m
/// targets (min(n*m, MSDE_MEDIAN_SAMPLE)), written to *out_len.
///
/// # Safety
/// `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_median_sq_distance_workspace_len(
    n: usize,
    m: usize,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out_len, "out_len") }?;
        *out = size_answer::<f32>(median_sq_distance_workspace_len(n, m), "n")?;
        Ok(())
    })
}

/// Median of |x_i - y_j|^2 over all pairs of x (n x d) and y (m x d)
/// (NumPy's median: the mean of the two middle values for an even count;
/// evenly spaced pairs above MSDE_MEDIAN_SAMPLE), written to *out: the
/// data's squared scale, to set msde_uot_config.epsilon (and rho) relative
/// to it, e.g. epsilon = 0.05 * median. State units squared.
///
/// Errors: NULL pointers, n, m or d of 0 or lengths that disagree
/// (MSDE_ERR_BAD_DIMENSION), NaN/Inf in x or y, a short workspace.
///
/// # Safety
/// Buffers valid for their lengths; `workspace` disjoint from x and y;
/// `out` writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_median_sq_distance(
    x: *const f32,
    x_len: usize,
    y: *const f32,
    y_len: usize,
    d: usize,
    workspace: *mut f32,
    workspace_len: usize,
    out: *mut f32,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let x = unsafe { input(x, x_len, "x") }?;
        let y = unsafe { input(y, y_len, "y") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        let out = unsafe { value_out(out, "out") }?;
        if d == 0 {
            return Err(Error::bad_dim("d", "must be at least 1"));
        }
        let (n, m) = (x.len() / d, y.len() / d);
        *out = median_sq_distance(x, y, n, m, d, ws)?;
        Ok(())
    })
}
