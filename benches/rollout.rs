//! Euler–Maruyama rollouts of the learned model: 100 and 10,000
//! trajectories × 100 steps, d = 16, encoder 3 × 128 (8 time features),
//! full-rank diffusion head, f32, blocks of 64 rows; one worker and two
//! workers (rayon's pool; run on 2 cores).
//!
//! `cargo bench --bench rollout`. Throughput is reported in trajectory-steps
//! ("elements"); each one costs [`flops_per_row_step`] floating-point
//! operations (printed), so GFLOP/s = elements/s × that / 1e9.
//! With `MSDE_BENCH_PLAIN=1` it instead prints one line per case,
//! `n workers median_s traj_steps_per_s gflops` (median of 7 runs), for
//! `benches/compare/rollout_torchsde.py`, which runs it and torchsde side by
//! side and prints the ratios.
//! With `MSDE_BENCH_METHODS=1` it instead compares the SDE methods side by
//! side in one run: 1000 trajectories to t = 1 of this model at d = 8 (the
//! recovery suite's largest), two workers, each method at its steps;
//! median of 5 runs, trajectories per second and the ratio to
//! Euler–Maruyama at step 0.01, with the load average before and after.

use criterion::{Criterion, Throughput};
use morphosde_core::integrate::rollout::{
    Method, RolloutConfig, Start, rollout, rollout_workspace_len,
};
use morphosde_core::integrate::sde::SdeConfig;
use morphosde_core::model::heads::head_outputs;
use morphosde_core::model::{Config, DiffusionHead, Layout, Learned};
use morphosde_core::rng::{Family, Rng};
use std::hint::black_box;
use std::time::{Duration, Instant};

const D: usize = 16;
const STEPS: usize = 100;

fn model_config() -> Config {
    Config {
        d: D,
        depth: 3,
        width: 128,
        time_features: 8,
        head: Some(DiffusionHead::Full),
        ..Config::default()
    }
}

/// Multiply-adds ×2 of the forward pass (encoder and both heads) plus the
/// `L Z` product of the Euler–Maruyama update, per trajectory-step.
fn flops_per_row_step(c: &Config) -> usize {
    let n_in = c.d + c.time_features;
    let outputs = c.d + head_outputs(DiffusionHead::Full, c.d, c.d);
    2 * (n_in * c.width + (c.depth - 1) * c.width * c.width + c.width * outputs) + 2 * c.d * c.d
}

