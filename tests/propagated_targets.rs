//! Diffusion estimators at a real frame gap, with the exact drift, on
//! ground-truth processes (issue 8): the naive moment `E[r rᵀ]/h` with
//! `r = Δz − f(z)h`, the flow-residual moment with `r = Δz − φ_h(z)`, and
//! the explicit propagated estimator that solves `M_h(D) = E[r rᵀ]` for the
//! flow residual, with the exact map and with the frozen one
//! (`propagate_frozen`, one drift Jacobian per gap at its midpoint). Each case draws `PATHS` tracked pairs from one start state
//! by fine Euler–Maruyama (`FINE` substeps per gap, one `Rng` stream per
//! case) and compares each estimate of `D(z₀)` with the truth in relative
//! Frobenius error. The naive and flow estimates are read as `D(z₀)`, the
//! propagated one as `D` at the gap's midpoint state (its second-order
//! attribution; both readings are printed).
//!
//! Run with `cargo test --release --test propagated_targets -- --nocapture`
//! to print the table.
#[path = "common/alloc_counter.rs"]
mod alloc_counter;
#[path = "common/non_normal_ou.rs"]
mod non_normal_ou;
#[path = "common/pair_training.rs"]
mod pair_training;

use morphosde_core::dynamics::{DriftJacobian, Dynamics};
use morphosde_core::integrate::{rk4_flow, rk4_flow_workspace_len};
use morphosde_core::model::{Config, DiffusionHead, DriftTeacher, Layout, Learned};
use morphosde_core::propagated::{
    DiffusionAt, Propagation, propagate, propagate_frozen, propagate_workspace_len,
};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::synthetic::EmbryoProcess;

/// Tracked pairs per case and fine Euler–Maruyama steps per gap.
const PATHS: usize = 40_000;
const FINE: usize = 200;
/// The imaging frame gap of the issue.
const GAP: f64 = 0.2;
/// RK4 substeps of the flow and of the propagated map.
const SUBSTEPS: usize = 4;

/// A limit cycle: rotation at angular speed `ω = 2.5` with radial
/// relaxation `γ(1 − |z|²)z`, `γ = 1`, towards the unit circle, and noise
/// mostly along the direction of motion (`σ = 0.3` along the tangent,
/// `0.08` across): `h‖J_f‖ ≈ 0.6` on the circle at the gap.
struct Rotation;

const OMEGA: f64 = 2.5;
const GAMMA: f64 = 1.0;

impl Dynamics<f64> for Rotation {
    fn dim(&self) -> usize {
        2
    }
    fn noise_dim(&self) -> usize {
        2
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _ws: &mut [f64]) {
        for r in 0..t.len() {
            let (x, y) = (z[2 * r], z[2 * r + 1]);
            let radial = GAMMA * (1.0 - x * x - y * y);
            f[2 * r] = radial * x - OMEGA * y;
            f[2 * r + 1] = radial * y + OMEGA * x;
        }
    }
    fn drift_and_factor(&self, z: &[f64], t: &[f64], f: &mut [f64], l: &mut [f64], ws: &mut [f64]) {
        self.drift(z, t, f, ws);
        for r in 0..t.len() {
            let (x, y) = (z[2 * r], z[2 * r + 1]);
            let norm = (x * x + y * y).sqrt().max(1e-9);
            let (c, s) = (x / norm, y / norm);
            // Columns: 0.3 × tangent (−s, c), 0.08 × radial (c, s).
            l[4 * r..4 * r + 4].copy_from_slice(&[-0.3 * s, 0.08 * c, 0.3 * c, 0.08 * s]);
        }
    }
}

impl DriftJacobian<f64> for Rotation {
    fn jacobian_workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift_jacobian(&self, z: &[f64], t: &[f64], f: &mut [f64], jac: &mut [f64], ws: &mut [f64]) {
        self.drift(z, t, f, ws);
        for r in 0..t.len() {
            let (x, y) = (z[2 * r], z[2 * r + 1]);
            let radial = GAMMA * (1.0 - x * x - y * y);
            jac[4 * r..4 * r + 4].copy_from_slice(&[
                radial - 2.0 * GAMMA * x * x,
                -2.0 * GAMMA * x * y - OMEGA,
                -2.0 * GAMMA * x * y + OMEGA,
                radial - 2.0 * GAMMA * y * y,
            ]);
        }
    }
}

