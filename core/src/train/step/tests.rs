use super::*;
use crate::dynamics::Dynamics;
use crate::error::ErrorKind;
use crate::integrate::{rk4_flow, rk4_flow_workspace_len};
use crate::model::{DiffusionHead, DriftLoss, Inputs, Learned, MassWeighting};
use crate::propagated::{Propagation, gap_midpoints, node_times, propagate, propagate_frozen};
use crate::rng::{Family, Rng};
use std::vec;
use std::vec::Vec;

/// An owned batch of `n` sources with pairwise targets.
struct Data<F> {
    x: Vec<F>,
    t: Vec<F>,
    h: Vec<F>,
    v: Vec<F>,
    mass: Vec<F>,
    y: Vec<F>,
}

impl<F: Float> Data<F> {
    fn random(n: usize, d: usize, seed: u64) -> Self {
        let mut rng = Rng::stream(seed, Family::Data, 0);
        let mut normal = |k: usize| {
            let mut v = vec![F::ZERO; k];
            rng.fill_normal(&mut v);
            v
        };
        let x = normal(n * d);
        let v = normal(n * d);
        let noise = normal(n * d);
        let t: Vec<F> = (0..n).map(|i| F::from_f64(0.1 * i as f64)).collect();
        let h = vec![F::from_f64(0.2); n];
        let mass: Vec<F> = (0..n)
            .map(|i| F::from_f64(0.3 + 0.2 * (i % 4) as f64))
            .collect();
        let y = (0..n * d)
            .map(|c| x[c] + F::from_f64(0.2) * v[c] + F::from_f64(0.3) * noise[c])
            .collect();
        Data {
            x,
            t,
            h,
            v,
            mass,
            y,
        }
    }
    fn batch(&self) -> Batch<'_, F> {
        Batch {
            x: &self.x,
            t: &self.t,
            h: &self.h,
            v_hat: &self.v,
            mass: &self.mass,
            y: &self.y,
            plan: &[],
        }
    }
}

/// Non-identity inputs of `d` coordinates: means, scales 0.01–100 and the
/// span `[0.1, 0.3]` (which clamps some of [`Data::random`]'s times).
fn far_inputs(d: usize) -> Inputs<f64> {
    let mut inputs = Inputs::identity(d);
    for k in 0..d {
        inputs.mean[k] = 3.0 - 2.0 * k as f64;
        inputs.scale[k] = [0.01, 100.0, 2.5][k % 3];
    }
    inputs.time_span = [0.1, 0.3];
    inputs
}

fn small(head: Option<DiffusionHead>) -> Config {
    Config {
        d: 3,
        time_features: 2,
        depth: 2,
        width: 5,
        // The chord teacher is the baseline the flow teacher's tests
        // compare with; neighbourhoods of 8 and shrinkage make the
        // pairwise target's averaging part of every step.
        drift_teacher: DriftTeacher::Chord,
        k_neighbours: 8,
        shrinkage: 0.1,
        // The flow residual's loss is the one checked here; the propagated
        // residuals have their own finite-difference tests below.
        residual: Residual::Flow,
        head,
        ..Config::default()
    }
}

