//! Scoring a learned model against a known process (`demo`, `ablate`,
//! `bench-recovery`): rollouts as `simulate` runs them by default, the
//! [`Hybrid`] dynamics that swap the drift or the noise for the truth's, the
//! learned `D = L Lᵀ` at given states, and relative errors of learned
//! against true values state by state ([`RelativeErrors`]).

use super::simulate::default_method;
use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::rollout::{
    MAX_BLOCK_ROWS, Method, RolloutConfig, Start, default_workers, rollout, rollout_workspace_len,
};
use morphosde_core::model::Learned;
use morphosde_core::synthetic::GroundTruth;

/// Rolls `dynamics` out from `start` (`n×d`) at `t0` to `times`, the way
/// `simulate` does with its default flags
/// ([`default_method`]), trajectory `i`'s
/// noise from stream `i` of `seed`. Returns `n × times.len() × d`
/// (trajectory-major; a trajectory that blew up has NaN from then on).
pub fn default_rollouts<S: Dynamics<f32> + Sync>(
    dynamics: &S,
    start: &[f32],
    t0: f32,
    times: &[f32],
    seed: u64,
) -> Result<Vec<f32>, String> {
    let method = default_method(dynamics.noise_dim() > 0);
    rollouts_with(dynamics, method, start, t0, times, seed)
}

/// [`default_rollouts`] with the integration `method`.
pub fn rollouts_with<S: Dynamics<f32> + Sync>(
    dynamics: &S,
    method: Method<f32>,
    start: &[f32],
    t0: f32,
    times: &[f32],
    seed: u64,
) -> Result<Vec<f32>, String> {
    let d = dynamics.dim();
    let n = start.len() / d;
    let cfg = RolloutConfig {
        method,
        seed,
        block_rows: MAX_BLOCK_ROWS,
    };
    let mut out = vec![0.0f32; n * times.len() * d];
    let mut stops = vec![0.0f32; n];
    let mut ws = vec![0.0f32; rollout_workspace_len(dynamics, &cfg, default_workers())];
    rollout(
        dynamics,
        Start::Cloud(start),
        t0,
        times,
        &cfg,
        &mut out,
        &mut stops,
        &mut ws,
    )
    .map_err(|e| format!("rollout: {e}"))?;
    Ok(out)
}

/// The finite states at output time number `k` of a rollout array
/// (`n × times × d`, `times` outputs per trajectory).
pub fn rollout_time(paths: &[f32], d: usize, times: usize, k: usize) -> Vec<f32> {
    paths
        .chunks_exact(times * d)
        .flat_map(|p| p[k * d..(k + 1) * d].iter().copied())
        .filter(|x| x.is_finite())
        .collect()
}

/// Dynamics with the drift of one of a learned model and a known process
/// and the noise of the other: rolled out like the model, they say whether
/// its drift or its noise keeps it from the true process's score.
pub struct Hybrid<'a, P> {
    pub model: Learned<'a, f32>,
    pub truth: P,
    /// Learned drift with the true noise (else the true drift with the
    /// learned noise).
    pub learned_drift: bool,
}

impl<P: GroundTruth> Dynamics<f32> for Hybrid<'_, P> {
    fn dim(&self) -> usize {
        self.truth.d()
    }
    fn noise_dim(&self) -> usize {
        if self.learned_drift {
            self.truth.d()
        } else {
            self.model.noise_dim()
        }
    }
    /// The discarded drift (`rows×d`), then the larger of the two
    /// dynamics' own workspaces.
    fn workspace_len(&self, rows: usize) -> usize {
        rows * self.truth.d()
            + self
                .model
                .workspace_len(rows)
                .max(Dynamics::<f32>::workspace_len(&self.truth, rows))
    }
    fn drift(&self, z: &[f32], t: &[f32], f: &mut [f32], workspace: &mut [f32]) {
        if self.learned_drift {
            self.model.drift(z, t, f, workspace)
        } else {
            self.truth.drift(z, t, f, workspace)
        }
    }
    fn drift_and_factor(&self, z: &[f32], t: &[f32], f: &mut [f32], l: &mut [f32], ws: &mut [f32]) {
        let (discarded, ws) = ws.split_at_mut(t.len() * self.truth.d());
        if self.learned_drift {
            self.truth.drift_and_factor(z, t, discarded, l, ws);
            self.model.drift(z, t, f, ws);
        } else {
            self.model.drift_and_factor(z, t, discarded, l, ws);
            self.truth.drift(z, t, f, ws);
        }
    }
}

/// A known process's drift without its noise (`q = 0`): rolled out like a
/// drift-only model (the ODE), it is the best a drift-only model can do.
pub struct DriftOnly<P>(pub P);

impl<P: GroundTruth> Dynamics<f32> for DriftOnly<P> {
    fn dim(&self) -> usize {
        self.0.d()
    }
    fn noise_dim(&self) -> usize {
        0
    }
    fn workspace_len(&self, rows: usize) -> usize {
        Dynamics::<f32>::workspace_len(&self.0, rows)
    }
    fn drift(&self, z: &[f32], t: &[f32], f: &mut [f32], workspace: &mut [f32]) {
        self.0.drift(z, t, f, workspace)
    }
    /// Never called (no noise); the drift alone.
    fn drift_and_factor(
        &self,
        z: &[f32],
        t: &[f32],
        f: &mut [f32],
        _l: &mut [f32],
        ws: &mut [f32],
    ) {
        self.0.drift(z, t, f, ws)
    }
}

