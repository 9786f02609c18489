//! The propagated diffusion target's cost (issue 8): one train step at
//! d = 16, batch 256, encoder 3×128, full-rank head, 4 substeps, with the
//! seed's one-step residual, the flow residual, the propagated loss (`D_θ`
//! along the substep states, the default, and at `z_t`) and the frozen
//! propagated loss (one Jacobian per source at the gap's midpoint, `D_θ`
//! there, the default, and at `z_t`); the flow drift teacher with the
//! one-step, flow and frozen residuals (its flow is the flow residual's, so
//! it only costs a flow of its own beside the one-step residual); and
//! `propagate` and
//! `propagate_frozen` alone on the learned model (the exact map's 16
//! forward-mode Jacobian passes of 16 tangents each are the bulk of the
//! propagated step; the frozen map has one).
//!
//! `cargo bench --bench propagated` first prints the cost of each step
//! relative to the one-step step, measured interleaved (one step of each
//! variant per round, the median of the per-round ratios over 21 rounds, so
//! load from neighbours hits every variant alike), in wall time and, with
//! `RAYON_NUM_THREADS=1`, in the measuring thread's CPU time (the single-core
//! ratios; `propagate` runs its row blocks in parallel, the rest of a step
//! is sequential), then runs criterion (`-- nomatch` skips it).
#![allow(unsafe_code, reason = "the thread CPU clock (libc clock_gettime)")]

use criterion::{Criterion, criterion_group, criterion_main};
use morphosde_core::model::{Config, DiffusionHead, DriftTeacher, Layout, Learned, Residual};
use morphosde_core::propagated::{
    DiffusionAt, propagate, propagate_frozen, propagate_workspace_len,
};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::train::{AdamState, Batch, StepPlan, train_step_diffusion_at};
use std::hint::black_box;
use std::time::{Duration, Instant};

const D: usize = 16;
const N: usize = 256;
const SUBSTEPS: usize = 4;