/// Relative Frobenius error `‖a − b‖ / ‖b‖`.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let e: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    (e / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
}

/// Errors of the three estimators at one start state, and the sampling
/// error's scale `sqrt((‖Σ‖²_F + (tr Σ)²)/n)/‖Σ‖_F` (the relative RMS error
/// of a Gaussian second moment from `n` samples).
struct Errors {
    naive: f64,
    flow: f64,
    /// Against `D` at the gap's midpoint state `φ_{h/2}(z₀)`, the state the
    /// estimate describes to second order (see `explicit_diffusion`).
    propagated: f64,
    /// Against `D(z₀)`, as the naive and flow estimates are read.
    propagated_at_start: f64,
    /// The same estimator through the frozen map (`propagate_frozen`: one
    /// Jacobian at the midpoint state), against `D` there.
    frozen: f64,
    sampling: f64,
}

fn measure<S: DriftJacobian<f64> + Sync>(process: &S, z0: &[f64], t0: f64, seed: u64) -> Errors {
    let d = process.dim();
    let dd = d * d;
    let mut ws =
        vec![0.0; propagate_workspace_len(process, 1).max(rk4_flow_workspace_len(process, 1))];
    // Truth D(z₀) and the drift at the start.
    let (mut f0, mut l, mut truth) = (vec![0.0; d], vec![0.0; dd], vec![0.0; dd]);
    process.drift_and_factor(z0, &[t0], &mut f0, &mut l, &mut ws);
    for i in 0..d {
        for j in 0..d {
            truth[i * d + j] = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
        }
    }
    let mut flow_end = vec![0.0; d];
    rk4_flow(process, z0, &[t0], &[GAP], SUBSTEPS, &mut flow_end, &mut ws).unwrap();
    // Second moments about z₀ + f h and about φ_h(z₀).
    let (mut naive, mut flow) = (vec![0.0; dd], vec![0.0; dd]);
    let dt = GAP / FINE as f64;
    let (mut z, mut f, mut noise) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let mut rng = Rng::stream(seed, Family::Data, 0);
    for _ in 0..PATHS {
        z.copy_from_slice(z0);
        for step in 0..FINE {
            let t = t0 + dt * step as f64;
            process.drift_and_factor(&z, &[t], &mut f, &mut l, &mut ws);
            rng.fill_normal(&mut noise);
            for i in 0..d {
                let kick: f64 = (0..d).map(|k| l[i * d + k] * noise[k]).sum();
                z[i] += f[i] * dt + kick * dt.sqrt();
            }
        }
        for i in 0..d {
            for j in 0..d {
                let ri = z[i] - z0[i] - f0[i] * GAP;
                let rj = z[j] - z0[j] - f0[j] * GAP;
                naive[i * d + j] += ri * rj;
                flow[i * d + j] += (z[i] - flow_end[i]) * (z[j] - flow_end[j]);
            }
        }
    }
    let scale = 1.0 / (PATHS as f64 * GAP);
    naive
        .iter_mut()
        .chain(flow.iter_mut())
        .for_each(|x| *x *= scale);
    // The propagated explicit estimator from the flow moments.
    let mut states = vec![0.0; (SUBSTEPS + 1) * d];
    let mut props = vec![0.0; (SUBSTEPS + 1) * dd];
    propagate(
        process,
        z0,
        &[t0],
        &[GAP],
        SUBSTEPS,
        &mut states,
        &mut props,
        &mut ws,
    )
    .unwrap();
    assert_eq!(&states[SUBSTEPS * d..], &flow_end[..]);
    let gaps = [GAP];
    let prop = Propagation::new(d, SUBSTEPS, &gaps, &props).unwrap();
    let mut est = vec![0.0; dd];
    let mut est_ws = vec![0.0; prop.explicit_diffusion_workspace_len()];
    prop.explicit_diffusion(&flow, &mut est, &mut est_ws)
        .unwrap();
    let mut frozen_props = vec![0.0; (SUBSTEPS + 1) * dd];
    propagate_frozen(
        process,
        z0,
        &[t0],
        &[GAP],
        SUBSTEPS,
        &mut states,
        &mut frozen_props,
        &mut ws,
    )
    .unwrap();
    let mut est_frozen = vec![0.0; dd];
    Propagation::new(d, SUBSTEPS, &gaps, &frozen_props)
        .unwrap()
        .explicit_diffusion(&flow, &mut est_frozen, &mut est_ws)
        .unwrap();
    let mid = &states[SUBSTEPS / 2 * d..(SUBSTEPS / 2 + 1) * d];
    let mut truth_mid = vec![0.0; dd];
    process.drift_and_factor(mid, &[t0 + 0.5 * GAP], &mut f, &mut l, &mut ws);
    for i in 0..d {
        for j in 0..d {
            truth_mid[i * d + j] = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
        }
    }
    let frob2: f64 = flow.iter().map(|x| x * x).sum();
    let trace: f64 = (0..d).map(|i| flow[i * d + i]).sum();
    Errors {
        naive: rel_err(&naive, &truth),
        flow: rel_err(&flow, &truth),
        propagated: rel_err(&est, &truth_mid),
        propagated_at_start: rel_err(&est, &truth),
        frozen: rel_err(&est_frozen, &truth_mid),
        sampling: ((frob2 + trace * trace) / PATHS as f64).sqrt() / frob2.sqrt(),
    }
}

