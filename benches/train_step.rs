//! One training step of the model (forward, covariance targets, losses,
//! manual backward, clipping, Adam), single-threaded f32: d = 16, 8 time
//! features, encoder 3×128, drift-only and full-rank diffusion head
//! (pairwise targets, k = 8, one-step residual), batch 32 and 256.
//!
//! `cargo bench --bench train_step` runs criterion (throughput in GEMM
//! FLOP/s: the three products per layer of the forward and backward passes).
//! With `MSDE_BENCH_PLAIN=1` it instead prints one line per case,
//! `case batch median_us gflops`, for `benches/compare/train_step_torch.py`.
use criterion::{Criterion, Throughput};
use morphosde_core::model::{Config, DiffusionHead, Layout, Residual, TargetMode};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::train::{AdamState, Batch, StepPlan, train_step};
use std::hint::black_box;
use std::time::Instant;

fn config(diffusion: bool) -> Config {
    Config {
        d: 16,
        time_features: 8,
        depth: 3,
        width: 128,
        head: diffusion.then_some(DiffusionHead::Full),
        warmup_epochs: 0,
        target_mode: TargetMode::Pairwise,
        residual: Residual::OneStep,
        k_neighbours: 8,
        clip_grad_norm: 10.0,
        ..Config::default()
    }
}

/// GEMM FLOPs of one step: forward `2·n·Σ in·out`, backward twice that
/// minus the unneeded input gradient of the first layer.
fn flops(layout: &Layout, n: usize) -> u64 {
    let mut sum = 0;
    let mut fan_in = layout.n_in;
    for _ in 0..layout.depth {
        sum += fan_in * layout.width;
        fan_in = layout.width;
    }
    sum += fan_in * (layout.d + layout.head_outputs);
    (2 * n * (3 * sum - layout.n_in * layout.width)) as u64
}

struct Case {
    config: Config,
    plan: StepPlan,
    n: usize,
    data: Vec<f32>,
    params: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    ws: Vec<f32>,
    t: Vec<f32>,
    h: Vec<f32>,
    mass: Vec<f32>,
    steps: u64,
}

impl Case {
    fn new(diffusion: bool, n: usize) -> Self {
        let config = config(diffusion);
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(1, &mut params).unwrap();
        let mut data = vec![0.0f32; 3 * n * config.d];
        Rng::stream(1, Family::Data, 0).fill_normal(&mut data);
        Case {
            config,
            plan: StepPlan::new(&config).unwrap(),
            n,
            data,
            m: vec![0.0; layout.len],
            v: vec![0.0; layout.len],
            params,
            ws: vec![0.0; StepPlan::new(&config).unwrap().workspace_len(n)],
            t: vec![0.5; n],
            h: vec![0.2; n],
            mass: vec![1.0; n],
            steps: 0,
        }
    }

    fn step(&mut self) {
        let nd = self.n * self.config.d;
        let batch = Batch {
            x: &self.data[..nd],
            t: &self.t,
            h: &self.h,
            v_hat: &self.data[nd..2 * nd],
            mass: &self.mass,
            y: &self.data[2 * nd..],
            plan: &[],
        };
        let mut adam = AdamState {
            m: &mut self.m,
            v: &mut self.v,
            steps: self.steps,
        };
        black_box(
            train_step(
                &self.plan,
                1,
                &batch,
                &mut self.params,
                &mut adam,
                &mut self.ws,
            )
            .unwrap(),
        );
        self.steps = adam.steps;
    }
}

const CASES: [(&str, bool); 2] = [("drift_only", false), ("full_rank", true)];

fn plain() {
    for (name, diffusion) in CASES {
        for n in [32, 256] {
            let mut case = Case::new(diffusion, n);
            let reps = if n == 32 { 200 } else { 40 };
            for _ in 0..10 {
                case.step();
            }
            let mut times: Vec<f64> = (0..15)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..reps {
                        case.step();
                    }
                    start.elapsed().as_secs_f64() / reps as f64
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let layout = Layout::new(&case.config).unwrap();
            let gflops = flops(&layout, n) as f64 / median / 1e9;
            println!("{name} {n} {:.2} {gflops:.1}", median * 1e6);
        }
    }
}

fn main() {
    if std::env::var_os("MSDE_BENCH_PLAIN").is_some() {
        plain();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("train_step");
    for (name, diffusion) in CASES {
        for n in [32, 256] {
            let mut case = Case::new(diffusion, n);
            let layout = Layout::new(&case.config).unwrap();
            group.throughput(Throughput::Elements(flops(&layout, n)));
            group.bench_function(format!("{name}/{n}"), |b| b.iter(|| case.step()));
        }
    }
    group.finish();
    c.final_summary();
}
