//! Unbalanced OT: time per Sinkhorn iteration (fixed 20 iterations, so the
//! figure is per-iteration cost, not convergence) in dense and online mode at
//! n = m ∈ {1024, 4096}, d = 16, on 1 and 2 threads; and time to a marginal
//! error of 1e-5 at n = m = 1024 (ρ = 1, ρ = 1e3, ε = 0.01 × median).
//!
//! `cargo bench --bench uot`; `MSDE_UOT_SIZES=1024` limits the sizes.
//! Inputs: X ~ N(0, I), Y = X + (0.5, …) + 0.4·N(0, I), uniform weights,
//! ε = 0.1 × the median squared distance, ρ = 1 (identical to
//! benches/compare/uot_pot.py).

use criterion::{Criterion, criterion_group, criterion_main};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::uot::{
    UotConfig, UotMode, UotOutput, UotProblem, median_sq_distance,
    median_sq_distance_workspace_len, solve_uot, uot_workspace_len,
};
use std::hint::black_box;
use std::time::Duration;

const D: usize = 16;
const ITERS: u32 = 20;

fn clouds(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::stream(5, Family::Data, 0);
    let mut x = vec![0.0f32; n * D];
    rng.fill_normal(&mut x);
    let mut y = vec![0.0f32; n * D];
    rng.fill_normal(&mut y);
    for (yv, xv) in y.iter_mut().zip(&x) {
        *yv = xv + 0.5 + 0.4 * *yv;
    }
    (x, y)
}

struct Bufs {
    f: Vec<f32>,
    g: Vec<f32>,
    r: Vec<f32>,
    c: Vec<f32>,
    ws: Vec<f32>,
}

fn solve(p: &UotProblem<'_, f32>, cfg: &UotConfig<f32>, b: &mut Bufs) -> u32 {
    solve_uot(
        p,
        cfg,
        &mut UotOutput {
            f: &mut b.f,
            g: &mut b.g,
            row_mass: &mut b.r,
            col_mass: &mut b.c,
            velocity: None,
            barycenter: None,
            plan: None,
        },
        &mut b.ws,
    )
    .unwrap()
    .iterations
}

fn bench(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("MSDE_UOT_SIZES")
        .ok()
        .map(|s| s.split(',').map(|v| v.parse().unwrap()).collect())
        .unwrap_or(vec![1024, 4096]);
    let mut group = c.benchmark_group("uot");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for &n in &sizes {
        let (x, y) = clouds(n);
        let a = vec![1.0 / n as f32; n];
        let mut mws = vec![0.0f32; median_sq_distance_workspace_len(n, n)];
        let med = median_sq_distance(&x, &y, n, n, D, &mut mws).unwrap();
        let p = UotProblem {
            x: &x,
            y: &y,
            a: &a,
            b: &a,
            n,
            m: n,
            d: D,
            tracks: None,
        };
        for mode in [UotMode::Dense, UotMode::Online] {
            let mut b = Bufs {
                f: vec![0.0; n],
                g: vec![0.0; n],
                r: vec![0.0; n],
                c: vec![0.0; n],
                ws: vec![0.0; uot_workspace_len(n, n, D, mode)],
            };
            let mut cfg = UotConfig::new(0.1 * med);
            cfg.rho_source = 1.0;
            cfg.rho_target = 1.0;
            cfg.mode = mode;
            cfg.fixed_iterations = true;
            cfg.max_iter = ITERS;
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                group.bench_function(format!("{mode:?}/n{n}/{threads}thr/{ITERS}iter"), |bch| {
                    bch.iter(|| pool.install(|| black_box(solve(&p, &cfg, &mut b))))
                });
            }
            // Time to tolerance, 1 thread, n = 1024 only.
            if n == 1024 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap();
                for (name, eps_rel, rho, stages) in [
                    ("rho1", 0.1, 1.0, 0),
                    ("rho1e3", 0.1, 1e3, 0),
                    ("eps0.01", 0.01, 1.0, 3),
                ] {
                    let mut cfg = UotConfig::new(eps_rel * med);
                    cfg.rho_source = rho;
                    cfg.rho_target = rho;
                    cfg.mode = mode;
                    cfg.tol = 1e-5;
                    cfg.eps_scaling_stages = stages;
                    let its = pool.install(|| solve(&p, &cfg, &mut b));
                    println!("to 1e-5: {mode:?} {name}: {its} iterations");
                    group.bench_function(format!("{mode:?}/n{n}/to1e-5/{name}"), |bch| {
                        bch.iter(|| pool.install(|| black_box(solve(&p, &cfg, &mut b))))
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