/// The total loss's gradient (network, heads, both drift losses, diffusion
/// loss, log-variance) against central differences in f64, with the targets
/// held fixed.
#[test]
fn loss_gradient_matches_finite_differences_in_f64() {
    let heads = [
        None,
        Some(DiffusionHead::Full),
        Some(DiffusionHead::LowRank { q: 2 }),
        Some(DiffusionHead::Diagonal),
    ];
    let mut worst: f64 = 0.0;
    let mut count = 0;
    for (hi, head) in heads.into_iter().enumerate() {
        for drift_loss in [DriftLoss::Mse, DriftLoss::Nll] {
            for weighting in [MassWeighting::RowMass, MassWeighting::Threshold] {
                let config = Config {
                    drift_loss,
                    mass_weighting: weighting,
                    ..small(head)
                };
                let layout = Layout::new(&config).unwrap();
                let n = 6;
                let data = Data::<f64>::random(n, 3, 40 + hi as u64);
                let mut params = vec![0.0; layout.len];
                layout.init(3, &mut params).unwrap();
                let mut rng = Rng::stream(8, Family::Data, count);
                for t in layout.tensors() {
                    if t.rows == 1 {
                        for v in &mut params[t.range()] {
                            *v = 0.2 * rng.normal();
                        }
                    }
                }
                // The loss is the network's (μ, s unread, the span clamps).
                if count % 2 == 1 {
                    layout.set_inputs(&mut params, &far_inputs(3)).unwrap();
                }
                // Random SPD targets (held fixed).
                let mut d_hat = vec![0.0; n * 9];
                for i in 0..n {
                    let mut b = [0.0; 9];
                    rng.fill_normal(&mut b);
                    for r in 0..3 {
                        for c in 0..3 {
                            d_hat[i * 9 + r * 3 + c] =
                                0.3 * (0..3).map(|k| b[r * 3 + k] * b[c * 3 + k]).sum::<f64>();
                        }
                    }
                }
                let lambda = 0.7;
                let ws_len = StepPlan::new(&config).unwrap().workspace_len(n);
                let mut ws = vec![f64::NAN; ws_len];
                let mut grad = vec![0.0; layout.len];
                let batch = data.batch();
                loss_and_gradient(
                    &StepPlan::new(&config).unwrap(),
                    lambda,
                    &batch,
                    &params,
                    &d_hat,
                    &mut grad,
                    &mut ws,
                )
                .unwrap();
                assert!(grad[layout.input_block.range()].iter().all(|&g| g == 0.0));
                let mut total = |p: &[f64]| {
                    let mut g = vec![0.0; layout.len];
                    loss_and_gradient(
                        &StepPlan::new(&config).unwrap(),
                        lambda,
                        &batch,
                        p,
                        &d_hat,
                        &mut g,
                        &mut ws,
                    )
                    .unwrap()
                    .total
                };
                for t in layout.tensors() {
                    let (mut num, mut den) = (0.0, 0.0);
                    for i in t.range() {
                        let keep = params[i];
                        params[i] = keep + 1e-5;
                        let up = total(&params);
                        params[i] = keep - 1e-5;
                        let down = total(&params);
                        params[i] = keep;
                        let fd = (up - down) / 2e-5;
                        num += (grad[i] - fd) * (grad[i] - fd);
                        den += fd * fd;
                    }
                    let rel = libm::sqrt(num / den);
                    assert!(rel <= 1e-6, "{config:?} tensor {t:?}: {rel:e}");
                    worst = worst.max(rel);
                }
                count += 1;
            }
        }
    }
    std::println!(
        "worst relative gradient error of the total loss over {count} configs: {worst:e}"
    );
}

