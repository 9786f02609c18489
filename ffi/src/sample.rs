//! Sampling over the C ABI: N trajectories of a model, by RK4 or Dopri5
//! (the ODE of the drift) or by Euler–Maruyama, the Strang splitting or
//! the weak order 2 scheme (the SDE with the learned diffusion), into a
//! caller array.

use crate::buffers::{input, optional_out, output, size_answer, value_in, value_out};
use crate::model::{model_ref, msde_model};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::Result;
use morphosde_core::error::{Detail, Error, check_finite, check_len, check_room};
use morphosde_core::integrate::ode::Dopri5Config;
use morphosde_core::integrate::rollout::{
    Method, RolloutConfig, Start, default_workers, rollout, rollout_worker_workspace_len,
};
use morphosde_core::integrate::sde::SdeConfig;
use morphosde_core::model::Learned;
use morphosde_core::size::Size;

/// msde_sample_config.method: classic RK4 with steps of at most h (ODE).
pub const MSDE_SAMPLE_RK4: u32 = 0;
/// msde_sample_config.method: adaptive Dormand-Prince 5(4) (ODE).
pub const MSDE_SAMPLE_DOPRI5: u32 = 1;
/// msde_sample_config.method: Euler-Maruyama with substeps of at most h
/// (SDE; the model must learn diffusion): 1 model evaluation per substep,
/// weak order 1.
pub const MSDE_SAMPLE_EULER_MARUYAMA: u32 = 2;
/// msde_sample_config.method: Strang splitting with substeps of at most h,
/// the drift's flow by RK4 around a noise kick in the middle of each
/// substep (SDE; the model must learn diffusion): 4 model evaluations per
/// substep, the drift to O(h^4). What `morphosde simulate` runs by default
/// on a model with diffusion.
pub const MSDE_SAMPLE_STRANG_RK4: u32 = 3;
/// msde_sample_config.method: Platen's explicit weak order 2.0 scheme with
/// substeps of at most h (SDE; the model must learn diffusion): 4q + 2
/// model evaluations per substep (q the noise columns).
pub const MSDE_SAMPLE_WEAK2: u32 = 4;

/// Settings of msde_sample; fill with msde_sample_config_default.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_sample_config {
    /// One of the MSDE_SAMPLE_ constants.
    pub method: u32,
    /// Largest step (RK4) or substep (the SDE methods), time units, finite
    /// and > 0.
    pub h: f32,
    /// Dopri5 relative and absolute (state units) tolerances, > 0.
    pub rtol: f32,
    pub atol: f32,
    /// Dopri5 smallest step (>= 0, finite): a trajectory needing less
    /// stops.
    pub h_min: f32,
    /// SDE methods: cap on tr D per unit time (> 0), or 0 for none.
    pub trace_clip: f32,
    /// Dopri5 attempted-step cap per trajectory.
    pub max_steps: u64,
    /// Seed of the trajectories' noise (trajectory i uses its own stream).
    pub seed: u64,
    /// Trajectories evaluated together (1..=64); results do not depend on it.
    pub block_rows: usize,
}

/// What msde_sample did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct msde_sample_report {
    /// Accepted and rejected steps, summed over trajectories.
    pub accepted: u64,
    pub rejected: u64,
    /// Drift evaluations (one per trajectory per stage).
    pub evaluations: u64,
    /// Trajectories that stopped early (non-finite state, step underflow or
    /// step cap); their stop_times entry is finite, later outputs NaN.
    pub stopped: u64,
}