/// Seeded parameters of the benchmarked model.
fn model_params(config: &Config) -> Vec<f32> {
    let layout = Layout::new(config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(7, &mut params).unwrap();
    params
}

fn rollout_config() -> RolloutConfig<f32> {
    RolloutConfig {
        method: Method::EulerMaruyama(SdeConfig {
            h_max: 0.01f32,
            trace_clip: None,
        }),
        seed: 1,
        block_rows: 64,
    }
}

/// `n` standard-normal initial states.
fn initial_cloud(n: usize) -> Vec<f32> {
    let mut start = vec![0.0f32; n * D];
    Rng::stream(2, Family::Data, 0).fill_normal(&mut start);
    start
}

const TIMES: [f32; 1] = [STEPS as f32 * 0.01];

/// One line per case for the comparison script (see the module docs).
fn plain() {
    let config = model_config();
    let params = model_params(&config);
    let model = Learned::new(&config, &params).unwrap();
    let rc = rollout_config();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for n in [100usize, 10_000] {
        let start = initial_cloud(n);
        let mut out = vec![0.0f32; n * D];
        let mut stop = vec![0.0f32; n];
        for workers in [1usize, 2] {
            let mut ws = vec![0.0f32; rollout_workspace_len(&model, &rc, workers)];
            let mut once = || {
                let clock = Instant::now();
                pool.install(|| {
                    rollout(
                        &model,
                        Start::Cloud(&start),
                        0.0,
                        &TIMES,
                        &rc,
                        &mut out,
                        &mut stop,
                        &mut ws,
                    )
                    .unwrap()
                });
                clock.elapsed().as_secs_f64()
            };
            once();
            let mut times: Vec<f64> = (0..7).map(|_| once()).collect();
            times.sort_by(f64::total_cmp);
            let median = times[3];
            let rate = (n * STEPS) as f64 / median;
            let gflops = rate * flops_per_row_step(&config) as f64 / 1e9;
            println!("{n} {workers} {median:.6} {rate:.0} {gflops:.2}");
        }
    }
}

/// The first field of /proc/loadavg (or "?").
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// The SDE methods side by side (see the module docs).
fn methods() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    println!("load average before: {}", load_average());
    println!(
        "| d | method | h | evaluations per substep | median s | trajectories/s | time vs em 0.01 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for d in [8usize] {
        let config = Config {
            d,
            ..model_config()
        };
        let params = model_params(&config);
        let model = Learned::new(&config, &params).unwrap();
        let n = 1000;
        let mut start = vec![0.0f32; n * d];
        Rng::stream(2, Family::Data, 0).fill_normal(&mut start);
        let mut out = vec![0.0f32; n * d];
        let mut stop = vec![0.0f32; n];
        let sde = |h_max: f32| SdeConfig {
            h_max,
            trace_clip: None,
        };
        let cases = [
            Method::EulerMaruyama(sde(0.01)),
            Method::EulerMaruyama(sde(0.005)),
            Method::StrangRk4(sde(0.04)),
            Method::StrangRk4(sde(0.02)),
            Method::StrangRk4(sde(0.01)),
            Method::PlatenWeak2(sde(0.02)),
        ];
        let mut base = f64::NAN;
        for method in cases {
            let rc = RolloutConfig {
                method,
                ..rollout_config()
            };
            let mut ws = vec![0.0f32; rollout_workspace_len(&model, &rc, 2)];
            let mut once = || {
                let clock = Instant::now();
                let report = pool.install(|| {
                    rollout(
                        &model,
                        Start::Cloud(&start),
                        0.0,
                        &[1.0],
                        &rc,
                        &mut out,
                        &mut stop,
                        &mut ws,
                    )
                    .unwrap()
                });
                (clock.elapsed().as_secs_f64(), report.stats)
            };
            let (_, stats) = once();
            let mut times: Vec<f64> = (0..5).map(|_| once().0).collect();
            times.sort_by(f64::total_cmp);
            let median = times[2];
            if base.is_nan() {
                base = median;
            }
            let (Method::EulerMaruyama(c) | Method::StrangRk4(c) | Method::PlatenWeak2(c)) = method
            else {
                unreachable!()
            };
            println!(
                "| {d} | {} | {} | {} | {median:.3} | {:.0} | {:.2} |",
                method.name(),
                c.h_max,
                stats.evaluations / stats.accepted,
                n as f64 / median,
                median / base
            );
        }
    }
    println!("load average after: {}", load_average());
}

fn bench(c: &mut Criterion) {
    let config = model_config();
    let params = model_params(&config);
    let model = Learned::new(&config, &params).unwrap();
    let flops = flops_per_row_step(&config);
    println!("rollout: {flops} FLOP per trajectory-step");
    let rollout_config = rollout_config();
    let times = TIMES;
    let mut group = c.benchmark_group("rollout");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for n in [100usize, 10_000] {
        let start = initial_cloud(n);
        let mut out = vec![0.0f32; n * D];
        let mut stop = vec![0.0f32; n];
        group.throughput(Throughput::Elements((n * STEPS) as u64));
        group.measurement_time(Duration::from_secs(if n > 1000 { 20 } else { 3 }));
        for workers in [1usize, 2] {
            let mut ws = vec![0.0f32; rollout_workspace_len(&model, &rollout_config, workers)];
            group.bench_function(format!("em_n{n}_w{workers}"), |b| {
                b.iter(|| {
                    let report = rollout(
                        &model,
                        Start::Cloud(&start),
                        0.0,
                        &times,
                        &rollout_config,
                        &mut out,
                        &mut stop,
                        &mut ws,
                    )
                    .unwrap();
                    black_box(report)
                })
            });
        }
    }
    group.finish();
}

fn main() {
    if std::env::var_os("MSDE_BENCH_METHODS").is_some() {
        methods();
        return;
    }
    if std::env::var_os("MSDE_BENCH_PLAIN").is_some() {
        plain();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
