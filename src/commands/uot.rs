//! `morphosde uot`: unbalanced optimal transport between two CSV point
//! clouds (see `morphosde_core::uot` for the problem and its convention:
//! cost ‖x − y‖², entropy KL(Π | a⊗b), ε and ρ absolute).
//!
//! Writes `DIR/row_mass.csv`, `DIR/col_mass.csv`, `DIR/velocity.csv` (n × d)
//! and, in dense mode, `DIR/plan.csv` (n × m), with the shortest round-trip
//! digits of the solve's float type; prints one JSON line (iterations,
//! absorptions, marginal error, convergence, objective, dual, time inside
//! the solver). A run that does not reach the
//! tolerance still writes its outputs and prints the line, then exits
//! non-zero. `--precision f64` runs the whole solve (kernel included) in
//! f64 and writes f64 digits.

use crate::csvio::{Table, read_table, write_matrix};
use clap::{Args, ValueEnum};
use morphosde_core::Float;
use morphosde_core::uot::{
    TrackBound, Tracks, UotConfig, UotMode, UotOutput, UotProblem, median_sq_distance,
    median_sq_distance_workspace_len, solve_uot, uot_workspace_len,
};
use std::fmt::Display;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Stored n·m kernel (fast; writes plan.csv).
    Dense,
    /// Costs recomputed from the points, O((n + m)·d) memory.
    Online,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PrecisionArg {
    /// f32 points and kernel (potentials, masses and the marginal error are
    /// f64 either way).
    F32,
    /// Everything in f64: twice the memory, scalar exponentials (slower
    /// kernel rebuilds and online passes); removes the f32 kernel's ~1e-6
    /// relative perturbation of the plan.
    F64,
}

#[derive(Args, Debug)]
pub struct UotArgs {
    /// Source cloud X: one point per row (n × d), optional header.
    #[arg(long)]
    pub source: PathBuf,
    /// Target cloud Y (m × d).
    #[arg(long)]
    pub target: PathBuf,
    /// Source weights a (one column, n rows; default uniform summing to 1).
    #[arg(long)]
    pub source_weights: Option<PathBuf>,
    /// Target weights b (one column, m rows; default uniform summing to 1).
    #[arg(long)]
    pub target_weights: Option<PathBuf>,
    /// Entropic regularisation ε (absolute, squared-distance units).
    #[arg(
        long,
        required_unless_present = "epsilon_relative",
        allow_negative_numbers = true
    )]
    pub epsilon: Option<f32>,
    /// ε as a fraction of the median squared distance between the clouds.
    /// (`train`'s flag of the same name; `--epsilon-rel` is accepted too.)
    #[arg(
        long,
        alias = "epsilon-rel",
        conflicts_with = "epsilon",
        allow_negative_numbers = true
    )]
    pub epsilon_relative: Option<f32>,
    /// Marginal penalty ρ on both sides (omit for balanced transport).
    #[arg(long, conflicts_with_all = ["rho_source", "rho_target"], allow_negative_numbers = true)]
    pub rho: Option<f32>,
    /// Marginal penalty on the source side (omit: hard constraint).
    #[arg(long, allow_negative_numbers = true)]
    pub rho_source: Option<f32>,
    /// Marginal penalty on the target side (omit: hard constraint).
    #[arg(long, allow_negative_numbers = true)]
    pub rho_target: Option<f32>,
    /// Frame gap h dividing the velocities.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub h: f32,
    /// Known tracks: rows `i,j` (0-based) or `i,j,bound`.
    #[arg(long)]
    pub tracks: Option<PathBuf>,
    /// β ∈ [0, 1]: bound Π_ij ≥ β·min(a_i, b_j) on tracked pairs without an
    /// explicit bound.
    #[arg(long, allow_negative_numbers = true)]
    pub self_edge_bound: Option<f32>,
    #[arg(long, default_value_t = 10_000)]
    pub max_iter: u32,
    /// Relative marginal error to stop at.
    #[arg(long, default_value_t = 1e-5, allow_negative_numbers = true)]
    pub tol: f32,
    /// ε-scaling stages (4^s·ε down to ε); helps at small ε.
    #[arg(long, default_value_t = 0)]
    pub eps_scaling: u32,
    #[arg(long, value_enum, default_value_t = ModeArg::Dense)]
    pub mode: ModeArg,
    /// Floating-point type of the solve.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

fn weights<F: Float>(path: &Option<PathBuf>, count: usize, what: &str) -> Result<Vec<F>, String> {
    match path {
        None => Ok(vec![F::ONE / F::from_usize(count); count]),
        Some(p) => {
            let t = read_table(p, what)?;
            if t.cols != 1 || t.rows != count {
                return Err(format!(
                    "{what}: expected one column with {count} rows, found {} × {}",
                    t.rows, t.cols
                ));
            }
            Ok(convert(&t.data))
        }
    }
}

fn convert<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

pub fn run(args: &UotArgs) -> Result<(), String> {
    match args.precision {
        PrecisionArg::F32 => solve::<f32>(args),
        PrecisionArg::F64 => solve::<f64>(args),
    }
}