fn report(name: &str, e: &Errors) {
    eprintln!(
        "{name:<36} naive {:6.1}%  flow {:6.1}%  propagated {:5.2}% (vs D(z0) {:5.2}%)  \
         frozen {:5.2}%  sampling {:4.2}%",
        100.0 * e.naive,
        100.0 * e.flow,
        100.0 * e.propagated,
        100.0 * e.propagated_at_start,
        100.0 * e.frozen,
        100.0 * e.sampling
    );
}

#[test]
fn propagated_estimator_recovers_ou_diffusion_at_the_imaging_gap() {
    for (k, z0) in [[0.0, 0.0, 0.0], [1.0, -0.5, 0.8]].iter().enumerate() {
        let e = measure(&non_normal_ou::process(), z0, 0.0, 100 + k as u64);
        report(&format!("OU non-normal, z0 = {z0:?}"), &e);
        // Linear drift, constant D: the map is exact up to RK4/quadrature
        // (< 1e-6 at 4 substeps) and Euler–Maruyama (dt‖A‖ ≈ 0.3%), so what
        // is left is sampling error.
        assert!(e.propagated < 0.05, "propagated {}", e.propagated);
        // The frozen map is exact for a linear drift.
        assert!(e.frozen < 0.05, "frozen {}", e.frozen);
        assert!(
            e.propagated < 4.0 * e.sampling + 0.005,
            "propagated {}",
            e.propagated
        );
        assert!(e.naive > 0.18, "naive {}", e.naive);
    }
}

#[test]
fn propagated_estimator_recovers_rotational_diffusion_at_the_imaging_gap() {
    for (k, z0) in [[1.0, 0.0], [0.6, 0.9]].iter().enumerate() {
        let e = measure(&Rotation, z0, 0.0, 200 + k as u64);
        report(&format!("rotation, z0 = {z0:?}"), &e);
        assert!(e.propagated < 0.10, "propagated {}", e.propagated);
        assert!(e.frozen < 0.10, "frozen {}", e.frozen);
        assert!(e.naive > 1.0, "naive {}", e.naive);
    }
}

