//! Rollouts: `n` trajectories of a [`Dynamics`] from one initial state or
//! from a cloud, states recorded at the output times.
//!
//! Trajectories are cut into blocks of `block_rows` rows; each block is one
//! path (the model is evaluated on the whole block at once, matrix–matrix).
//! Trajectory `i` draws its noise from `Rng::stream(seed, Trajectory, i)`
//! and every per-row computation is independent of the other rows, so the
//! result of a trajectory does not depend on the block size, on how blocks
//! are spread over workers, or on the thread count.
//!
//! Workers: the workspace holds one slice per worker (see
//! [`rollout_workspace_len`]); with the `std` feature the workers' groups of
//! consecutive blocks run in parallel on rayon's current pool, without it
//! they run one after another. Either way the numbers are identical.

use super::StepStats;
use super::ode::{
    Dopri5Config, dopri5_path, dopri5_path_workspace_len, rk4_path, rk4_path_workspace_len,
};
use super::platen::{platen_path, platen_path_workspace_len};
use super::sde::{SdeConfig, em_path, em_path_workspace_len};
use super::strang::{strang_path, strang_path_workspace_len};
use crate::dynamics::Dynamics;
use crate::error::{Error, Result, check_finite, check_len, check_room, checked_mul};
use crate::float::Float;
use crate::rng::{Family, Rng};
use crate::size::Size;

/// Largest block of rows evaluated together (bounds the per-block stack
/// array of random streams: 64 × 32 bytes).
pub const MAX_BLOCK_ROWS: usize = 64;

/// Integration method of a rollout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method<F> {
    /// Classic RK4, steps of at most `h` that hit every output time (ODE).
    Rk4 { h: F },
    /// Adaptive Dormand–Prince 5(4) (ODE).
    Dopri5(Dopri5Config<F>),
    /// Euler–Maruyama (SDE; needs a diffusion factor): one evaluation per
    /// substep, weak order 1 ([`em_path`]).
    EulerMaruyama(SdeConfig<F>),
    /// Strang splitting, RK4 drift flow around a mid-substep noise kick
    /// (SDE; needs a diffusion factor): four evaluations per substep, the
    /// drift's flow to `O(h⁴)`, weak order 2 with additive noise, 1 with
    /// state-dependent noise ([`strang_path`]).
    StrangRk4(SdeConfig<F>),
    /// Platen's explicit weak order 2.0 scheme (SDE; needs a diffusion
    /// factor): `4q + 2` evaluations per substep ([`platen_path`]).
    PlatenWeak2(SdeConfig<F>),
}

impl<F> Method<F> {
    /// The settings of an SDE method (`None` for the ODE methods).
    pub fn sde_mut(&mut self) -> Option<&mut SdeConfig<F>> {
        match self {
            Method::EulerMaruyama(c) | Method::StrangRk4(c) | Method::PlatenWeak2(c) => Some(c),
            Method::Rk4 { .. } | Method::Dopri5(_) => None,
        }
    }

    /// The same method with its fixed step (the SDE methods' `h_max`,
    /// RK4's `h`) set to `h`; Dopri5 unchanged.
    pub fn with_step(mut self, h: F) -> Self {
        match &mut self {
            Method::Rk4 { h: step } => *step = h,
            Method::Dopri5(_) => {}
            m => {
                if let Some(c) = m.sde_mut() {
                    c.h_max = h;
                }
            }
        }
        self
    }

    /// Short name: `rk4`, `dopri5`, `em`, `strang`, `weak2` (what
    /// `simulate --method` calls them).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Rk4 { .. } => "rk4",
            Method::Dopri5(_) => "dopri5",
            Method::EulerMaruyama(_) => "em",
            Method::StrangRk4(_) => "strang",
            Method::PlatenWeak2(_) => "weak2",
        }
    }
}

/// Where the trajectories start.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a, F> {
    /// Every trajectory starts at this one state (length `d`).
    Point(&'a [F]),
    /// Trajectory `i` starts at row `i` of this `n×d` cloud.
    Cloud(&'a [F]),
}

/// Settings of [`rollout`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RolloutConfig<F> {
    pub method: Method<F>,
    /// Seed of the trajectories' streams (unused by the ODE methods).
    pub seed: u64,
    /// Rows per block, `1..=MAX_BLOCK_ROWS`.
    pub block_rows: usize,
}