fn solve<F: Float + Display>(args: &UotArgs) -> Result<(), String> {
    let xs: Table = read_table(&args.source, "--source")?;
    let ys: Table = read_table(&args.target, "--target")?;
    if xs.cols != ys.cols {
        return Err(format!(
            "--source has {} columns but --target has {}",
            xs.cols, ys.cols
        ));
    }
    let (n, m, d) = (xs.rows, ys.rows, xs.cols);
    let (x, y) = (convert::<F>(&xs.data), convert::<F>(&ys.data));
    let a = weights::<F>(&args.source_weights, n, "--source-weights")?;
    let b = weights::<F>(&args.target_weights, m, "--target-weights")?;
    let core_err = |e: morphosde_core::Error| format!("{e}");
    let epsilon = match (args.epsilon, args.epsilon_relative) {
        (Some(e), _) => F::from_f64(e as f64),
        (None, Some(r)) => {
            let mut ws = vec![F::ZERO; median_sq_distance_workspace_len(n, m)];
            F::from_f64(r as f64)
                * median_sq_distance(&x, &y, n, m, d, &mut ws).map_err(core_err)?
        }
        (None, None) => return Err("give --epsilon or --epsilon-relative".into()),
    };
    let mut cfg = UotConfig::new(epsilon);
    let wide = |v: f32| F::from_f64(v as f64);
    cfg.rho_source = wide(args.rho.or(args.rho_source).unwrap_or(f32::INFINITY));
    cfg.rho_target = wide(args.rho.or(args.rho_target).unwrap_or(f32::INFINITY));
    cfg.h = wide(args.h);
    cfg.max_iter = args.max_iter;
    cfg.tol = wide(args.tol);
    cfg.eps_scaling_stages = args.eps_scaling;
    cfg.mode = match args.mode {
        ModeArg::Dense => UotMode::Dense,
        ModeArg::Online => UotMode::Online,
    };
    // Tracks: pairs and optional explicit bounds.
    let mut pairs = Vec::new();
    let mut bounds = Vec::new();
    if let Some(p) = &args.tracks {
        let t = read_table(p, "--tracks")?;
        if t.cols != 2 && t.cols != 3 {
            return Err(format!(
                "--tracks: rows must be i,j or i,j,bound ({} columns found)",
                t.cols
            ));
        }
        for r in 0..t.rows {
            for c in 0..2 {
                let v = t.data[r * t.cols + c];
                if !(v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f64) {
                    return Err(format!("--tracks: row {r}: '{v}' is not a 0-based index"));
                }
                pairs.push(v as u32);
            }
            if t.cols == 3 {
                bounds.push(F::from_f64(t.data[r * 3 + 2]));
            }
        }
        if bounds.is_empty() && args.self_edge_bound.is_none() {
            return Err("--tracks without bounds needs --self-edge-bound".into());
        }
    } else if args.self_edge_bound.is_some() {
        return Err("--self-edge-bound needs --tracks".into());
    }
    let tracks = args.tracks.as_ref().map(|_| Tracks {
        pairs: &pairs,
        bound: if bounds.is_empty() {
            TrackBound::Fraction(wide(args.self_edge_bound.unwrap_or(0.0)))
        } else {
            TrackBound::PerPair(&bounds)
        },
    });
    let problem = UotProblem {
        x: &x,
        y: &y,
        a: &a,
        b: &b,
        n,
        m,
        d,
        tracks,
    };
    let dense = matches!(cfg.mode, UotMode::Dense);
    let mut ws = vec![F::ZERO; uot_workspace_len(n, m, d, cfg.mode)];
    let (mut f, mut g) = (vec![F::ZERO; n], vec![F::ZERO; m]);
    let (mut row_mass, mut col_mass) = (vec![F::ZERO; n], vec![F::ZERO; m]);
    let mut velocity = vec![F::ZERO; n * d];
    let mut plan = if dense {
        vec![F::ZERO; n * m]
    } else {
        Vec::new()
    };
    let start = Instant::now();
    let report = solve_uot(
        &problem,
        &cfg,
        &mut UotOutput {
            f: &mut f,
            g: &mut g,
            row_mass: &mut row_mass,
            col_mass: &mut col_mass,
            velocity: Some(&mut velocity),
            barycenter: None,
            plan: dense.then_some(plan.as_mut_slice()),
        },
        &mut ws,
    )
    .map_err(core_err)?;
    let seconds = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create '{}': {e}", args.out.display()))?;
    write_matrix(&args.out.join("row_mass.csv"), None, &row_mass, 1)?;
    write_matrix(&args.out.join("col_mass.csv"), None, &col_mass, 1)?;
    write_matrix(&args.out.join("velocity.csv"), None, &velocity, d)?;
    if dense {
        write_matrix(&args.out.join("plan.csv"), None, &plan, m)?;
    }
    println!(
        "{{\"n\":{n},\"m\":{m},\"d\":{d},\"epsilon\":{epsilon},\"mode\":\"{:?}\",\
         \"precision\":\"{}\",\
         \"iterations\":{},\"absorptions\":{},\"marginal_error\":{},\"converged\":{},\
         \"objective\":{},\"dual\":{},\"gap\":{},\"total_mass\":{},\"solve_seconds\":{seconds}}}",
        cfg.mode,
        format!("{:?}", args.precision).to_lowercase(),
        report.iterations,
        report.absorptions,
        report.marginal_error,
        report.converged,
        report.objective,
        report.dual,
        report.gap,
        report.total_mass
    );
    report.ensure_converged().map_err(core_err)
}
