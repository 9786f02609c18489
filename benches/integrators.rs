//! How far each SDE scheme's law is from the true process's, on the
//! recovery suite's ground-truth processes (`core::synthetic`: `ou`,
//! `pitchfork`, `cycles`, `embryo` at d = 2, 4, 8).
//!
//! `cargo bench --bench integrators` (prints Markdown tables; `--seeds
//! 0,1,2`, `--n 5000` and `--quick` — only d = 2 — may follow `--`).
//!
//! For each process, d and seed: one start cloud of `n` states drawn from
//! the process's initial law; the reference is the Strang splitting in f64
//! at step [`REFERENCE_STEP`] from that cloud; every candidate (scheme and
//! step, a multiple of the reference's, in f32 as `simulate` runs) rolls
//! out the same cloud driven by the same Brownian paths: trajectory `i`'s
//! normals over a candidate's substep are the sum of the reference's over
//! the fine steps it covers, over √(their count) (Platen's signs come from
//! a stream of their own). The paired paths make the difference of the
//! laws far less noisy than two independent clouds would. At t = 0.5, 1.0,
//! 1.5 the candidate's mean and covariance are compared with the
//! reference's: `‖m − m_ref‖ / √tr C_ref` (mean error) and
//! `‖C − C_ref‖_F / ‖C_ref‖_F` (covariance error). Each cell: the larger
//! of the two at its worst time, mean over seeds (and the largest over
//! seeds). The schemes' cost is measured on a learned model, where it
//! matters: `benches/rollout.rs`.

use morphosde_core::Float;
use morphosde_core::integrate::platen::{platen_path, platen_path_workspace_len};
use morphosde_core::integrate::sde::{Noise, SdeConfig, em_path, em_path_workspace_len};
use morphosde_core::integrate::strang::{strang_path, strang_path_workspace_len};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::synthetic::{GroundTruth, Process};
use rayon::prelude::*;

/// Step of the reference rollout (Strang splitting, f64).
const REFERENCE_STEP: f64 = 0.001;
/// Times the laws are compared at.
const TIMES: [f64; 3] = [0.5, 1.0, 1.5];

/// A candidate: a scheme's name and step.
#[derive(Clone, Copy)]
struct Candidate {
    scheme: &'static str,
    h: f64,
}

const CANDIDATES: [Candidate; 10] = [
    Candidate {
        scheme: "em",
        h: 0.01,
    },
    Candidate {
        scheme: "em",
        h: 0.005,
    },
    Candidate {
        scheme: "em",
        h: 0.002,
    },
    Candidate {
        scheme: "strang",
        h: 0.05,
    },
    Candidate {
        scheme: "strang",
        h: 0.02,
    },
    Candidate {
        scheme: "strang",
        h: 0.01,
    },
    Candidate {
        scheme: "strang",
        h: 0.005,
    },
    Candidate {
        scheme: "weak2",
        h: 0.05,
    },
    Candidate {
        scheme: "weak2",
        h: 0.02,
    },
    Candidate {
        scheme: "weak2",
        h: 0.01,
    },
];

/// Trajectory `i`'s noise for a scheme whose substep covers `m` reference
/// steps: each normal is the sum of the reference's `m` over `√m`.
struct Coupled {
    fine: Rng,
    signs: Rng,
    m: usize,
    buf: Vec<f64>,
}

impl Noise for Coupled {
    fn normals<F: Float>(&mut self, out: &mut [F]) {
        let q = out.len();
        self.buf.resize(2 * q, 0.0);
        let (acc, draw) = self.buf.split_at_mut(q);
        acc.fill(0.0);
        for _ in 0..self.m {
            self.fine.fill_normal(draw);
            for (a, x) in acc.iter_mut().zip(draw.iter()) {
                *a += x;
            }
        }
        let scale = 1.0 / (self.m as f64).sqrt();
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o = F::from_f64(a * scale);
        }
    }
    fn signs<F: Float>(&mut self, out: &mut [F]) {
        self.signs.signs(out);
    }
}

/// A path function of the SDE schemes ([`em_path`] and the others).
type Path<F> = fn(
    &Process,
    &[F],
    F,
    &[F],
    &SdeConfig<F>,
    &mut [Coupled],
    &mut [F],
    &mut [F],
    &mut [F],
) -> morphosde_core::Result<morphosde_core::integrate::StepStats>;

