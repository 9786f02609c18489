//! The fit is equivariant under a per-coordinate change of units: trained
//! on `a ⊙ z + b` (`a > 0`) it gives the model trained on `z` in the new
//! units, `f' (a ⊙ z + b, t) = a ⊙ f(z, t)` and `L' = diag(a) L`, up to
//! float rounding (f64, a few epochs, coordinates scaled by 1e-3 and 1e3 and
//! shifted). Drift only (every batch through the UOT solve, two clusters)
//! and with diffusion (tracked-only batches, the flow teacher and the
//! propagated-frozen residual).

use morphosde_core::cluster::ClusterConfig;
use morphosde_core::dynamics::Dynamics;
use morphosde_core::model::{Config, DiffusionHead, DriftTeacher, Layout, Learned, Residual};
use morphosde_core::synthetic::{
    EmbryoProcess, GroundTruth, SnapshotDesign, snapshots_workspace_len,
};
use morphosde_core::train::AdamState;
use morphosde_core::train::{
    Control, FitConfig, ModelLearner, Observations, StepPlan, fit, fit_workspace_len,
};

const D: usize = 3;
const SCALE: [f64; D] = [1e-3, 1e3, 1.0];
const SHIFT: [f64; D] = [5.0, -2000.0, 0.25];

/// Snapshots of the embryo process: `(z, t, track)`.
fn data() -> (Vec<f64>, Vec<f64>, Vec<u32>) {
    let process = EmbryoProcess { d: D };
    let bins = [0.0, 0.2, 0.4, 0.6];
    let design = SnapshotDesign {
        bins: &bins,
        per_bin: 150,
        tracked: 50,
        seed: 11,
        h_max: 0.02,
    };
    let obs = design.observations();
    let (mut z, mut t, mut track) = (vec![0.0; obs * D], vec![0.0; obs], vec![0; obs]);
    let mut ws = vec![0.0; snapshots_workspace_len(&process, &design, 1)];
    process
        .snapshots(&design, &mut z, &mut t, &mut track, &mut ws)
        .unwrap();
    (z, t, track)
}

/// Trained parameters of `config` on `z`.
fn train(config: &Config, z: &[f64], t: &[f64], track: &[u32]) -> Vec<f64> {
    let layout = Layout::new(config).unwrap();
    let mut params = vec![0.0; layout.len];
    layout.init(config.seed, &mut params).unwrap();
    let (mut best, mut m, mut v) = (params.clone(), vec![0.0; layout.len], vec![0.0; layout.len]);
    let adam = AdamState {
        m: &mut m,
        v: &mut v,
        steps: 0,
    };
    let mut learner = ModelLearner::new(
        &StepPlan::new(config).unwrap(),
        &mut params,
        &mut best,
        adam,
    )
    .unwrap();
    let cfg = FitConfig {
        epochs: 3,
        steps_per_epoch: 6,
        batch: 48,
        validation_fraction: 0.1,
        validation_batches: 2,
        cluster: ClusterConfig::new(2, 0.3),
        ..FitConfig::default()
    };
    let data = Observations { z, t, track, d: D };
    let need = fit_workspace_len(t.len(), D, &cfg, &learner).unwrap();
    let (mut floats, mut ints) = (vec![f64::NAN; need.floats], vec![0; need.indices]);
    fit(
        &data,
        &cfg,
        &mut learner,
        &mut floats,
        &mut ints,
        &mut |_| Control::Continue,
    )
    .unwrap();
    params
}

/// Largest `|x − y| / max|y|` over `x`, `y`.
fn rel(x: &[f64], y: &[f64]) -> f64 {
    let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn training_on_rescaled_coordinates_gives_the_rescaled_model() {
    let (z, t, track) = data();
    let moved: Vec<f64> = z
        .iter()
        .enumerate()
        .map(|(k, &v)| SCALE[k % D] * v + SHIFT[k % D])
        .collect();
    let base = Config {
        d: D,
        time_features: 2,
        time_scale: 1.0 / 0.6,
        depth: 2,
        width: 16,
        drift_teacher: DriftTeacher::Flow,
        k_neighbours: 1,
        seed: 4,
        ..Config::default()
    };
    let with_noise = Config {
        head: Some(DiffusionHead::Full),
        residual: Residual::PropagatedFrozen,
        warmup_epochs: 1,
        ..base
    };
    for config in [base, with_noise] {
        let a = train(&config, &z, &t, &track);
        let b = train(&config, &moved, &t, &track);
        let (ma, mb) = (
            Learned::new(&config, &a).unwrap(),
            Learned::new(&config, &b).unwrap(),
        );
        // Every 7th observation, at its own time and past the last bin.
        let rows: Vec<usize> = (0..t.len()).step_by(7).collect();
        let n = rows.len();
        let pick = |src: &[f64]| -> Vec<f64> {
            rows.iter()
                .flat_map(|&r| src[r * D..(r + 1) * D].to_vec())
                .collect()
        };
        let (za, zb) = (pick(&z), pick(&moved));
        let q = ma.noise_dim();
        let mut ws = vec![0.0; ma.workspace_len(n)];
        for shift in [0.0, 0.5] {
            let times: Vec<f64> = rows.iter().map(|&r| t[r] + shift).collect();
            let (mut fa, mut la) = (vec![0.0; n * D], vec![0.0; n * D * q]);
            let (mut fb, mut lb) = (vec![0.0; n * D], vec![0.0; n * D * q]);
            ma.drift_and_factor(&za, &times, &mut fa, &mut la, &mut ws);
            mb.drift_and_factor(&zb, &times, &mut fb, &mut lb, &mut ws);
            // Model a in b's units.
            for (k, v) in fa.iter_mut().enumerate() {
                *v *= SCALE[k % D];
            }
            for (k, v) in la.iter_mut().enumerate() {
                *v *= SCALE[k / q % D];
            }
            for c in 0..D {
                let column = |f: &[f64]| f.iter().skip(c).step_by(D).copied().collect::<Vec<_>>();
                let e = rel(&column(&fb), &column(&fa));
                println!(
                    "learn_diffusion {} drift coordinate {c}, t + {shift}: {e:.1e}",
                    config.head.is_some()
                );
                assert!(e < 1e-10, "drift coordinate {c}: {e:e}");
            }
            if q > 0 {
                for c in 0..D {
                    let rows_of = |l: &[f64]| {
                        l.chunks_exact(q)
                            .skip(c)
                            .step_by(D)
                            .flatten()
                            .copied()
                            .collect::<Vec<_>>()
                    };
                    let e = rel(&rows_of(&lb), &rows_of(&la));
                    println!("factor row {c}, t + {shift}: {e:.1e}");
                    assert!(e < 1e-10, "factor row {c}: {e:e}");
                }
            }
        }
    }
}
