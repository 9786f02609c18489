//! The propagated diffusion target's cost (issue 8): one train step at
//! d = 16, batch 256, encoder 3×128, full-rank head, 4 substeps, with the
//! seed's one-step residual, the flow residual and the propagated loss (`D_θ`
//! along the substep states, the default, and at `z_t`); and
//! `propagate` alone on the learned model (its 16 forward-mode Jacobian
//! passes of 16 tangents each are the bulk of the propagated step).
//!
//! `cargo bench --bench propagated`; compare the medians in one run.

use criterion::{Criterion, criterion_group, criterion_main};
use morphosde_core::model::{Config, Layout, Learned, Residual};
use morphosde_core::propagate::{DiffusionAt, propagate, propagate_workspace_len};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::train::{AdamState, Batch, train_step_diffusion_at, train_step_workspace_len};
use std::hint::black_box;
use std::time::Duration;

const D: usize = 16;
const N: usize = 256;
const SUBSTEPS: usize = 4;

fn config(residual: Residual) -> Config {
    Config {
        d: D,
        depth: 3,
        width: 128,
        learn_diffusion: true,
        residual,
        flow_substeps: SUBSTEPS,
        warmup_epochs: 0,
        ..Config::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut data = vec![0.0f32; 3 * N * D];
    Rng::stream(1, Family::Data, 0).fill_normal(&mut data);
    let (x, rest) = data.split_at(N * D);
    let (v, y) = rest.split_at(N * D);
    let t: Vec<f32> = (0..N).map(|i| 0.01 * i as f32).collect();
    let h = vec![0.2f32; N];
    let mass = vec![1.0f32; N];
    let batch = Batch {
        x,
        t: &t,
        h: &h,
        v_hat: v,
        mass: &mass,
        y,
        plan: &[],
    };
    let mut group = c.benchmark_group("train_step_d16_n256");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (name, residual, at) in [
        ("one_step", Residual::OneStep, DiffusionAt::Path),
        ("flow", Residual::Flow, DiffusionAt::Path),
        ("propagated", Residual::Propagated, DiffusionAt::Path),
        (
            "propagated_d_at_start",
            Residual::Propagated,
            DiffusionAt::Constant,
        ),
    ] {
        let config = config(residual);
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(1, &mut params).unwrap();
        let (mut m, mut vv) = (vec![0.0f32; layout.len], vec![0.0f32; layout.len]);
        let mut ws = vec![0.0f32; train_step_workspace_len(&config, N, 0).unwrap()];
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut adam = AdamState {
                    m: &mut m,
                    v: &mut vv,
                    steps: 0,
                };
                black_box(
                    train_step_diffusion_at(
                        &config,
                        1,
                        at,
                        &batch,
                        &mut params,
                        &mut adam,
                        &mut ws,
                    )
                    .unwrap(),
                )
            })
        });
    }
    let config = config(Residual::Propagated);
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(1, &mut params).unwrap();
    let model = Learned::new(&config, &params).unwrap();
    let mut states = vec![0.0f32; N * (SUBSTEPS + 1) * D];
    let mut props = vec![0.0f32; N * (SUBSTEPS + 1) * D * D];
    let mut ws = vec![0.0f32; propagate_workspace_len(&model, N)];
    group.bench_function("propagate_only", |b| {
        b.iter(|| {
            propagate(
                &model,
                x,
                &t,
                &h,
                SUBSTEPS,
                &mut states,
                &mut props,
                &mut ws,
            )
            .unwrap();
            black_box(props[0])
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
