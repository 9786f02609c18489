//! `morphosde simulate`: rolls out trajectories of a trained model
//! (`--model`, model bytes of `morphosde_core::codec`) or of the built-in
//! synthetic embryo-like process (`--synthetic-dim`) from initial states,
//! with the core's integrators (`morphosde_core::integrate::rollout`).
//!
//! Input: `--initial`, a CSV of initial states (every column, or
//! `--columns`), or `--from-data`, a snapshot table whose rows at time
//! `--t0` are the initial states (columns as `train` reads them:
//! `--time-column`, `--columns` or `--prefix`, `--id-column` excluded from
//! the coordinates). One row: `--trajectories` copies of it; several rows:
//! one trajectory per row. Methods: `strang` (the drift's flow by RK4
//! split around a noise kick in the middle of each substep), `em`
//! (Euler–Maruyama), `weak2` (Platen's weak order 2.0 scheme) — the SDE,
//! needing a diffusion factor — and `rk4`, `dopri5` (the drift's ODE: mean
//! paths); `auto` picks `strang` when the dynamics have diffusion (a model
//! trained with its diffusion head) and `dopri5` otherwise; an SDE method
//! on a model without a diffusion head is an error.
//! Output: `--out` gets `trajectory,t,<coordinates>` for every trajectory
//! and output time (a trajectory that blew up has no rows from its stop
//! time on); `--report` and stdout get a one-line JSON report. For a model
//! it records the model's training span (`time_span`, null for an
//! autonomous model or one without a span) and how far `--t0` and `--times`
//! reach outside it (`outside_time_span`, also said on stderr): there the
//! model is the one at the span's nearest end.

use super::time_span::{outside, training_span};
use crate::csvio::{read_table, write_atomic};
use crate::data::{CoordinateColumns, Snapshots};
use clap::{Args, ValueEnum};
use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::ode::Dopri5Config;
use morphosde_core::integrate::rollout::{
    Method, RolloutConfig, Start, default_workers, rollout, rollout_workspace_len,
};
use morphosde_core::integrate::sde::SdeConfig;
use morphosde_core::model::Learned;
use morphosde_core::synthetic::EmbryoProcess;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Instant;

/// Default largest step of `strang`, `em`, `weak2` and `rk4` (time units).
pub const DEFAULT_H_MAX: f32 = 0.01;
/// Default tolerances of `dopri5`.
pub const DEFAULT_RTOL: f32 = 1e-5;
pub const DEFAULT_ATOL: f32 = 1e-6;

/// What `simulate` runs with its default flags (`--method auto`): `strang`
/// at step [`DEFAULT_H_MAX`] for dynamics with noise, `dopri5` at
/// [`DEFAULT_RTOL`]/[`DEFAULT_ATOL`] otherwise. Scorers that roll a model
/// out "as `simulate` would" use this.
pub fn default_method(has_noise: bool) -> Method<f32> {
    MethodArg::Auto.method(has_noise)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// `strang` with diffusion, `dopri5` without.
    Auto,
    /// Strang splitting: RK4 drift flow around a mid-substep noise kick
    /// (SDE; 4 evaluations per substep).
    Strang,
    /// Euler–Maruyama (SDE; 1 evaluation per substep).
    Em,
    /// Platen's explicit weak order 2.0 scheme (SDE; 4q + 2 evaluations
    /// per substep, q the noise columns).
    Weak2,
    /// Classic RK4 with steps of at most --h-max (ODE).
    Rk4,
    /// Adaptive Dormand–Prince 5(4) with --rtol/--atol (ODE).
    Dopri5,
}

impl MethodArg {
    /// The method this flag names at its default settings (no trace
    /// clip); `auto` by whether the dynamics have noise.
    pub fn method(self, has_noise: bool) -> Method<f32> {
        let sde = |h_max: f32| SdeConfig {
            h_max,
            trace_clip: None,
        };
        match self {
            MethodArg::Auto if has_noise => MethodArg::Strang.method(true),
            MethodArg::Auto => MethodArg::Dopri5.method(false),
            MethodArg::Strang => Method::StrangRk4(sde(DEFAULT_H_MAX)),
            MethodArg::Em => Method::EulerMaruyama(sde(DEFAULT_H_MAX)),
            MethodArg::Weak2 => Method::PlatenWeak2(sde(DEFAULT_H_MAX)),
            MethodArg::Rk4 => Method::Rk4 { h: DEFAULT_H_MAX },
            MethodArg::Dopri5 => Method::Dopri5(Dopri5Config::new(DEFAULT_RTOL, DEFAULT_ATOL)),
        }
    }

    /// Whether this flag names an SDE method (`strang`, `em`, `weak2`).
    pub fn is_sde(self) -> bool {
        matches!(self, MethodArg::Strang | MethodArg::Em | MethodArg::Weak2)
    }