/// Outcome of a [`rollout`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RolloutReport<F> {
    /// Work summed over all trajectories (`stats.stopped` counts the
    /// trajectories that stopped early).
    pub stats: StepStats,
    /// The lowest-index stopped trajectory and its stop time, if any.
    pub first_stopped: Option<(usize, F)>,
    /// Workers the workspace allowed (groups of blocks).
    pub workers: usize,
}

/// Workers a std build should plan for: rayon's current thread count
/// (1 without `std`).
pub fn default_workers() -> usize {
    #[cfg(feature = "std")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "std"))]
    {
        1
    }
}

/// Workspace elements one worker needs (one block's initial states and
/// path workspace).
pub fn rollout_worker_workspace_len<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    config: &RolloutConfig<F>,
) -> usize {
    let rows = config.block_rows.min(MAX_BLOCK_ROWS);
    let path = match config.method {
        Method::Rk4 { .. } => rk4_path_workspace_len(dynamics, rows),
        Method::Dopri5(_) => dopri5_path_workspace_len(dynamics, rows),
        Method::EulerMaruyama(_) => em_path_workspace_len(dynamics, rows),
        Method::StrangRk4(_) => strang_path_workspace_len(dynamics, rows),
        Method::PlatenWeak2(_) => platen_path_workspace_len(dynamics, rows),
    };
    (Size(rows) * dynamics.dim() + path).get()
}

/// Workspace elements for `workers` workers (at least one).
pub fn rollout_workspace_len<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    config: &RolloutConfig<F>,
    workers: usize,
) -> usize {
    (Size(workers.max(1)) * rollout_worker_workspace_len(dynamics, config)).get()
}

/// Rolls out `n = stop_times.len()` trajectories from `start` at `t0` and
/// writes their states at `times` to `out` (`n×K×d`, trajectory-major) and
/// each one's stop time to `stop_times` (`+∞` when it reached the last
/// output time; otherwise the time its state turned non-finite or its step
/// underflowed, with NaN outputs from then on).
///
/// The number of workers is `workspace.len() / rollout_worker_workspace_len`
/// (capped by the number of blocks). Errors (bad shapes, times, settings, a
/// missing diffusion factor for an SDE method) are reported before any
/// trajectory runs, except a step too small for a later gap; on error
/// `out` and `stop_times` are unspecified.
#[allow(clippy::too_many_arguments)]
pub fn rollout<F: Float, S: Dynamics<F> + Sync>(
    dynamics: &S,
    start: Start<'_, F>,
    t0: F,
    times: &[F],
    config: &RolloutConfig<F>,
    out: &mut [F],
    stop_times: &mut [F],
    workspace: &mut [F],
) -> Result<RolloutReport<F>> {
    let d = dynamics.dim();
    let n = stop_times.len();
    if n == 0 {
        return Err(Error::bad_dim("stop_times", "no trajectories (n = 0)"));
    }
    if config.block_rows == 0 || config.block_rows > MAX_BLOCK_ROWS {
        return Err(Error::bad_config("block_rows", "must be in 1..=64"));
    }
    match start {
        Start::Point(z0) => {
            check_len(z0, d, "start")?;
            check_finite(z0, "start")?;
        }
        Start::Cloud(cloud) => {
            check_len(cloud, checked_mul(n, d, "start")?, "start")?;
            check_finite(cloud, "start")?;
        }
    }
    let big_k = times.len();
    check_len(
        out,
        checked_mul(checked_mul(n, big_k, "out")?, d, "out")?,
        "out",
    )?;
    let per_worker = rollout_worker_workspace_len(dynamics, config);
    check_room(workspace, per_worker, "workspace")?;
    let block = config.block_rows;
    let blocks = n.div_ceil(block);
    let workers = (workspace.len() / per_worker.max(1)).clamp(1, blocks);
    let group_rows = blocks.div_ceil(workers) * block;
    let groups = n.div_ceil(group_rows);
    let run = |g: usize, out_g: &mut [F], stop_g: &mut [F], ws_g: &mut [F]| {
        run_group(
            dynamics,
            start,
            g * group_rows,
            t0,
            times,
            config,
            out_g,
            stop_g,
            ws_g,
        )
    };
    let out_chunk = (group_rows * big_k * d).max(1);
    let per_worker = per_worker.max(1);
    let workspace = &mut workspace[..groups * per_worker];
    let stats = if groups == 1 {
        // One worker: no thread hand-off (and no allocation).
        run(0, out, stop_times, workspace)?
    } else {
        run_groups(
            out, stop_times, workspace, out_chunk, group_rows, per_worker, &run,
        )?
    };
    let first_stopped = stop_times
        .iter()
        .position(|&s| s != F::INFINITY)
        .map(|i| (i, stop_times[i]));
    Ok(RolloutReport {
        stats,
        first_stopped,
        workers: groups,
    })
}