/// The learned `D = L Lᵀ` (`rows × d × d`) at states `z` and times `t`;
/// zeros for a model without a diffusion head.
pub fn learned_diffusion(model: &Learned<'_, f32>, z: &[f32], t: &[f32]) -> Vec<f32> {
    let (d, q) = (model.dim(), model.noise_dim());
    let rows = t.len();
    let mut dm = vec![0.0f32; rows * d * d];
    if q == 0 {
        return dm;
    }
    let mut f = vec![0.0f32; rows * d];
    let mut l = vec![0.0f32; rows * d * q];
    let mut ws = vec![0.0f32; model.workspace_len(rows)];
    model.drift_and_factor(z, t, &mut f, &mut l, &mut ws);
    for r in 0..rows {
        let (lr, out) = (
            &l[r * d * q..(r + 1) * d * q],
            &mut dm[r * d * d..(r + 1) * d * d],
        );
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = (0..q).map(|k| lr[i * q + k] * lr[j * q + k]).sum();
            }
        }
    }
    dm
}

/// Learned against true values at a set of states: `‖x̂ − x‖ / ‖x‖` state
/// by state (Euclidean, Frobenius for matrices), and the summed squares
/// `[Σ‖x̂ − x‖², Σ‖x‖²]` of each group of states (accumulated entry by
/// entry in state order), for the pooled error `√(Σ num / Σ den)`.
pub struct RelativeErrors {
    pub per_state: Vec<f64>,
    pub sums: Vec<[f64; 2]>,
}

impl RelativeErrors {
    /// Compares `learned` (`rows × width`) with `truth(r, out)`, the true
    /// values of state `r`; state `r` belongs to group `group(r) < groups`.
    pub fn new(
        learned: &[f32],
        width: usize,
        mut truth: impl FnMut(usize, &mut [f64]),
        group: impl Fn(usize) -> usize,
        groups: usize,
    ) -> Self {
        let mut exact = vec![0.0f64; width];
        let mut sums = vec![[0.0f64; 2]; groups];
        let per_state = learned
            .chunks_exact(width)
            .enumerate()
            .map(|(r, row)| {
                truth(r, &mut exact);
                let sum = &mut sums[group(r)];
                let (mut num, mut den) = (0.0f64, 0.0f64);
                for (&a, &b) in row.iter().zip(&exact) {
                    let e = (f64::from(a) - b).powi(2);
                    sum[0] += e;
                    sum[1] += b * b;
                    num += e;
                    den += b * b;
                }
                (num / den).sqrt()
            })
            .collect();
        RelativeErrors { per_state, sums }
    }

    /// `√(Σ num / Σ den)` over the groups `which`.
    pub fn pooled(&self, which: &[usize]) -> f64 {
        let (num, den) = which.iter().fold((0.0, 0.0), |(n, d), &g| {
            (n + self.sums[g][0], d + self.sums[g][1])
        });
        (num / den).sqrt()
    }
}

/// [`RelativeErrors`] of `learned` (`rows × width`) against
/// `exact(z, t, out)`, the truth evaluated in f64 at each state of `z`
/// (`rows × d`) and its time in `t`.
fn against_truth(
    learned: &[f32],
    width: usize,
    z: &[f32],
    t: &[f32],
    mut exact: impl FnMut(&[f64], f64, &mut [f64]),
    group: impl Fn(usize) -> usize,
    groups: usize,
) -> RelativeErrors {
    let d = z.len() / t.len().max(1);
    let mut zr = vec![0.0f64; d];
    let truth = |r: usize, out: &mut [f64]| {
        for (x, &v) in zr.iter_mut().zip(&z[r * d..(r + 1) * d]) {
            *x = f64::from(v);
        }
        exact(&zr, f64::from(t[r]), out);
    };
    RelativeErrors::new(learned, width, truth, group, groups)
}

/// The learned drift's [`RelativeErrors`] against `truth` at states `z`
/// (`rows × d`) and times `t`.
pub fn drift_errors<P: GroundTruth>(
    model: &Learned<'_, f32>,
    truth: &P,
    z: &[f32],
    t: &[f32],
    group: impl Fn(usize) -> usize,
    groups: usize,
) -> RelativeErrors {
    let mut learned = vec![0.0f32; z.len()];
    let mut ws = vec![0.0f32; model.workspace_len(t.len())];
    model.drift(z, t, &mut learned, &mut ws);
    let exact = |zr: &[f64], tr: f64, out: &mut [f64]| truth.drift_at(zr, tr, out);
    against_truth(&learned, truth.d(), z, t, exact, group, groups)
}

/// The learned `D`'s [`RelativeErrors`] (Frobenius) against `truth` at
/// states `z` (`rows × d`) and times `t`.
pub fn diffusion_errors<P: GroundTruth>(
    model: &Learned<'_, f32>,
    truth: &P,
    z: &[f32],
    t: &[f32],
    group: impl Fn(usize) -> usize,
    groups: usize,
) -> RelativeErrors {
    let d = truth.d();
    let learned = learned_diffusion(model, z, t);
    let mut l = vec![0.0f64; d * d];
    let exact = |zr: &[f64], tr: f64, out: &mut [f64]| truth.diffusion_at(zr, tr, &mut l, out);
    against_truth(&learned, d * d, z, t, exact, group, groups)
}