/// Rolls `process` out from `start` (`n×d`) to [`TIMES`] by `candidate`
/// in float type `F`, trajectory `i` driven by stream `i` of `seed`;
/// returns the states (`n×K×d`, as f64).
fn roll<F: Float>(process: &Process, start: &[f64], candidate: Candidate, seed: u64) -> Vec<f64> {
    let d = process.d();
    let big_k = TIMES.len();
    let block = 64;
    let m = (candidate.h / REFERENCE_STEP).round() as usize;
    // The coupling needs every output gap to be whole substeps of whole
    // reference steps.
    let mut from = 0.0;
    for &t in &TIMES {
        let substeps = (t - from) / candidate.h;
        assert!(
            (substeps - substeps.round()).abs() < 1e-9
                && (candidate.h / REFERENCE_STEP - m as f64).abs() < 1e-9,
            "step {} does not divide the output gaps",
            candidate.h
        );
        from = t;
    }
    let config = SdeConfig {
        h_max: F::from_f64(candidate.h),
        trace_clip: None,
    };
    let times: Vec<F> = TIMES.iter().map(|&t| F::from_f64(t)).collect();
    let mut out = vec![0.0f64; start.len() / d * big_k * d];
    out.par_chunks_mut(block * big_k * d)
        .zip(start.par_chunks(block * d))
        .enumerate()
        .for_each(|(b, (out_b, start_b))| {
            let rows = start_b.len() / d;
            let z0: Vec<F> = start_b.iter().map(|&x| F::from_f64(x)).collect();
            let mut noise: Vec<Coupled> = (0..rows)
                .map(|r| {
                    let i = (b * block + r) as u64;
                    Coupled {
                        fine: Rng::stream(seed, Family::Trajectory, i),
                        signs: Rng::stream(seed, Family::Projection, i),
                        m,
                        buf: Vec::new(),
                    }
                })
                .collect();
            let mut o = vec![F::ZERO; rows * big_k * d];
            let mut stop = vec![F::ZERO; rows];
            let (path, ws_len) = match candidate.scheme {
                "em" => (
                    em_path as Path<F>,
                    em_path_workspace_len::<F, _>(process, rows),
                ),
                "strang" => (
                    strang_path as Path<F>,
                    strang_path_workspace_len::<F, _>(process, rows),
                ),
                _ => (
                    platen_path as Path<F>,
                    platen_path_workspace_len::<F, _>(process, rows),
                ),
            };
            let mut ws = vec![F::ZERO; ws_len];
            let stats = path(
                process,
                &z0,
                F::ZERO,
                &times,
                &config,
                &mut noise,
                &mut o,
                &mut stop,
                &mut ws,
            )
            .expect("path");
            assert_eq!(stats.stopped, 0, "{} stopped", process.name());
            for (x, y) in out_b.iter_mut().zip(&o) {
                *x = y.to_f64();
            }
        });
    out
}

/// Mean and covariance of the states at output `k` of a rollout.
fn moments(paths: &[f64], d: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let big_k = TIMES.len();
    let rows: Vec<&[f64]> = paths
        .chunks_exact(big_k * d)
        .map(|p| &p[k * d..(k + 1) * d])
        .collect();
    let n = rows.len() as f64;
    let mut mean = vec![0.0; d];
    for r in &rows {
        for (m, x) in mean.iter_mut().zip(r.iter()) {
            *m += x / n;
        }
    }
    let mut cov = vec![0.0; d * d];
    for r in &rows {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += (r[i] - mean[i]) * (r[j] - mean[j]) / (n - 1.0);
            }
        }
    }
    (mean, cov)
}

/// The larger of the mean and covariance errors of `paths` against
/// `reference`, at the worst of [`TIMES`].
fn error(paths: &[f64], reference: &[f64], d: usize) -> f64 {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    (0..TIMES.len())
        .map(|k| {
            let (m, c) = moments(paths, d, k);
            let (mr, cr) = moments(reference, d, k);
            let trace: f64 = (0..d).map(|i| cr[i * d + i]).sum();
            let dm: Vec<f64> = m.iter().zip(&mr).map(|(a, b)| a - b).collect();
            let dc: Vec<f64> = c.iter().zip(&cr).map(|(a, b)| a - b).collect();
            (norm(&dm) / trace.sqrt()).max(norm(&dc) / norm(&cr))
        })
        .fold(0.0, f64::max)
}

struct Args {
    seeds: Vec<u64>,
    n: usize,
    dims: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        seeds: vec![0, 1, 2],
        n: 5_000,
        dims: vec![2, 4, 8],
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--seeds" => {
                i += 1;
                a.seeds = argv[i].split(',').map(|s| s.parse().unwrap()).collect();
            }
            "--n" => {
                i += 1;
                a.n = argv[i].parse().unwrap();
            }
            "--quick" => a.dims = vec![2],
            _ => {} // cargo bench's own flags
        }
        i += 1;
    }
    a
}

fn main() {
    let args = args();
    let header: Vec<String> = CANDIDATES
        .iter()
        .map(|c| format!("{} {}", c.scheme, c.h))
        .collect();
    let mut errors_table = Vec::new();
    for name in Process::NAMES {
        for &d in &args.dims {
            let process = Process::named(name, d).expect("process");
            let mut errors = vec![Vec::new(); CANDIDATES.len()];
            for &seed in &args.seeds {
                let mut start = vec![0.0f64; args.n * d];
                for (i, row) in start.chunks_exact_mut(d).enumerate() {
                    process.initial_state(&mut Rng::stream(seed, Family::Data, i as u64), row);
                }
                let reference = Candidate {
                    scheme: "strang",
                    h: REFERENCE_STEP,
                };
                let reference = roll::<f64>(&process, &start, reference, seed);
                for (c, candidate) in CANDIDATES.iter().enumerate() {
                    let paths = roll::<f32>(&process, &start, *candidate, seed);
                    errors[c].push(error(&paths, &reference, d));
                }
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let worst: Vec<String> = errors
                .iter()
                .map(|v| {
                    format!(
                        "{:.4} ({:.4})",
                        mean(v),
                        v.iter().fold(0.0f64, |a, &b| a.max(b))
                    )
                })
                .collect();
            errors_table.push(format!("| {name} | {d} | {} |", worst.join(" | ")));
            eprintln!("{}", errors_table.last().unwrap());
        }
    }
    let rule = "---|".repeat(CANDIDATES.len() + 2);
    println!(
        "Error against the reference (strang {REFERENCE_STEP}, f64): the larger of the mean and covariance errors at the worst of t = 0.5, 1.0, 1.5; mean over seeds {:?} (largest), n = {}:\n",
        args.seeds, args.n
    );
    println!("| process | d | {} |\n|{rule}", header.join(" | "));
    for r in &errors_table {
        println!("{r}");
    }
}