    /// The flag's spelling.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map_or("?".into(), |v| v.get_name().to_string())
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("dynamics").required(true).args(["model", "synthetic_dim"])))]
#[command(group(clap::ArgGroup::new("start").required(true).args(["initial", "from_data"])))]
pub struct SimulateArgs {
    /// Trained model file (morphosde model bytes, f32).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Instead of a model: the built-in synthetic embryo-like process in
    /// this many dimensions (≥ 2).
    #[arg(long)]
    pub synthetic_dim: Option<usize>,
    /// Initial states (CSV).
    #[arg(long)]
    pub initial: Option<PathBuf>,
    /// Instead of --initial: a snapshot table (as `train --data` reads it);
    /// its rows at time --t0 are the initial states.
    #[arg(long)]
    pub from_data: Option<PathBuf>,
    /// Time column of --from-data (name or number).
    #[arg(long, default_value = "t", requires = "from_data")]
    pub time_column: String,
    /// Track-id column of --from-data, left out of the coordinates.
    #[arg(long, requires = "from_data")]
    pub id_column: Option<String>,
    /// Coordinate columns, comma-separated names or numbers (default: every
    /// column of --initial; every column of --from-data except its time and
    /// id columns).
    #[arg(long, value_delimiter = ',', conflicts_with = "prefix")]
    pub columns: Option<Vec<String>>,
    /// Coordinates of --from-data: every column whose name starts with this.
    #[arg(long, requires = "from_data")]
    pub prefix: Option<String>,
    /// Trajectories per initial state when --initial has one row.
    #[arg(long, default_value_t = 1000)]
    pub trajectories: usize,
    /// Start time of every trajectory (with --from-data also the time of
    /// its rows to start from, matched to within 1% of its smallest frame
    /// gap).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub t0: f32,
    /// Output times, comma-separated, increasing, ≥ --t0.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        allow_negative_numbers = true
    )]
    pub times: Vec<f32>,
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub method: MethodArg,
    /// Largest step (strang, em, weak2, rk4), in time units.
    #[arg(long, default_value_t = DEFAULT_H_MAX, allow_negative_numbers = true)]
    pub h_max: f32,
    /// Tolerances and minimum step of dopri5.
    #[arg(long, default_value_t = DEFAULT_RTOL, allow_negative_numbers = true)]
    pub rtol: f32,
    #[arg(long, default_value_t = DEFAULT_ATOL, allow_negative_numbers = true)]
    pub atol: f32,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub h_min: f32,
    /// Cap on tr D = ‖L‖²_F per unit time (the SDE methods).
    #[arg(long, allow_negative_numbers = true)]
    pub trace_clip: Option<f32>,
    /// Seed of the trajectories' noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rollouts CSV output.
    #[arg(long)]
    pub out: PathBuf,
    /// JSON report output (also printed).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(args: &SimulateArgs) -> Result<(), String> {
    if let Some(path) = &args.model {
        let (config, params) = super::field::load_model(path)?;
        let model = Learned::new(&config, &params)
            .map_err(|e| format!("--model ('{}'): {e}", path.display()))?;
        if args.method.is_sde() && config.head.is_none() {
            return Err(format!(
                "--method {}: the model has no diffusion head (trained with diffusion off); \
                 use --method rk4 or dopri5 for its mean paths",
                args.method.name()
            ));
        }
        let span = training_span(&config, &params);
        let mut times = vec![args.t0];
        times.extend_from_slice(&args.times);
        let out = outside(&config, &params, &times);
        if let Some(o) = &out {
            let what = format!("{} of the {} times (t0 and --times) lie", o.count, o.total);
            eprintln!("{}", o.message("simulate", &what));
        }
        let note = format!(
            ",\"time_span\":{},\"outside_time_span\":{}",
            json!(span),
            out.map_or(Value::Null, |o| o.json())
        );
        return simulate(&model, "model", args, &note);
    }
    match args.synthetic_dim {
        Some(d) if d >= 2 => simulate(&EmbryoProcess { d }, "synthetic", args, ""),
        _ => Err("--synthetic-dim: the synthetic process needs at least 2 dimensions".into()),
    }
}

/// The initial states (row-major), their coordinate names and the flag
/// they came from.
fn initial_states(args: &SimulateArgs) -> Result<(Vec<f32>, Vec<String>, &'static str), String> {
    if let Some(path) = &args.from_data {
        let coords = CoordinateColumns::from_flags(&args.columns, &args.prefix);
        let table = read_table(path, "--from-data")?;
        let data = Snapshots::from_table(
            &table,
            &args.time_column,
            args.id_column.as_deref(),
            &coords,
        )
        .map_err(|e| format!("--from-data ('{}'): {e}", path.display()))?;
        let at = data.at_time(args.t0 as f64, "--t0")?;
        return Ok((at.z, at.names, "--from-data"));
    }
    let path = args
        .initial
        .as_ref()
        .ok_or("--initial or --from-data is required")?;
    let table = read_table(path, "--initial")?;
    let cols: Vec<usize> = match &args.columns {
        Some(specs) => specs
            .iter()
            .map(|s| table.column_index(s).map_err(|e| format!("--columns: {e}")))
            .collect::<Result<_, _>>()?,
        None => (0..table.cols).collect(),
    };
    let names: Vec<String> = match &table.header {
        Some(h) => cols.iter().map(|&c| h[c].clone()).collect(),
        None => (0..cols.len()).map(|c| format!("z{c}")).collect(),
    };
    let states = table.select_f32(&cols);
    if let Some(i) = states.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "--initial: row {}, column '{}' is not a finite number",
            i / cols.len() + 1,
            names[i % cols.len()]
        ));
    }
    Ok((states, names, "--initial"))
}