#[test]
fn propagated_estimator_recovers_embryo_diffusion_at_the_imaging_gap() {
    let p = EmbryoProcess { d: 4 };
    for (k, (z0, name)) in [
        ([0.5, 0.0, 0.0, 0.0], "embryo backbone (z1 = 0)"),
        ([0.5, 1.5, 0.6, -0.45], "embryo branch (z1 = 1.5)"),
    ]
    .iter()
    .enumerate()
    {
        let e = measure(&p, z0, 1.0, 300 + k as u64);
        report(name, &e);
        assert!(e.propagated < 0.10, "propagated {}", e.propagated);
        assert!(e.frozen < 0.10, "frozen {}", e.frozen);
        assert!(e.propagated < e.flow && e.propagated < e.naive);
    }
}

/// Relative Frobenius error of the frozen map `M_h(D)` (one Jacobian at
/// the gap's midpoint) against the exact one, for `D` the process's own at
/// the midpoint held over the gap, and of the frozen `P_0 = ∂φ_h/∂z`.
fn frozen_map_error<S: DriftJacobian<f64> + Sync>(
    process: &S,
    z0: &[f64],
    t0: f64,
    gap: f64,
) -> (f64, f64) {
    let d = process.dim();
    let dd = d * d;
    let mut ws = vec![0.0; propagate_workspace_len(process, 1)];
    let mut states = vec![0.0; (SUBSTEPS + 1) * d];
    let (mut exact, mut frozen) = (
        vec![0.0; (SUBSTEPS + 1) * dd],
        vec![0.0; (SUBSTEPS + 1) * dd],
    );
    let args = (z0, [t0], [gap]);
    propagate(
        process,
        args.0,
        &args.1,
        &args.2,
        SUBSTEPS,
        &mut states,
        &mut exact,
        &mut ws,
    )
    .unwrap();
    propagate_frozen(
        process,
        args.0,
        &args.1,
        &args.2,
        SUBSTEPS,
        &mut states,
        &mut frozen,
        &mut ws,
    )
    .unwrap();
    let mid = &states[SUBSTEPS / 2 * d..(SUBSTEPS / 2 + 1) * d];
    let (mut f, mut l, mut dm) = (vec![0.0; d], vec![0.0; dd], vec![0.0; dd]);
    process.drift_and_factor(mid, &[t0 + 0.5 * gap], &mut f, &mut l, &mut ws);
    for i in 0..d {
        for j in 0..d {
            dm[i * d + j] = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
        }
    }
    let map = |props: &[f64]| {
        let mut out = vec![0.0; dd];
        Propagation::new(d, SUBSTEPS, &args.2, props)
            .unwrap()
            .map(DiffusionAt::Constant, &dm, &mut out, &mut vec![0.0; 2 * dd])
            .unwrap();
        out
    };
    (
        rel_err(&map(&frozen), &map(&exact)),
        rel_err(&frozen[..dd], &exact[..dd]),
    )
}

#[test]
fn frozen_map_stays_close_to_the_exact_one_at_the_imaging_gap() {
    let embryo = EmbryoProcess { d: 4 };
    // (name, gap, bounds on the M_h and P_0 errors just above the measured
    // ones, in the comments). The limit cycle turns J by ωh = 0.5 rad over
    // the gap: a few percent; the embryo drift is close to linear over a
    // gap: round-off-like.
    let cases: [(&str, f64, f64, f64); 6] = [
        ("rotation (1, 0)", GAP, 3e-2, 1.2e-2), // 2.52e-2, 1.02e-2
        ("rotation (0.6, 0.9)", GAP, 3.5e-2, 1.5e-2), // 2.89e-2, 1.21e-2
        ("embryo backbone", GAP, 5e-6, 4e-5),   // 3.52e-6, 2.90e-5
        ("embryo branch", GAP, 3e-5, 4e-5),     // 2.21e-5, 2.90e-5
        ("embryo backbone", 0.35, 3e-6, 7e-5),  // 2.00e-6, 5.75e-5
        ("embryo branch", 0.35, 2e-5, 7e-5),    // 1.29e-5, 5.75e-5
    ];
    for (name, gap, bound_m, bound_p0) in cases {
        let (m, p0) = match name {
            "rotation (1, 0)" => frozen_map_error(&Rotation, &[1.0, 0.0], 0.0, gap),
            "rotation (0.6, 0.9)" => frozen_map_error(&Rotation, &[0.6, 0.9], 0.0, gap),
            "embryo backbone" => frozen_map_error(&embryo, &[0.5, 0.0, 0.0, 0.0], 1.0, gap),
            _ => frozen_map_error(&embryo, &[0.5, 1.5, 0.6, -0.45], 1.0, gap),
        };
        eprintln!("frozen vs exact, {name:<22} h = {gap}: M_h {m:.2e}, P_0 {p0:.2e}");
        assert!(m < bound_m && p0 < bound_p0, "{name} {gap}: {m:e} {p0:e}");
    }
}

