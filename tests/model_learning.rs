//! Learning, not just running: the train step recovers known drift and
//! diffusion from tracked pairs of simulated SDEs (Euler–Maruyama with
//! 20 substeps per gap, the teacher velocity is the finite difference).
#![allow(clippy::needless_range_loop)] // index-heavy closed forms read clearer as loops

#[path = "common/pair_training.rs"]
mod pair_training;

use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::sde::{SdeConfig, em_path, em_path_workspace_len};
use morphosde_core::model::{Config, DiffusionHead, Learned, Residual, TargetMode};
use morphosde_core::rng::{Family, Rng};

/// `dz = A z dt + s(z₀) G dW` in `D` dimensions (`s = 1` unless `growth`
/// is set: then `s(z₀) = 1 + growth·z₀`).
struct Sde<const D: usize> {
    a: [[f64; D]; D],
    g: [[f64; D]; D],
    growth: f64,
}

impl<const D: usize> Dynamics<f64> for Sde<D> {
    fn dim(&self) -> usize {
        D
    }
    fn noise_dim(&self) -> usize {
        D
    }
    fn workspace_len(&self, _: usize) -> usize {
        0
    }
    fn drift(&self, z: &[f64], t: &[f64], f: &mut [f64], _: &mut [f64]) {
        for r in 0..t.len() {
            for i in 0..D {
                f[r * D + i] = (0..D).map(|j| self.a[i][j] * z[r * D + j]).sum();
            }
        }
    }
    fn drift_and_factor(&self, z: &[f64], t: &[f64], f: &mut [f64], l: &mut [f64], w: &mut [f64]) {
        self.drift(z, t, f, w);
        for r in 0..t.len() {
            let s = 1.0 + self.growth * z[r * D];
            for i in 0..D {
                for j in 0..D {
                    l[r * D * D + i * D + j] = s * self.g[i][j];
                }
            }
        }
    }
}

impl<const D: usize> Sde<D> {
    fn diffusion(&self, z0: f64) -> [[f64; D]; D] {
        let s = 1.0 + self.growth * z0;
        let mut out = [[0.0; D]; D];
        for i in 0..D {
            for j in 0..D {
                out[i][j] = s * s * (0..D).map(|k| self.g[i][k] * self.g[j][k]).sum::<f64>();
            }
        }
        out
    }

    /// `n` tracked pairs over gap `h` from sources `x` (f32 for training).
    fn pairs(&self, x: &[f64], h: f64, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let n = x.len() / D;
        let mut y = vec![0.0; n * D];
        let mut stop = vec![0.0; n];
        let mut rngs: Vec<Rng> = (0..n as u64)
            .map(|i| Rng::stream(seed, Family::Trajectory, i))
            .collect();
        let mut ws = vec![0.0; em_path_workspace_len(self, n)];
        let cfg = SdeConfig {
            h_max: h / 20.0,
            trace_clip: None,
        };
        em_path(
            self,
            x,
            0.0,
            &[h],
            &cfg,
            &mut rngs,
            &mut y,
            &mut stop,
            &mut ws,
        )
        .unwrap();
        let v: Vec<f32> = (0..n * D).map(|c| ((y[c] - x[c]) / h) as f32).collect();
        (y.iter().map(|&v| v as f32).collect(), v)
    }
}

fn rel_frobenius(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum();
    (num / b.iter().map(|v| v * v).sum::<f64>()).sqrt()
}

/// Drift and `D = L Lᵀ` of the learned model at one state (t = 0).
fn evaluate(config: &Config, params: &[f32], z: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let d = config.d;
    let learned = Learned::new(config, params).unwrap();
    let q = learned.noise_dim();
    let mut f = vec![0.0f32; d];
    let mut l = vec![0.0f32; d * q];
    let mut ws = vec![0.0f32; learned.workspace_len(1)];
    learned.drift_and_factor(z, &[0.0], &mut f, &mut l, &mut ws);
    let mut dm = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            dm[i * d + j] = (0..q)
                .map(|k| l[i * q + k] as f64 * l[j * q + k] as f64)
                .sum();
        }
    }
    (f.iter().map(|&v| v as f64).collect(), dm)
}