fn method(c: &msde_sample_config) -> Result<Method<f32>> {
    Ok(match c.method {
        MSDE_SAMPLE_RK4 => Method::Rk4 { h: c.h },
        MSDE_SAMPLE_DOPRI5 => Method::Dopri5(Dopri5Config {
            rtol: c.rtol,
            atol: c.atol,
            h_min: c.h_min,
            max_steps: c.max_steps,
        }),
        MSDE_SAMPLE_EULER_MARUYAMA | MSDE_SAMPLE_STRANG_RK4 | MSDE_SAMPLE_WEAK2 => {
            if !(c.trace_clip.is_finite() && c.trace_clip >= 0.0) {
                return Err(
                    Error::bad_config("trace_clip", "must be finite and >= 0 (0 = off)")
                        .with(Detail::Value(c.trace_clip as f64)),
                );
            }
            let sde = SdeConfig {
                h_max: c.h,
                trace_clip: (c.trace_clip > 0.0).then_some(c.trace_clip),
            };
            match c.method {
                MSDE_SAMPLE_EULER_MARUYAMA => Method::EulerMaruyama(sde),
                MSDE_SAMPLE_STRANG_RK4 => Method::StrangRk4(sde),
                _ => Method::PlatenWeak2(sde),
            }
        }
        m => {
            return Err(
                Error::bad_config("method", "is not one of the MSDE_SAMPLE_ constants")
                    .with(Detail::Index(m as usize)),
            );
        }
    })
}

/// The core settings of a C config, every field the method reads checked
/// (so the size query refuses what msde_sample would).
fn to_core(c: &msde_sample_config) -> Result<RolloutConfig<f32>> {
    let positive = |v: f32, arg: &'static str| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(Error::bad_config(arg, "must be finite and > 0").with(Detail::Value(v as f64)))
        }
    };
    match c.method {
        MSDE_SAMPLE_DOPRI5 => {
            positive(c.rtol, "rtol")?;
            positive(c.atol, "atol")?;
            if !(c.h_min.is_finite() && c.h_min >= 0.0) {
                return Err(Error::bad_config("h_min", "must be finite and >= 0")
                    .with(Detail::Value(c.h_min as f64)));
            }
        }
        _ => positive(c.h, "h")?,
    }
    if c.block_rows == 0 || c.block_rows > 64 {
        return Err(
            Error::bad_config("block_rows", "must be in 1..=64").with(Detail::Index(c.block_rows))
        );
    }
    Ok(RolloutConfig {
        method: method(c)?,
        seed: c.seed,
        block_rows: c.block_rows,
    })
}

/// Fills *out with defaults for `method`: h = 0.01, rtol 1e-4, atol 1e-6,
/// no minimum step, 100000 steps, no trace clip, seed 0, 64 rows per
/// block.
///
/// # Safety
/// `out` NULL (refused) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_sample_config_default(
    method: u32,
    out: *mut msde_sample_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out, "out") }?;
        let c = msde_sample_config {
            method,
            h: 0.01,
            rtol: 1e-4,
            atol: 1e-6,
            h_min: 0.0,
            trace_clip: 0.0,
            max_steps: 100_000,
            seed: 0,
            block_rows: 64,
        };
        to_core(&c)?;
        *out = c;
        Ok(())
    })
}

/// (staging floats for outputs, one worker's floats).
fn sizes(
    learned: &Learned<'_, f32>,
    cfg: &RolloutConfig<f32>,
    n: usize,
    n_times: usize,
) -> Result<(usize, usize)> {
    let d = learned.layout.d;
    let staged = (Size(n) * n_times * d + n).get();
    Ok((staged, rollout_worker_workspace_len(learned, cfg)))
}

/// Workspace (floats) msde_sample needs for n trajectories and n_times
/// output times with `workers` parallel workers, written to *out_len: the
/// outputs are staged in it (so the caller's arrays are written only on
/// success) plus one slice per worker. workers = 1 is the minimum (and all
/// a no_std build uses); 0 plans for the std build's thread count. Any
/// workspace from the one-worker size up gives identical numbers.
///
/// # Safety
/// `model` a model of this library; `config` valid; `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_sample_workspace_len(
    model: *const msde_model,
    config: *const msde_sample_config,
    n: usize,
    n_times: usize,
    workers: usize,
    out_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let out = unsafe { value_out(out_len, "out_len") }?;
        let learned = Learned::new(&m.config, params)?;
        let (staged, worker) = sizes(&learned, &cfg, n, n_times)?;
        let workers = if workers == 0 {
            default_workers().max(1)
        } else {
            workers
        };
        *out = size_answer::<f32>((Size(worker) * workers + staged).get(), "n")?;
        Ok(())
    })
}