/// [`Residual::Propagated`] and [`Residual::PropagatedFrozen`]: the
/// diffusion head's gradient against central differences in f64 (the
/// encoder and drift head also move `Φ` and the substep states, which the
/// target holds fixed by design, so their finite differences are not the
/// gradient this loss defines), and the loss against a direct evaluation
/// of `mean ‖M_h(L Lᵀ)/h − D̂‖²_F` (`D` at every node, or at each gap's
/// midpoint for the frozen map).
#[test]
fn propagated_diffusion_gradient_matches_finite_differences_in_f64() {
    let mut worst: f64 = 0.0;
    let heads = [
        DiffusionHead::Full,
        DiffusionHead::LowRank { q: 2 },
        DiffusionHead::Diagonal,
    ];
    let cases = [Residual::Propagated, Residual::PropagatedFrozen]
        .into_iter()
        .flat_map(|r| heads.into_iter().map(move |h| (r, h)));
    for (hi, (residual, head)) in cases.enumerate() {
        let frozen = residual == Residual::PropagatedFrozen;
        let config = Config {
            residual,
            flow_substeps: 3,
            ..small(Some(head))
        };
        let layout = Layout::new(&config).unwrap();
        let n = 5;
        let data = Data::<f64>::random(n, 3, 60 + hi as u64);
        let mut params = vec![0.0; layout.len];
        layout.init(4, &mut params).unwrap();
        let mut rng = Rng::stream(9, Family::Data, hi as u64);
        for v in &mut params[layout.diff_b.range()] {
            *v = 0.3 * rng.normal();
        }
        let mut d_hat = vec![0.0; n * 9];
        for i in 0..n {
            for r in 0..3 {
                d_hat[i * 9 + r * 4] = 0.2 + 0.1 * r as f64;
            }
            d_hat[i * 9 + 1] = 0.05;
            d_hat[i * 9 + 3] = 0.05;
        }
        let lambda = 0.7;
        let mut ws = vec![f64::NAN; StepPlan::new(&config).unwrap().workspace_len(n)];
        let mut grad = vec![0.0; layout.len];
        let batch = data.batch();
        let loss = loss_and_gradient(
            &StepPlan::new(&config).unwrap(),
            lambda,
            &batch,
            &params,
            &d_hat,
            &mut grad,
            &mut ws,
        )
        .unwrap();
        // Direct evaluation: the flow's node states and propagators, then
        // L from the model at every node (or each midpoint), D = L Lᵀ, M_h
        // by the map.
        let learned = Learned::new(&config, &params).unwrap();
        let nodes = n * 4;
        let mut states = vec![0.0; nodes * 3];
        let mut props = vec![0.0; nodes * 9];
        let mut pws = vec![0.0; crate::propagated::propagate_workspace_len(&learned, n)];
        let how = if frozen { propagate_frozen } else { propagate };
        how(
            &learned,
            &data.x,
            &data.t,
            &data.h,
            3,
            &mut states,
            &mut props,
            &mut pws,
        )
        .unwrap();
        let (at, points) = if frozen {
            (DiffusionAt::Constant, n)
        } else {
            (DiffusionAt::Path, nodes)
        };
        let mut times = vec![0.0; points];
        let mut where_d = vec![0.0; points * 3];
        if frozen {
            gap_midpoints(3, 3, &states, &data.t, &data.h, &mut where_d, &mut times).unwrap();
        } else {
            node_times(&data.t, &data.h, 3, &mut times).unwrap();
            where_d.copy_from_slice(&states);
        }
        let (mut f, mut l) = (vec![0.0; points * 3], vec![0.0; points * 3 * layout.q]);
        let mut iws = vec![0.0; layout.infer_workspace_len(points)];
        layout
            .forward_infer(&params, &where_d, &times, &mut f, &mut l, &mut iws)
            .unwrap();
        let q = layout.q;
        let dm: Vec<f64> = (0..points * 9)
            .map(|i| {
                let (k, r, c) = (i / 9, i % 9 / 3, i % 3);
                (0..q)
                    .map(|j| l[k * 3 * q + r * q + j] * l[k * 3 * q + c * q + j])
                    .sum()
            })
            .collect();
        let map = Propagation::new(3, 3, &data.h, &props).unwrap();
        let mut m = vec![0.0; n * 9];
        map.map(at, &dm, &mut m, &mut [0.0; 18]).unwrap();
        let direct: f64 = (0..n * 9)
            .map(|i| (m[i] / data.h[i / 9] - d_hat[i]).powi(2))
            .sum::<f64>()
            / n as f64;
        assert!(
            (loss.diffusion - direct).abs() < 1e-12 * direct,
            "{loss:?} vs {direct}"
        );
        let mut total = |p: &[f64]| {
            let mut g = vec![0.0; layout.len];
            loss_and_gradient(
                &StepPlan::new(&config).unwrap(),
                lambda,
                &batch,
                p,
                &d_hat,
                &mut g,
                &mut ws,
            )
            .unwrap()
            .total
        };
        for t in [layout.diff_w, layout.diff_b] {
            let (mut num, mut den) = (0.0, 0.0);
            for i in t.range() {
                let keep = params[i];
                params[i] = keep + 1e-5;
                let up = total(&params);
                params[i] = keep - 1e-5;
                let down = total(&params);
                params[i] = keep;
                let fd = (up - down) / 2e-5;
                num += (grad[i] - fd) * (grad[i] - fd);
                den += fd * fd;
            }
            let rel = libm::sqrt(num / den);
            assert!(rel <= 1e-6, "{residual:?} {head:?} tensor {t:?}: {rel:e}");
            worst = worst.max(rel);
        }
    }
    std::println!("worst relative gradient error of the propagated diffusion loss: {worst:e}");
}