#[test]
fn propagation_and_its_maps_do_not_allocate() {
    let p = EmbryoProcess { d: 4 };
    let z = [0.1f32, 0.8, 0.2, -0.1, 0.0, 0.05, -0.3, 0.2];
    let (t, h) = ([0.6f32, 1.0], [0.2f32, 0.2]);
    let mut states = [0.0f32; 2 * 5 * 4];
    let mut props = [0.0f32; 2 * 5 * 16];
    let mut ws = [0.0f32; 1024];
    let mut dm = [0.0f32; 2 * 5 * 16];
    for (i, x) in dm.iter_mut().enumerate() {
        *x = if i % 5 == 0 { 0.1 } else { 0.0 };
    }
    let target = [0.05f32; 32];
    let (mut out, mut grad, mut est) = ([0.0f32; 32], [0.0f32; 160], [0.0f32; 32]);
    let (n, loss) = alloc_counter::count_allocations(|| {
        propagate_frozen(&p, &z, &t, &h, 4, &mut states, &mut props, &mut ws).unwrap();
        propagate(&p, &z, &t, &h, 4, &mut states, &mut props, &mut ws).unwrap();
        let prop = Propagation::new(4, 4, &h, &props).unwrap();
        prop.map(DiffusionAt::Path, &dm, &mut out, &mut ws).unwrap();
        prop.adjoint(DiffusionAt::Constant, &target, &mut out, &mut ws)
            .unwrap();
        prop.explicit_diffusion(&target, &mut est, &mut ws).unwrap();
        prop.moment_loss(DiffusionAt::Path, &dm, &target, &mut grad, &mut ws)
            .unwrap()
    });
    assert_eq!(n, 0);
    assert!(loss.is_finite());
    // The learned drift's forward-mode Jacobian, through the same path.
    let config = Config {
        d: 4,
        depth: 2,
        width: 16,
        ..Config::default()
    };
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(1, &mut params).unwrap();
    let model = Learned::new(&config, &params).unwrap();
    let mut ws = vec![0.0f32; propagate_workspace_len(&model, 2)];
    let (n, ()) = alloc_counter::count_allocations(|| {
        propagate(&model, &z, &t, &h, 4, &mut states, &mut props, &mut ws).unwrap();
        propagate_frozen(&model, &z, &t, &h, 4, &mut states, &mut props, &mut ws).unwrap();
    });
    assert_eq!(n, 0);
}