/// Rolls out n = stop_times_len trajectories of the model from `start` at
/// time t0 and records their states at `times`.
///
/// - `start`: one state (start_len = d; every trajectory starts there) or
///   one per trajectory (start_len = n*d, row-major).
/// - `times`: n_times = times_len output times, t0 <= `times[0]` < `times[1]`
///   < ... (time units).
/// - `out`: n x n_times x d, trajectory-major: trajectory i's state at
///   `times[k]` is `out[(i*n_times + k)*d ...]`; out_len = n*n_times*d.
/// - `stop_times`: n entries, +INFINITY for a trajectory that reached the
///   last time, else the time it stopped (its later outputs are NaN).
/// - `workspace`: at least msde_sample_workspace_len floats (see there).
/// - `report`: optional (NULL to skip).
///
/// Trajectory i's noise comes from its own stream of config->seed, so the
/// result does not depend on block size, thread count or workspace size.
///
/// Errors: NULL pointers, lengths that disagree, n = 0
/// (MSDE_ERR_BAD_DIMENSION), NaN/Inf in start or times, unordered times,
/// bad settings or Euler-Maruyama on a model without diffusion
/// (MSDE_ERR_BAD_CONFIG), a short workspace. Outputs are written only on
/// MSDE_OK.
///
/// # Safety
/// `model` a model of this library; each buffer NULL (refused unless its
/// length is 0) or valid for its length; outputs and workspace disjoint.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_sample(
    model: *const msde_model,
    config: *const msde_sample_config,
    start: *const f32,
    start_len: usize,
    t0: f32,
    times: *const f32,
    times_len: usize,
    out: *mut f32,
    out_len: usize,
    stop_times: *mut f32,
    stop_times_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
    report: *mut msde_sample_report,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let start = unsafe { input(start, start_len, "start") }?;
        let times = unsafe { input(times, times_len, "times") }?;
        let out = unsafe { output(out, out_len, "out") }?;
        let stop = unsafe { output(stop_times, stop_times_len, "stop_times") }?;
        let ws = unsafe { output(workspace, workspace_len, "workspace") }?;
        let report = unsafe { optional_out(report, "report") }?;
        let learned = Learned::new(&m.config, params)?;
        let (n, d, k) = (stop.len(), m.layout.d, times.len());
        if n == 0 {
            return Err(Error::bad_dim("stop_times", "no trajectories (n = 0)"));
        }
        if k == 0 {
            return Err(Error::bad_dim("times", "no output times"));
        }
        let (staged, worker) = sizes(&learned, &cfg, n, k)?;
        check_len(out, staged - n, "out")?;
        check_room(ws, staged + worker, "workspace")?;
        check_finite(&[t0], "t0")?;
        let start = if start.len() == d {
            Start::Point(start)
        } else if Some(start.len()) == n.checked_mul(d) {
            Start::Cloud(start)
        } else {
            return Err(Error::bad_dim("start", "length is neither d nor n*d"));
        };
        let (out_stage, rest) = ws.split_at_mut(staged - n);
        let (stop_stage, rest) = rest.split_at_mut(n);
        let r = rollout(
            &learned, start, t0, times, &cfg, out_stage, stop_stage, rest,
        )?;
        out.copy_from_slice(out_stage);
        stop.copy_from_slice(stop_stage);
        if let Some(rep) = report {
            *rep = msde_sample_report {
                accepted: r.stats.accepted,
                rejected: r.stats.rejected,
                evaluations: r.stats.evaluations,
                stopped: r.stats.stopped,
            };
        }
        Ok(())
    })
}