fn run_steps(config: &Config, data: &Data<f32>, steps: u32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let layout = Layout::new(config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(config.seed, &mut params).unwrap();
    let (mut m, mut v) = (vec![0.0f32; layout.len], vec![0.0f32; layout.len]);
    let mut adam = AdamState {
        m: &mut m,
        v: &mut v,
        steps: 0,
    };
    let n = data.t.len();
    let mut ws = vec![0.0f32; StepPlan::new(config).unwrap().workspace_len(n)];
    for _ in 0..steps {
        train_step(
            &StepPlan::new(config).unwrap(),
            0,
            &data.batch(),
            &mut params,
            &mut adam,
            &mut ws,
        )
        .unwrap();
    }
    (params, m, v)
}

/// No diffusion head: the diffusion knobs change nothing (same
/// parameter count as the drift-only model, bit-identical training); on,
/// with λ = 0 (warm-up epoch 0), the drift parameters follow exactly the
/// drift-only trajectory. Both drift teachers.
#[test]
fn diffusion_toggle_keeps_the_drift_only_path() {
    let data = Data::<f32>::random(16, 3, 5);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for drift_teacher in [DriftTeacher::Chord, DriftTeacher::Flow] {
        let drift_only = Config {
            drift_teacher,
            ..small(None)
        };
        let a = run_steps(&drift_only, &data, 5);
        for residual in [
            Residual::OneStep,
            Residual::Flow,
            Residual::Propagated,
            Residual::PropagatedFrozen,
        ] {
            let tag = (drift_teacher, residual);
            let knobs_off = Config {
                lambda_diff: 3.0,
                target_mode: TargetMode::PlanWeighted,
                residual,
                ..drift_only
            };
            assert_eq!(
                Layout::new(&knobs_off).unwrap().len,
                Layout::new(&drift_only).unwrap().len
            );
            let b = run_steps(&knobs_off, &data, 5);
            assert_eq!(bits(&a.0), bits(&b.0), "{tag:?}");
            assert_eq!(bits(&a.1), bits(&b.1), "{tag:?}");
            assert_eq!(bits(&a.2), bits(&b.2), "{tag:?}");
            let on = Config {
                head: Some(DiffusionHead::Full),
                warmup_epochs: 5,
                residual,
                ..drift_only
            };
            let c = run_steps(&on, &data, 5);
            let p = a.0.len();
            assert_eq!(a.0[..], c.0[..p], "{tag:?}");
        }
        assert!(
            a.0 != run_steps(&drift_only, &data, 4).0,
            "training moves the parameters"
        );
    }
    assert!(
        run_steps(&small(None), &data, 5).0
            != run_steps(
                &Config {
                    drift_teacher: DriftTeacher::Flow,
                    ..small(None)
                },
                &data,
                5
            )
            .0,
        "the teachers differ"
    );
}

/// The input block is not trained (Adam and weight decay skip it, its
/// moments stay 0), and the network's training does not read `μ` and `s`:
/// two models that differ only there train to the same bits.
#[test]
fn the_input_block_is_not_trained() {
    let config = Config {
        weight_decay: 0.3,
        drift_teacher: DriftTeacher::Flow,
        residual: Residual::PropagatedFrozen,
        ..small(Some(DiffusionHead::Full))
    };
    let layout = Layout::new(&config).unwrap();
    let data = Data::<f64>::random(12, 3, 8);
    let train = |inputs: &Inputs<f64>| {
        let mut params = vec![0.0f64; layout.len];
        layout.init(2, &mut params).unwrap();
        layout.set_inputs(&mut params, inputs).unwrap();
        let (mut m, mut v) = (vec![0.0; layout.len], vec![0.0; layout.len]);
        let mut adam = AdamState {
            m: &mut m,
            v: &mut v,
            steps: 0,
        };
        let mut ws = vec![f64::NAN; StepPlan::new(&config).unwrap().workspace_len(12)];
        for epoch in 0..4 {
            train_step(
                &StepPlan::new(&config).unwrap(),
                epoch,
                &data.batch(),
                &mut params,
                &mut adam,
                &mut ws,
            )
            .unwrap();
        }
        let block = layout.input_block.range();
        assert!(m[block.clone()].iter().chain(&v[block]).all(|&x| x == 0.0));
        assert_eq!(layout.inputs(&params), *inputs);
        params
    };
    let a = train(&far_inputs(3));
    let mut other = far_inputs(3);
    other.mean[1] = -40.0;
    other.scale[0] = 7.0;
    let b = train(&other);
    assert_eq!(a[layout.trainable()], b[layout.trainable()]);
    let mut init = vec![0.0f64; layout.len];
    layout.init(2, &mut init).unwrap();
    assert_ne!(a[layout.trainable()], init[layout.trainable()]);
}

/// A step whose loss overflows leaves parameters and Adam state untouched.
#[test]
fn non_finite_step_changes_nothing() {
    let config = Config {
        head: Some(DiffusionHead::Full),
        ..small(None)
    };
    let mut data = Data::<f32>::random(8, 3, 6);
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(1, &mut params).unwrap();
    let (mut m, mut v) = (vec![0.0f32; layout.len], vec![0.0f32; layout.len]);
    let mut ws = vec![0.0f32; StepPlan::new(&config).unwrap().workspace_len(8)];
    let mut adam = AdamState {
        m: &mut m,
        v: &mut v,
        steps: 0,
    };
    train_step(
        &StepPlan::new(&config).unwrap(),
        3,
        &data.batch(),
        &mut params,
        &mut adam,
        &mut ws,
    )
    .unwrap();
    let before = (params.clone(), adam.m.to_vec(), adam.v.to_vec(), adam.steps);
    data.v[4] = 1e30; // finite input, (f − v̂)² overflows f32
    let e = train_step(
        &StepPlan::new(&config).unwrap(),
        3,
        &data.batch(),
        &mut params,
        &mut adam,
        &mut ws,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NumericalFailure);
    assert_eq!(
        before,
        (params.clone(), adam.m.to_vec(), adam.v.to_vec(), adam.steps)
    );
    // Malformed input is refused before anything changes, too.
    data.v[4] = f32::NAN;
    let e = train_step(
        &StepPlan::new(&config).unwrap(),
        3,
        &data.batch(),
        &mut params,
        &mut adam,
        &mut ws,
    )
    .unwrap_err();
    assert_eq!(e.arg, "v_hat");
    data.v[4] = 0.5;
    let e = train_step(
        &StepPlan::new(&config).unwrap(),
        3,
        &data.batch(),
        &mut params,
        &mut adam,
        &mut ws[..10],
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BufferTooSmall);
    assert_eq!(before.0, params);
}

/// [`DriftTeacher::Flow`]: the drift loss is the weighted mean squared
/// mismatch `‖x + v̂h − φ_h(x)‖²/h²` of the learned flow (an independent
/// [`rk4_flow`] of the model), and the gradient is the one of the chord
/// loss towards the shifted teachers `v̂ + f − (φ_h(x) − x)/h`, computed
/// here on their own (f64; drift only, and with each residual and a head).
#[test]
fn flow_teacher_matches_the_flow_mismatch_and_shifts_the_teachers() {
    let data = Data::<f64>::random(12, 3, 21);
    let (n, d) = (12, 3);
    let mut configs = vec![small(None)];
    for residual in [
        Residual::OneStep,
        Residual::Flow,
        Residual::Propagated,
        Residual::PropagatedFrozen,
    ] {
        configs.push(Config {
            residual,
            ..small(Some(DiffusionHead::Full))
        });
    }
    for chord in configs {
        let flow_config = Config {
            drift_teacher: DriftTeacher::Flow,
            ..chord
        };
        let layout = Layout::new(&chord).unwrap();
        let mut params = vec![0.0f64; layout.len];
        layout.init(4, &mut params).unwrap();
        // The model's drift and flow, on their own.
        let learned = Learned::new(&chord, &params).unwrap();
        let mut f = vec![0.0f64; n * d];
        let mut ws = vec![0.0f64; Dynamics::workspace_len(&learned, n)];
        Dynamics::drift(&learned, &data.x, &data.t, &mut f, &mut ws);
        let mut phi = vec![0.0f64; n * d];
        let mut ws = vec![0.0f64; rk4_flow_workspace_len(&learned, n)];
        rk4_flow(&learned, &data.x, &data.t, &data.h, 4, &mut phi, &mut ws).unwrap();
        let (mut mismatch, mut mass) = (0.0, 0.0);
        let mut shifted = data.v.clone();
        for i in 0..n {
            let h = data.h[i];
            for k in 0..d {
                let c = i * d + k;
                let miss = (data.x[c] + data.v[c] * h - phi[c]) / h;
                mismatch += data.mass[i] * miss * miss;
                shifted[c] += f[c] - (phi[c] - data.x[c]) / h;
            }
            mass += data.mass[i];
        }
        mismatch /= mass;
        let shifted_data = Data {
            v: shifted,
            ..Data::random(n, d, 21)
        };
        let len = StepPlan::new(&flow_config).unwrap().workspace_len(n);
        let gradient = |config: &Config, batch: &Batch<'_, f64>| {
            let mut grad = vec![0.0f64; layout.len];
            let mut ws = vec![0.0f64; len];
            let loss = step_loss(
                &StepPlan::new(config).unwrap(),
                20,
                DiffusionAt::Path,
                batch,
                &params,
                &mut grad,
                &mut ws,
            )
            .unwrap();
            (loss, grad)
        };
        let (loss, grad) = gradient(&flow_config, &data.batch());
        let (chord_loss, chord_grad) = gradient(&chord, &shifted_data.batch());
        let tag = (chord.head, chord.residual);
        assert!(
            (loss.drift - mismatch).abs() <= 1e-12 * mismatch,
            "{tag:?}: {} vs {mismatch}",
            loss.drift
        );
        assert!((loss.drift - chord_loss.drift).abs() <= 1e-12 * mismatch);
        assert_eq!(loss.diffusion.to_bits(), chord_loss.diffusion.to_bits());
        let scale = chord_grad.iter().fold(0.0f64, |a, g| a.max(g.abs()));
        let worst = grad
            .iter()
            .zip(&chord_grad)
            .fold(0.0f64, |a, (g, c)| a.max((g - c).abs()));
        assert!(worst <= 1e-12 * scale, "{tag:?}: {worst:e} of {scale:e}");
        // The chord teacher's loss differs: the shift is not zero.
        let (plain, _) = gradient(&chord, &data.batch());
        assert!(
            (plain.drift - loss.drift).abs() > 1e-3 * loss.drift,
            "{tag:?}"
        );
    }
}