/// Name, residual, where the propagated target reads `D_θ`, drift teacher.
type Variant = (&'static str, Residual, DiffusionAt, DriftTeacher);

const VARIANTS: [Variant; 9] = [
    (
        "one_step",
        Residual::OneStep,
        DiffusionAt::Path,
        DriftTeacher::Chord,
    ),
    (
        "flow",
        Residual::Flow,
        DiffusionAt::Path,
        DriftTeacher::Chord,
    ),
    (
        "propagated",
        Residual::Propagated,
        DiffusionAt::Path,
        DriftTeacher::Chord,
    ),
    (
        "propagated_d_at_start",
        Residual::Propagated,
        DiffusionAt::Constant,
        DriftTeacher::Chord,
    ),
    (
        "frozen",
        Residual::PropagatedFrozen,
        DiffusionAt::Path,
        DriftTeacher::Chord,
    ),
    (
        "frozen_d_at_start",
        Residual::PropagatedFrozen,
        DiffusionAt::Constant,
        DriftTeacher::Chord,
    ),
    (
        "one_step_flow_teacher",
        Residual::OneStep,
        DiffusionAt::Path,
        DriftTeacher::Flow,
    ),
    (
        "flow_flow_teacher",
        Residual::Flow,
        DiffusionAt::Path,
        DriftTeacher::Flow,
    ),
    (
        "frozen_flow_teacher",
        Residual::PropagatedFrozen,
        DiffusionAt::Path,
        DriftTeacher::Flow,
    ),
];

fn config(residual: Residual, drift_teacher: DriftTeacher) -> Config {
    Config {
        d: D,
        depth: 3,
        width: 128,
        head: Some(DiffusionHead::Full),
        residual,
        drift_teacher,
        flow_substeps: SUBSTEPS,
        warmup_epochs: 0,
        ..Config::default()
    }
}

/// The batch's data: sources, velocities, matched end points, times, gaps
/// and masses.
struct Data {
    x: Vec<f32>,
    v: Vec<f32>,
    y: Vec<f32>,
    t: Vec<f32>,
    h: Vec<f32>,
    mass: Vec<f32>,
}

impl Data {
    fn new() -> Self {
        let mut data = vec![0.0f32; 3 * N * D];
        Rng::stream(1, Family::Data, 0).fill_normal(&mut data);
        Data {
            x: data[..N * D].to_vec(),
            v: data[N * D..2 * N * D].to_vec(),
            y: data[2 * N * D..].to_vec(),
            t: (0..N).map(|i| 0.01 * i as f32).collect(),
            h: vec![0.2f32; N],
            mass: vec![1.0f32; N],
        }
    }

    fn batch(&self) -> Batch<'_, f32> {
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

/// One variant's model, optimiser state and workspace.
struct Stepper {
    plan: StepPlan,
    at: DiffusionAt,
    params: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    ws: Vec<f32>,
}

impl Stepper {
    fn new(residual: Residual, at: DiffusionAt, drift_teacher: DriftTeacher) -> Self {
        let config = config(residual, drift_teacher);
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(1, &mut params).unwrap();
        Stepper {
            plan: StepPlan::new(&config).unwrap(),
            at,
            params,
            m: vec![0.0; layout.len],
            v: vec![0.0; layout.len],
            ws: vec![0.0; StepPlan::new(&config).unwrap().workspace_len(N)],
        }
    }

    fn step(&mut self, batch: &Batch<'_, f32>) -> f32 {
        let mut adam = AdamState {
            m: &mut self.m,
            v: &mut self.v,
            steps: 0,
        };
        let loss = train_step_diffusion_at(
            &self.plan,
            1,
            self.at,
            batch,
            &mut self.params,
            &mut adam,
            &mut self.ws,
        )
        .unwrap();
        loss.total
    }
}

/// `propagate` (or `propagate_frozen`) alone on the learned model of the
/// propagated step.
struct Flow {
    frozen: bool,
    config: Config,
    params: Vec<f32>,
    states: Vec<f32>,
    props: Vec<f32>,
    ws: Vec<f32>,
}

impl Flow {
    fn new(frozen: bool) -> Self {
        let config = config(Residual::Propagated, DriftTeacher::Chord);
        let layout = Layout::new(&config).unwrap();
        let mut params = vec![0.0f32; layout.len];
        layout.init(1, &mut params).unwrap();
        let model = Learned::new(&config, &params).unwrap();
        let ws = vec![0.0f32; propagate_workspace_len(&model, N)];
        Flow {
            frozen,
            config,
            params,
            states: vec![0.0; N * (SUBSTEPS + 1) * D],
            props: vec![0.0; N * (SUBSTEPS + 1) * D * D],
            ws,
        }
    }

    fn run(&mut self, data: &Data) -> f32 {
        let model = Learned::new(&self.config, &self.params).unwrap();
        let how = if self.frozen {
            propagate_frozen
        } else {
            propagate
        };
        how(
            &model,
            &data.x,
            &data.t,
            &data.h,
            SUBSTEPS,
            &mut self.states,
            &mut self.props,
            &mut self.ws,
        )
        .unwrap();
        self.props[0]
    }
}

/// CPU time of the calling thread so far (ns), `CLOCK_THREAD_CPUTIME_ID`
/// (0 if the clock fails): unlike wall time it does not count the time
/// neighbours hold the core. (`/proc/thread-self/schedstat` is only
/// brought up to date at scheduler ticks, too coarse for a 3 ms step.)
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Prints each variant's step time over the one-step step's, interleaved,
/// in wall time and, on one thread, in the thread's CPU time. Runs inside a
/// rayon pool of `RAYON_NUM_THREADS` (default: all cores), so with one
/// thread every block of `propagate` runs on the measuring thread.
fn side_by_side(_: &mut Criterion) {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(side_by_side_in_pool);
}

fn side_by_side_in_pool() {
    let data = Data::new();
    let batch = data.batch();
    let mut steppers: Vec<Stepper> = VARIANTS
        .iter()
        .map(|&(_, residual, at, teacher)| Stepper::new(residual, at, teacher))
        .collect();
    for s in &mut steppers {
        black_box(s.step(&batch));
    }
    let mut flows = [Flow::new(false), Flow::new(true)];
    let rounds = 21;
    let names: Vec<&str> = VARIANTS
        .iter()
        .map(|v| v.0)
        .chain(["propagate_only", "propagate_frozen_only"])
        .collect();
    let mut wall = vec![Vec::new(); names.len()];
    let mut cpu = vec![Vec::new(); names.len()];
    let mut base = Vec::new();
    for _ in 0..rounds {
        let mut times = Vec::new();
        let mut timed = |run: &mut dyn FnMut()| {
            let (start, start_cpu) = (Instant::now(), thread_cpu_ns());
            run();
            let cpu_ns = thread_cpu_ns().saturating_sub(start_cpu);
            times.push((start.elapsed().as_secs_f64(), cpu_ns as f64));
        };
        for s in &mut steppers {
            timed(&mut || {
                black_box(s.step(&batch));
            });
        }
        for flow in &mut flows {
            timed(&mut || {
                black_box(flow.run(&data));
            });
        }
        base.push(times[0]);
        for ((w, c), &(t, ns)) in wall.iter_mut().zip(&mut cpu).zip(&times) {
            w.push(t / times[0].0);
            c.push(ns / times[0].1);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let threads = rayon::current_num_threads();
    println!(
        "side by side, {rounds} rounds, {threads} thread(s), load {}",
        load.split_whitespace().next().unwrap_or("?")
    );
    let (mut base_wall, mut base_cpu): (Vec<f64>, Vec<f64>) = base.into_iter().unzip();
    println!(
        "  one_step median {:.2} ms wall, {:.2} ms cpu",
        1e3 * median(&mut base_wall),
        1e-6 * median(&mut base_cpu)
    );
    println!("  {:<24} {:>8} {:>8}", "step / one_step", "wall", "cpu");
    for ((name, w), c) in names.iter().zip(&mut wall).zip(&mut cpu) {
        if threads == 1 {
            println!("  {name:<24} {:7.2}× {:7.2}×", median(w), median(c));
        } else {
            println!("  {name:<24} {:7.2}× {:>8}", median(w), "-");
        }
    }
}

fn bench(c: &mut Criterion) {
    let data = Data::new();
    let batch = data.batch();
    let mut group = c.benchmark_group("train_step_d16_n256");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (name, residual, at, teacher) in VARIANTS {
        let mut stepper = Stepper::new(residual, at, teacher);
        group.bench_function(name, |b| b.iter(|| black_box(stepper.step(&batch))));
    }
    for (name, frozen) in [("propagate_only", false), ("propagate_frozen_only", true)] {
        let mut flow = Flow::new(frozen);
        group.bench_function(name, |b| b.iter(|| black_box(flow.run(&data))));
    }
    group.finish();
}

criterion_group!(benches, side_by_side, bench);
criterion_main!(benches);