/// Runs group `g` given its outputs, stop times and workspace.
type GroupRunner<'a, F> =
    dyn Fn(usize, &mut [F], &mut [F], &mut [F]) -> Result<StepStats> + Sync + 'a;

/// Runs the groups: in parallel on rayon's current pool with `std`, one
/// after another without. `run(g, out, stop_times, workspace)` runs group `g`.
#[allow(clippy::too_many_arguments)]
fn run_groups<F: Float>(
    out: &mut [F],
    stop_times: &mut [F],
    workspace: &mut [F],
    out_chunk: usize,
    group_rows: usize,
    per_worker: usize,
    run: &GroupRunner<'_, F>,
) -> Result<StepStats> {
    #[cfg(feature = "std")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(out_chunk)
            .zip(stop_times.par_chunks_mut(group_rows))
            .zip(workspace.par_chunks_mut(per_worker))
            .enumerate()
            .map(|(g, ((o, s), w))| run(g, o, s, w))
            .try_reduce(StepStats::default, |a, b| Ok(a + b))
    }
    #[cfg(not(feature = "std"))]
    {
        let mut total = StepStats::default();
        for (g, ((o, s), w)) in out
            .chunks_mut(out_chunk)
            .zip(stop_times.chunks_mut(group_rows))
            .zip(workspace.chunks_mut(per_worker))
            .enumerate()
        {
            total = total + run(g, o, s, w)?;
        }
        Ok(total)
    }
}

/// Runs the blocks of one worker's group, trajectories `first..first +
/// stop_g.len()`.
#[allow(clippy::too_many_arguments)]
fn run_group<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    start: Start<'_, F>,
    first: usize,
    t0: F,
    times: &[F],
    config: &RolloutConfig<F>,
    out_g: &mut [F],
    stop_g: &mut [F],
    ws_g: &mut [F],
) -> Result<StepStats> {
    let d = dynamics.dim();
    let block = config.block_rows;
    let (z0, path_ws) = ws_g.split_at_mut(block * d);
    let mut stats = StepStats::default();
    let out_block = block * times.len() * d;
    // Stream of the block's first trajectory, walked by jumps from the
    // group's first (see `Rng::jump_to_next_index`).
    let mut cursor: Option<Rng> = None;
    for (b, (out_b, stop_b)) in out_g
        .chunks_mut(out_block.max(1))
        .zip(stop_g.chunks_mut(block))
        .enumerate()
    {
        let rows = stop_b.len();
        let i0 = first + b * block;
        let z0 = &mut z0[..rows * d];
        match start {
            Start::Point(p) => {
                for row in z0.chunks_exact_mut(d) {
                    row.copy_from_slice(p);
                }
            }
            Start::Cloud(c) => z0.copy_from_slice(&c[i0 * d..(i0 + rows) * d]),
        }
        stats = stats
            + match &config.method {
                Method::Rk4 { h } => rk4_path(dynamics, z0, t0, times, *h, out_b, stop_b, path_ws)?,
                Method::Dopri5(c) => {
                    dopri5_path(dynamics, z0, t0, times, c, out_b, stop_b, path_ws)?
                }
                Method::EulerMaruyama(c) | Method::StrangRk4(c) | Method::PlatenWeak2(c) => {
                    let cursor = cursor.get_or_insert_with(|| {
                        Rng::stream(config.seed, Family::Trajectory, i0 as u64)
                    });
                    let mut rngs: [Rng; MAX_BLOCK_ROWS] = core::array::from_fn(|r| {
                        let rng = cursor.clone();
                        if r < rows {
                            cursor.jump_to_next_index();
                        }
                        rng
                    });
                    let rngs = &mut rngs[..rows];
                    let path = match config.method {
                        Method::EulerMaruyama(_) => em_path,
                        Method::StrangRk4(_) => strang_path,
                        _ => platen_path,
                    };
                    path(dynamics, z0, t0, times, c, rngs, out_b, stop_b, path_ws)?
                }
            };
    }
    Ok(stats)
}