/// End to end with the learned drift and learned `D` at the imaging gap:
/// 8192 tracked pairs of the non-normal OU over `h = 0.2` (Euler–Maruyama,
/// 50 substeps per gap), teacher velocities from the exact drift (a perfect
/// UOT teacher: this isolates the diffusion target), an affine model
/// trained with each residual. The learned `D` at four held-out states,
/// relative Frobenius error: the one-step and flow targets learn
/// `Σ_h/h ≠ D`, the propagated targets (exact and frozen map; the two maps
/// agree for this linear drift, `D_θ` is read along the path or at the
/// midpoint) learn `D`.
#[test]
fn training_with_the_propagated_target_learns_d_at_the_imaging_gap() {
    use morphosde_core::integrate::sde::{SdeConfig, em_path, em_path_workspace_len};
    use morphosde_core::model::{Residual, TargetMode};
    let (n, d) = (8192, 3);
    let mut x = vec![0.0f64; n * d];
    Rng::stream(7, Family::Data, 0).fill_normal(&mut x);
    x.iter_mut().for_each(|v| *v *= 0.7);
    let mut y = vec![0.0f64; n * d];
    let mut stop = vec![0.0; n];
    let mut rngs: Vec<Rng> = (0..n as u64)
        .map(|i| Rng::stream(7, Family::Trajectory, i))
        .collect();
    let mut ws = vec![0.0; em_path_workspace_len::<f64, _>(&non_normal_ou::process(), n)];
    let em = SdeConfig {
        h_max: GAP / 50.0,
        trace_clip: None,
    };
    em_path(
        &non_normal_ou::process(),
        &x,
        0.0,
        &[GAP],
        &em,
        &mut rngs,
        &mut y,
        &mut stop,
        &mut ws,
    )
    .unwrap();
    let mut v = vec![0.0f64; n * d];
    non_normal_ou::process().drift(&x, &vec![0.0; n], &mut v, &mut []);
    let f32s = |a: &[f64]| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let (x, y, v) = (f32s(&x), f32s(&y), f32s(&v));
    let truth = non_normal_ou::diffusion();
    let mut errors = [0.0; 4];
    for (slot, residual) in [
        Residual::OneStep,
        Residual::Flow,
        Residual::Propagated,
        Residual::PropagatedFrozen,
    ]
    .into_iter()
    .enumerate()
    {
        let config = Config {
            d,
            time_features: 0,
            depth: 0,
            head: Some(DiffusionHead::Full),
            lambda_diff: 1.0,
            warmup_epochs: 0,
            target_mode: TargetMode::Pairwise,
            residual,
            flow_substeps: 4,
            k_neighbours: 16,
            shrinkage: 0.0,
            target_epsilon: 0.0,
            clip_grad_norm: 0.0,
            // The teacher `v` is the exact drift: the drift learns it as
            // it is (the flow teacher would read it as a chord).
            drift_teacher: DriftTeacher::Chord,
            seed: 5,
            ..Config::default()
        };
        let params = pair_training::train(
            &config,
            &x,
            &y,
            &v,
            GAP as f32,
            &[(1e-2, 20), (3e-3, 10), (1e-3, 10)],
        );
        let learned = Learned::new(&config, &params).unwrap();
        let held_out = [
            0.0f32, 0.0, 0.0, 0.5, -0.3, 0.2, -0.4, 0.6, 0.1, 0.2, 0.2, -0.6,
        ];
        let (mut f, mut l) = ([0.0f32; 12], [0.0f32; 36]);
        let mut iws = vec![0.0f32; learned.workspace_len(4)];
        learned.drift_and_factor(&held_out, &[0.0; 4], &mut f, &mut l, &mut iws);
        let mut total = 0.0;
        for p in 0..4 {
            let lp = &l[p * 9..(p + 1) * 9];
            let dm: Vec<f64> = (0..9)
                .map(|c| {
                    let (i, j) = (c / 3, c % 3);
                    (0..3)
                        .map(|k| f64::from(lp[i * 3 + k]) * f64::from(lp[j * 3 + k]))
                        .sum()
                })
                .collect();
            total += rel_err(&dm, &truth) / 4.0;
        }
        errors[slot] = total;
    }
    eprintln!(
        "learned D at h = 0.2 (OU non-normal, exact teacher), mean rel. Frobenius error: \
         one-step {:.1}%, flow {:.1}%, propagated {:.1}%, frozen {:.1}%",
        100.0 * errors[0],
        100.0 * errors[1],
        100.0 * errors[2],
        100.0 * errors[3]
    );
    assert!(errors[2] < 0.15, "propagated {}", errors[2]);
    assert!(errors[3] < 0.15, "frozen {}", errors[3]);
    assert!(errors[0] > 0.18 && errors[1] > 0.18, "{errors:?}");
}
