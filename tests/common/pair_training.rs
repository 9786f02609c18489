//! Minibatch Adam on prepared pairs, shared by the model-learning
//! integration tests: every pair is a source `x`, its end point `y` over
//! the gap `h` and a teacher velocity `v` (unit mass, time 0), shuffled per
//! epoch from the config's seed.
//!
//! Use from an integration test binary:
//! `#[path = "common/pair_training.rs"] mod pair_training;` then
//! `pair_training::train(&config, &x, &y, &v, h, &phases)`.

use morphosde_core::model::{Config, Layout};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::train::{AdamState, Batch, StepPlan, train_step};

/// Minibatch Adam (batches of 256) over the pairs with a step-size
/// schedule (one learning rate and a number of epochs per phase), from the
/// config's seeded initialisation; returns the parameters.
pub fn train(
    config: &Config,
    x: &[f32],
    y: &[f32],
    v: &[f32],
    h: f32,
    phases: &[(f64, u32)],
) -> Vec<f32> {
    let d = config.d;
    let n = x.len() / d;
    let b = 256;
    let layout = Layout::new(config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(config.seed, &mut params).unwrap();
    let (mut m, mut s) = (vec![0.0f32; layout.len], vec![0.0f32; layout.len]);
    let mut adam = AdamState {
        m: &mut m,
        v: &mut s,
        steps: 0,
    };
    let mut ws = vec![0.0f32; StepPlan::new(config).unwrap().workspace_len(b)];
    let (t, hs, mass) = (vec![0.0f32; b], vec![h; b], vec![1.0f32; b]);
    let mut order: Vec<usize> = (0..n).collect();
    let (mut bx, mut by, mut bv) = (
        vec![0.0f32; b * d],
        vec![0.0f32; b * d],
        vec![0.0f32; b * d],
    );
    let mut epoch = 0;
    for &(lr, epochs) in phases {
        let cfg = Config {
            learning_rate: lr,
            ..*config
        };
        for _ in 0..epochs {
            Rng::stream(config.seed, Family::Minibatch, epoch as u64).shuffle(&mut order);
            for chunk in order.chunks_exact(b) {
                for (k, &i) in chunk.iter().enumerate() {
                    bx[k * d..(k + 1) * d].copy_from_slice(&x[i * d..(i + 1) * d]);
                    by[k * d..(k + 1) * d].copy_from_slice(&y[i * d..(i + 1) * d]);
                    bv[k * d..(k + 1) * d].copy_from_slice(&v[i * d..(i + 1) * d]);
                }
                let batch = Batch {
                    x: &bx,
                    t: &t,
                    h: &hs,
                    v_hat: &bv,
                    mass: &mass,
                    y: &by,
                    plan: &[],
                };
                train_step(
                    &StepPlan::new(&cfg).unwrap(),
                    epoch,
                    &batch,
                    &mut params,
                    &mut adam,
                    &mut ws,
                )
                .unwrap();
            }
            epoch += 1;
        }
    }
    params
}
