//! The core's entry points make no heap allocation (embedded contract).
#[path = "common/alloc_counter.rs"]
mod alloc_counter;

use alloc_counter::count_allocations;
use morphosde_core::linalg::{cholesky_in_place, sym_eigen};
use morphosde_core::rng::{Family, Rng};

#[test]
fn counter_detects_an_allocation() {
    let (n, v) = count_allocations(|| vec![1u8; 16]);
    assert_eq!(v.len(), 16);
    assert!(n >= 1);
}

#[test]
fn rng_and_linalg_do_not_allocate() {
    let mut a = [0.0f32; 16];
    let mut w = [0.0f32; 4];
    let mut v = [0.0f32; 16];
    let (n, ()) = count_allocations(|| {
        let mut rng = Rng::stream(7, Family::Data, 11);
        rng.fill_normal(&mut a);
        for i in 0..4 {
            a[i * 4 + i] += 8.0;
        }
        let mut spd = a;
        for i in 0..4 {
            for j in 0..4 {
                spd[i * 4 + j] = 0.5 * (a[i * 4 + j] + a[j * 4 + i]);
            }
        }
        let mut b = spd;
        sym_eigen(&mut b, 4, &mut w, &mut v).unwrap();
        cholesky_in_place(&mut spd, 4).unwrap();
    });
    assert_eq!(n, 0);
}

#[test]
fn fastmath_does_not_allocate() {
    let mut xs = [0.25f32; 1000];
    let (n, lse) = count_allocations(|| {
        morphosde_core::fastmath::exp_in_place(&mut xs);
        morphosde_core::fastmath::log_sum_exp(&xs)
    });
    assert_eq!(n, 0);
    assert!(lse.is_finite());
}

#[test]
fn rollout_step_does_not_allocate() {
    use morphosde_core::integrate::ode::Dopri5Config;
    use morphosde_core::integrate::rollout::{
        Method, RolloutConfig, Start, rollout, rollout_workspace_len,
    };
    use morphosde_core::integrate::sde::SdeConfig;
    use morphosde_core::synthetic::EmbryoProcess;
    let p = EmbryoProcess { d: 6 };
    let n = 100;
    let times = [0.25f32, 0.5, 1.0];
    let mut out = vec![0.0f32; n * times.len() * 6];
    let mut stop = vec![0.0f32; n];
    for method in [
        Method::EulerMaruyama(SdeConfig {
            h_max: 0.05,
            trace_clip: Some(1.0),
        }),
        Method::Rk4 { h: 0.05 },
        Method::Dopri5(Dopri5Config::new(1e-4, 1e-4)),
    ] {
        let config = RolloutConfig {
            method,
            seed: 3,
            block_rows: 32,
        };
        // One worker's workspace: the rollout runs on this thread.
        let mut ws = vec![0.0f32; rollout_workspace_len(&p, &config, 1)];
        let (allocations, result) = count_allocations(|| {
            rollout(
                &p,
                Start::Point(&[0.0, 0.4, 0.0, 0.0, 0.0, 0.0]),
                0.0,
                &times,
                &config,
                &mut out,
                &mut stop,
                &mut ws,
            )
        });
        assert_eq!(result.unwrap().stats.stopped, 0);
        assert_eq!(allocations, 0, "{method:?}");
    }
}

#[test]
fn metrics_do_not_allocate() {
    use morphosde_core::metrics::{
        GroundCost, PlanEntry, calibration_summary, diffusion_spectrum, emd, emd_workspace_len,
        energy_distance, sliced_wasserstein, wasserstein1,
    };
    let mut x = [0.0f32; 40 * 3];
    let mut y = [0.0f32; 30 * 3];
    let mut rng = Rng::stream(1, Family::Data, 0);
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    let mut ws = [0.0f32; 10 * 3 + 70];
    let l = [1.0f32, 0.0, 0.5, 2.0];
    let (mut w, mut v, mut scratch) = ([0.0f32; 2], [0.0f32; 4], [0.0f32; 4]);
    let (mut qa, mut qr) = ([0.0f32; 3], [0.0f32; 3]);
    let len = emd_workspace_len(40, 30);
    let (mut floats, mut indices) = (vec![0.0f64; len.floats], vec![0u32; len.indices]);
    let mut plan = [PlanEntry::default(); 69];
    let (n, ()) = count_allocations(|| {
        assert!(wasserstein1(&x, None, &y, None, 3, &mut floats, &mut indices).unwrap() > 0.0);
        let sq = GroundCost::SquaredEuclidean;
        let p = Some(&mut plan[..]);
        assert!(emd(&x, None, &y, None, 3, sq, p, &mut floats, &mut indices).is_ok());
        assert!(energy_distance(&x, &y, 3).unwrap() > 0.0);
        assert!(sliced_wasserstein(&x, &y, 3, 10, 4, &mut ws).unwrap() > 0.0);
        diffusion_spectrum(&l, 2, 2, &mut w, &mut v, &mut scratch).unwrap();
        let levels = [0.1f32, 0.5, 0.9];
        calibration_summary(&x[..36], &y[..36], 2, &levels, &mut qa, &mut qr, &mut ws).unwrap();
    });
    assert_eq!(n, 0);
}