/// Linear SDE, d = 4, constant full-rank correlated D, h = 0.02, 8192
/// tracked pairs, affine model (depth 0): drift matrix and D within 10%;
/// the diagonal head cannot fit the off-diagonal D.
#[test]
fn linear_sde_recovers_drift_matrix_and_full_rank_d() {
    let sde = Sde::<4> {
        a: [
            [-1.0, 0.5, 0.0, 0.0],
            [-0.5, -1.0, 0.0, 0.3],
            [0.0, 0.0, -0.8, 0.4],
            [0.2, 0.0, -0.4, -0.6],
        ],
        g: [
            [0.4, 0.0, 0.0, 0.0],
            [0.2, 0.3, 0.0, 0.0],
            [0.1, -0.15, 0.3, 0.0],
            [0.15, 0.1, 0.1, 0.25],
        ],
        growth: 0.0,
    };
    let (n, h) = (8192, 0.02);
    let mut x = vec![0.0f64; n * 4];
    Rng::stream(1, Family::Data, 0).fill_normal(&mut x);
    let (y, v) = sde.pairs(&x, h, 1);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let base = Config {
        d: 4,
        time_features: 0,
        depth: 0,
        head: Some(DiffusionHead::Full),
        lambda_diff: 1.0,
        warmup_epochs: 0,
        target_mode: TargetMode::Pairwise,
        residual: Residual::Flow,
        flow_substeps: 2,
        k_neighbours: 16,
        shrinkage: 0.0,
        target_epsilon: 0.0,
        clip_grad_norm: 0.0,
        seed: 3,
        ..Config::default()
    };
    let phases = [(1e-2, 20), (3e-3, 10), (1e-3, 10)];
    let d_true: Vec<f64> = sde.diffusion(0.0).iter().flatten().copied().collect();
    let a_true: Vec<f64> = sde.a.iter().flatten().copied().collect();
    let mut errors = [0.0; 3];
    for (slot, diagonal) in [false, true].into_iter().enumerate() {
        let config = Config {
            head: Some(if diagonal {
                DiffusionHead::Diagonal
            } else {
                DiffusionHead::Full
            }),
            ..base
        };
        let params = pair_training::train(&config, &x32, &y, &v, h as f32, &phases);
        let (f0, d0) = evaluate(&config, &params, &[0.0; 4]);
        if !diagonal {
            let mut a = vec![0.0; 16];
            for k in 0..4 {
                let mut e = [0.0f32; 4];
                e[k] = 1.0;
                let (fk, _) = evaluate(&config, &params, &e);
                for i in 0..4 {
                    a[i * 4 + k] = fk[i] - f0[i];
                }
            }
            errors[0] = rel_frobenius(&a, &a_true);
        }
        errors[1 + slot] = rel_frobenius(&d0, &d_true);
    }
    println!(
        "linear SDE d=4: drift matrix rel. Frobenius error {:.3}, D error full head {:.3}, diagonal head {:.3}",
        errors[0], errors[1], errors[2]
    );
    assert!(errors[0] < 0.1, "drift matrix {}", errors[0]);
    assert!(errors[1] < 0.1, "full-rank D {}", errors[1]);
    assert!(
        errors[2] > 0.3 && errors[2] > 3.0 * errors[1],
        "diagonal head {}",
        errors[2]
    );
}

/// Noise growing along z₀ (D(z) = (1 + 0.3 z₀)² G Gᵀ), d = 2, encoder
/// 2×32: the learned D at held-out states is within 20%.
#[test]
fn state_dependent_d_is_learned_at_held_out_states() {
    let sde = Sde::<2> {
        a: [[-0.5, 0.3], [-0.3, -0.5]],
        g: [[0.3, 0.0], [0.15, 0.2]],
        growth: 0.3,
    };
    let (n, h) = (8192, 0.02);
    let mut rng = Rng::stream(2, Family::Data, 0);
    let mut x = vec![0.0f64; n * 2];
    for i in 0..n {
        x[2 * i] = 3.0 * rng.uniform() - 1.5;
        x[2 * i + 1] = rng.normal();
    }
    let (y, v) = sde.pairs(&x, h, 2);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let config = Config {
        d: 2,
        time_features: 0,
        depth: 2,
        width: 32,
        head: Some(DiffusionHead::Full),
        lambda_diff: 1.0,
        warmup_epochs: 0,
        target_mode: TargetMode::Pairwise,
        residual: Residual::Flow,
        flow_substeps: 2,
        k_neighbours: 8,
        shrinkage: 0.0,
        target_epsilon: 0.0,
        clip_grad_norm: 0.0,
        seed: 4,
        ..Config::default()
    };
    let params = pair_training::train(
        &config,
        &x32,
        &y,
        &v,
        h as f32,
        &[(3e-3, 25), (1e-3, 15), (3e-4, 10)],
    );
    let mut worst: f64 = 0.0;
    for &(z0, z1) in &[
        (-1.2, 0.3),
        (-0.6, -0.5),
        (0.1, 0.8),
        (0.7, -0.2),
        (1.3, 0.4),
    ] {
        let (_, dm) = evaluate(&config, &params, &[z0 as f32, z1 as f32]);
        let truth: Vec<f64> = sde.diffusion(z0).iter().flatten().copied().collect();
        worst = worst.max(rel_frobenius(&dm, &truth));
    }
    println!("state-dependent D: worst rel. Frobenius error at 5 held-out states {worst:.3}");
    assert!(worst < 0.2, "{worst}");
}