/// The zeroed `n × K × d` output array, or an error naming
/// `--trajectories` when it overflows or cannot be allocated (instead of
/// an abort).
fn output_buffer(n: usize, big_k: usize, d: usize) -> Result<Vec<f32>, String> {
    let too_many = |why: &str| {
        format!(
            "--trajectories: {n} trajectories x {big_k} times x d = {d} floats {why}; \
             ask for fewer"
        )
    };
    let len = n
        .checked_mul(big_k)
        .and_then(|l| l.checked_mul(d))
        .filter(|&l| l <= isize::MAX as usize / 4)
        .ok_or_else(|| too_many("overflow the address space"))?;
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| too_many("do not fit in memory"))?;
    out.resize(len, 0.0);
    Ok(out)
}

/// Rolls out `dynamics` as `args` say and writes the outputs; `note` is
/// appended to the report's fields (`,"key":value…` or empty).
fn simulate<S: Dynamics<f32> + Sync>(
    dynamics: &S,
    source: &str,
    args: &SimulateArgs,
    note: &str,
) -> Result<(), String> {
    let d = dynamics.dim();
    let (initial, names, what) = initial_states(args)?;
    if names.len() != d {
        return Err(format!(
            "{what}: {} coordinate columns, but the dynamics have d = {d}",
            names.len()
        ));
    }
    let rows = initial.len() / d;
    let (start, n) = if rows == 1 {
        (Start::Point(&initial[..]), args.trajectories)
    } else {
        (Start::Cloud(&initial[..]), rows)
    };
    // The flags override the method's defaults.
    let mut method = args
        .method
        .method(dynamics.noise_dim() > 0)
        .with_step(args.h_max);
    if let Some(c) = method.sde_mut() {
        c.trace_clip = args.trace_clip;
    }
    if let Method::Dopri5(c) = &mut method {
        *c = Dopri5Config {
            h_min: args.h_min,
            ..Dopri5Config::new(args.rtol, args.atol)
        };
    }
    let config = RolloutConfig {
        method,
        seed: args.seed,
        block_rows: 64,
    };
    let big_k = args.times.len();
    let mut out = output_buffer(n, big_k, d)?;
    let mut stop = vec![0.0f32; n];
    let mut ws = vec![0.0f32; rollout_workspace_len(dynamics, &config, default_workers())];
    let clock = Instant::now();
    let report = rollout(
        dynamics,
        start,
        args.t0,
        &args.times,
        &config,
        &mut out,
        &mut stop,
        &mut ws,
    )
    .map_err(|e| format!("simulate: {e}"))?;
    let seconds = clock.elapsed().as_secs_f64();
    write_atomic(&args.out, |w| {
        writeln!(w, "trajectory,t,{}", names.join(","))?;
        for (i, traj) in out.chunks_exact(big_k * d).enumerate() {
            for (k, z) in traj.chunks_exact(d).enumerate() {
                if args.times[k] >= stop[i] {
                    break;
                }
                write!(w, "{i},{}", args.times[k])?;
                for x in z {
                    write!(w, ",{x}")?;
                }
                writeln!(w)?;
            }
        }
        Ok(())
    })
    .map_err(|e| format!("--out: {e}"))?;
    let first = match report.first_stopped {
        Some((i, t)) => format!("{{\"trajectory\":{i},\"time\":{t}}}"),
        None => "null".into(),
    };
    let times: Vec<String> = args.times.iter().map(|t| t.to_string()).collect();
    let s = report.stats;
    let json = format!(
        "{{\"dynamics\":\"{source}\",\"method\":\"{}\",\"trajectories\":{n},\"d\":{d},\"t0\":{},\"times\":[{}],\"seed\":{},\"accepted_steps\":{},\"rejected_steps\":{},\"evaluations\":{},\"stopped\":{},\"first_stopped\":{first},\"workers\":{},\"seconds\":{seconds}{note}}}",
        config.method.name(),
        args.t0,
        times.join(","),
        args.seed,
        s.accepted,
        s.rejected,
        s.evaluations,
        s.stopped,
        report.workers,
    );
    if let Some(path) = &args.report {
        write_atomic(path, |w| writeln!(w, "{json}")).map_err(|e| format!("--report: {e}"))?;
    }
    println!("{json}");
    Ok(())
}