/// A training step (full-rank diffusion head, flow residual, pairwise and
/// plan-weighted targets; the propagated diffusion loss), the learned
/// dynamics and the model codec.
#[test]
fn train_step_and_codec_do_not_allocate() {
    use morphosde_core::codec::{load, model_bytes_len, save};
    use morphosde_core::dynamics::Dynamics;
    use morphosde_core::model::{
        Config, DiffusionHead, DriftTeacher, Layout, Learned, Residual, TargetMode,
    };
    use morphosde_core::train::{AdamState, Batch, StepPlan, train_step};
    let (n, m, d) = (16, 12, 3);
    let mut data = vec![0.0f32; 4 * n * d + m * d];
    Rng::stream(1, Family::Data, 0).fill_normal(&mut data);
    let (x, rest) = data.split_at(n * d);
    let (v, rest) = rest.split_at(n * d);
    let (y, y_cloud) = rest.split_at(n * d);
    let y_cloud = &y_cloud[..m * d];
    let t = vec![0.5f32; n];
    let h = vec![0.2f32; n];
    let mass = vec![1.0f32; n];
    let plan = vec![1.0f32 / (n * m) as f32; n * m];
    for (learn_diffusion, mode, residual, drift_teacher) in [
        (
            true,
            TargetMode::Pairwise,
            Residual::Flow,
            DriftTeacher::Chord,
        ),
        (
            true,
            TargetMode::PlanWeighted,
            Residual::Flow,
            DriftTeacher::Chord,
        ),
        (
            true,
            TargetMode::Pairwise,
            Residual::Propagated,
            DriftTeacher::Chord,
        ),
        (
            true,
            TargetMode::Pairwise,
            Residual::PropagatedFrozen,
            DriftTeacher::Flow,
        ),
        (
            true,
            TargetMode::Pairwise,
            Residual::OneStep,
            DriftTeacher::Flow,
        ),
        (
            true,
            TargetMode::PlanWeighted,
            Residual::Flow,
            DriftTeacher::Flow,
        ),
        (
            false,
            TargetMode::Pairwise,
            Residual::Flow,
            DriftTeacher::Flow,
        ),
    ] {
        let config = Config {
            d,
            depth: 2,
            width: 16,
            head: learn_diffusion.then_some(DiffusionHead::Full),
            target_mode: mode,
            residual,
            drift_teacher,
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(3, &mut params).unwrap();
        let (mut am, mut av) = (vec![0.0f32; layout.len], vec![0.0f32; layout.len]);
        let mut ws = vec![0.0f32; StepPlan::new(&config).unwrap().workspace_len(n)];
        let mut bytes = vec![0u8; model_bytes_len::<f32>(&config).unwrap()];
        let mut back = vec![0.0f32; layout.len];
        let mut f = vec![0.0f32; n * d];
        let mut l = vec![0.0f32; n * d * d];
        let batch = Batch {
            x,
            t: &t,
            h: &h,
            v_hat: v,
            mass: &mass,
            y: if mode == TargetMode::Pairwise {
                y
            } else {
                y_cloud
            },
            plan: if mode == TargetMode::Pairwise {
                &[]
            } else {
                &plan
            },
        };
        let (count, ()) = count_allocations(|| {
            let mut adam = AdamState {
                m: &mut am,
                v: &mut av,
                steps: 0,
            };
            for epoch in 0..3 {
                train_step(
                    &StepPlan::new(&config).unwrap(),
                    epoch,
                    &batch,
                    &mut params,
                    &mut adam,
                    &mut ws,
                )
                .unwrap();
            }
            let learned = Learned::new(&config, &params).unwrap();
            if learn_diffusion {
                learned.drift_and_factor(x, &t, &mut f, &mut l, &mut ws);
            } else {
                learned.drift(x, &t, &mut f, &mut ws);
            }
            save(&config, &params, &mut bytes).unwrap();
            load(&bytes, &mut back).unwrap();
        });
        assert_eq!(count, 0, "{mode:?} {residual:?} {drift_teacher:?}");
        assert_eq!(back, params);
        assert!(l.iter().chain(&f).all(|v| v.is_finite()));
    }
}

#[test]
fn uot_solve_does_not_allocate() {
    use morphosde_core::uot::{
        TrackBound, Tracks, UotConfig, UotMode, UotOutput, UotProblem, solve_uot, uot_workspace_len,
    };
    let (n, m, d) = (40, 37, 3);
    let mut x = vec![0.0f32; n * d];
    let mut y = vec![0.0f32; m * d];
    let mut rng = Rng::stream(3, Family::Data, 0);
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut y);
    let a = vec![1.0f32 / n as f32; n];
    let b = vec![1.0f32 / m as f32; m];
    let pairs = [0u32, 1, 5, 7];
    for mode in [UotMode::Dense, UotMode::Online] {
        let mut ws = vec![0.0f32; uot_workspace_len(n, m, d, mode)];
        let (mut f, mut g) = (vec![0.0f32; n], vec![0.0f32; m]);
        let (mut r, mut c) = (vec![0.0f32; n], vec![0.0f32; m]);
        let mut v = vec![0.0f32; n * d];
        let mut plan = vec![0.0f32; n * m];
        let mut cfg = UotConfig::new(0.5f32);
        cfg.rho_source = 1.0;
        cfg.rho_target = 2.0;
        cfg.mode = mode;
        cfg.eps_scaling_stages = 2;
        let problem = UotProblem {
            x: &x,
            y: &y,
            a: &a,
            b: &b,
            n,
            m,
            d,
            tracks: Some(Tracks {
                pairs: &pairs,
                bound: TrackBound::Fraction(0.5),
            }),
        };
        // Counted on a pool worker after a warm-up call: rayon may allocate
        // when a pool starts and when an outside thread injects jobs into its
        // queue; the solver itself must not allocate.
        let mut solve = || {
            solve_uot(
                &problem,
                &cfg,
                &mut UotOutput {
                    f: &mut f,
                    g: &mut g,
                    row_mass: &mut r,
                    col_mass: &mut c,
                    velocity: Some(&mut v),
                    barycenter: None,
                    plan: Some(&mut plan),
                },
                &mut ws,
            )
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (count, report) = pool.install(|| {
            solve().unwrap();
            count_allocations(&mut solve)
        });
        assert_eq!(count, 0, "{mode:?}");
        assert!(report.unwrap().converged);
    }
}

/// The propagated step over several row blocks of `propagate` (run in
/// parallel), with `D_θ` along the path and at `z_t`: counted on a pool
/// worker after a warm-up call, as for the UOT solver (rayon may allocate
/// when a pool starts or when an outside thread injects jobs).
#[test]
fn propagated_step_over_parallel_blocks_does_not_allocate() {
    use morphosde_core::model::{Config, DiffusionHead, Layout, Residual};
    use morphosde_core::propagated::{DiffusionAt, PROPAGATE_BLOCK_ROWS};
    use morphosde_core::train::{AdamState, Batch, StepPlan, train_step_diffusion_at};
    let (n, d) = (2 * PROPAGATE_BLOCK_ROWS + 6, 3);
    let mut data = vec![0.0f32; 3 * n * d];
    Rng::stream(2, Family::Data, 0).fill_normal(&mut data);
    let (x, rest) = data.split_at(n * d);
    let (v, y) = rest.split_at(n * d);
    let t = vec![0.5f32; n];
    let h = vec![0.2f32; n];
    let mass = vec![1.0f32; n];
    let batch = Batch {
        x,
        t: &t,
        h: &h,
        v_hat: v,
        mass: &mass,
        y,
        plan: &[],
    };
    for residual in [Residual::Propagated, Residual::PropagatedFrozen] {
        let config = Config {
            d,
            depth: 2,
            width: 16,
            head: Some(DiffusionHead::Full),
            residual,
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(3, &mut params).unwrap();
        let (mut am, mut av) = (vec![0.0f32; layout.len], vec![0.0f32; layout.len]);
        let mut ws = vec![0.0f32; StepPlan::new(&config).unwrap().workspace_len(n)];
        let mut step = |at: DiffusionAt| {
            let mut adam = AdamState {
                m: &mut am,
                v: &mut av,
                steps: 0,
            };
            train_step_diffusion_at(
                &StepPlan::new(&config).unwrap(),
                0,
                at,
                &batch,
                &mut params,
                &mut adam,
                &mut ws,
            )
            .unwrap();
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (count, ()) = pool.install(|| {
            step(DiffusionAt::Path);
            count_allocations(|| {
                step(DiffusionAt::Path);
                step(DiffusionAt::Constant);
            })
        });
        assert_eq!(count, 0, "{residual:?}");
    }
}
