//! The demo's plots of a trained model on the built-in process: rollouts
//! against the held-out data per bin (on `z0, z1`, or on the data's two
//! leading principal components when `d > 2`), the training curves, and
//! with a diffusion head the eigen-analysis of `D` along the wild-type
//! backbone, `tr D` over time and the branch coordinate (masked where the
//! training data has no embryo nearby) and the local calibration of `D`.

use super::demo::{BINS, bin_rows, rollout_bin};
use super::scoring::learned_diffusion;
use super::train::Trained;
use crate::data::Snapshots;
use crate::plots::{self, QUANTILE_LEVELS, QuantileSeries};
use morphosde_core::integrate::{rk4_flow, rk4_flow_workspace_len};
use morphosde_core::linalg::sym_eigen;
use morphosde_core::metrics::{calibration_summary, calibration_workspace_len};
use morphosde_core::model::Learned;
use morphosde_core::synthetic::{EmbryoProcess, GroundTruth};
use std::collections::HashMap;
use std::path::Path;

/// Heatmap cells farther than this (in the `z0, z1` plane) from every
/// training embryo of the nearest bin are masked.
const MASK_BANDWIDTH: f64 = 0.15;
/// Tracked pairs per calibration minibatch.
const CALIBRATION_BATCH: usize = 32;
/// RK4 substeps of the flow in the calibration targets.
const FLOW_SUBSTEPS: usize = 4;

/// Every plot of a demo run into `dir`: `train` is the training data,
/// `test` the held-out set, `paths` the rollouts from its first bin.
pub fn plot_all(
    dir: &Path,
    trained: &Trained,
    train: &Snapshots,
    test: &Snapshots,
    paths: &[f32],
) -> Result<(), String> {
    let d = test.d;
    plot_rollouts(&dir.join("rollouts.svg"), test, paths)?;
    trained.plot_curves(&dir.join("training.svg"))?;
    if trained.config.head.is_none() {
        return Ok(());
    }
    let model = Learned::new(&trained.config, &trained.params).map_err(|e| e.to_string())?;
    // The wild-type backbone: z = (t, 0, …, 0).
    let steps = 29;
    let times: Vec<f64> = (0..steps)
        .map(|i| 1.4 * i as f64 / (steps - 1) as f64)
        .collect();
    let mut z = vec![0.0f32; steps * d];
    for (i, &t) in times.iter().enumerate() {
        z[i * d] = t as f32;
    }
    let tf: Vec<f32> = times.iter().map(|&t| t as f32).collect();
    let dm = learned_diffusion(&model, &z, &tf);
    let mut eig = vec![0.0f64; steps * d];
    let (mut w, mut v) = (vec![0.0f64; d], vec![0.0f64; d * d]);
    for i in 0..steps {
        let mut a: Vec<f64> = dm[i * d * d..(i + 1) * d * d]
            .iter()
            .map(|&x| x as f64)
            .collect();
        sym_eigen(&mut a, d, &mut w, &mut v).map_err(|e| e.to_string())?;
        eig[i * d..(i + 1) * d].copy_from_slice(&w);
    }
    let zf: Vec<f64> = z.iter().map(|&x| x as f64).collect();
    let df: Vec<f64> = dm.iter().map(|&x| x as f64).collect();
    plots::diffusion_along_path(
        &dir.join("diffusion_backbone.svg"),
        d,
        (0, 1),
        ("z0", "z1"),
        &times,
        &zf,
        &eig,
        &df,
        d.min(3),
    )?;
    plot_heterogeneity(&dir.join("heterogeneity.svg"), &model, train, &times)?;
    plot_calibration(&dir.join("calibration.svg"), &model, test)
}

/// Data against rollouts per bin (the first bin's rollouts are its data).
fn plot_rollouts(path: &Path, test: &Snapshots, paths: &[f32]) -> Result<(), String> {
    let d = test.d;
    let held: Vec<Vec<f32>> = BINS.iter().map(|&tb| bin_rows(test, tb)).collect();
    let mut sims = vec![held[0].clone()];
    sims.extend((1..BINS.len()).map(|k| rollout_bin(paths, d, k)));
    if d == 2 {
        let panels: Vec<(f32, &[f32], &[f32])> = (0..BINS.len())
            .map(|k| (BINS[k], held[k].as_slice(), sims[k].as_slice()))
            .collect();
        return plots::rollouts_by_bin(path, d, (0, 1), ("z0", "z1"), &panels);
    }
    let plane = plots::principal_plane(&test.z, d)?;
    let (held, sims): (Vec<_>, Vec<_>) = held
        .iter()
        .zip(&sims)
        .map(|(a, b)| (plane.project(a), plane.project(b)))
        .unzip();
    let panels: Vec<(f32, &[f32], &[f32])> = (0..BINS.len())
        .map(|k| (BINS[k], held[k].as_slice(), sims[k].as_slice()))
        .collect();
    let [x, y] = plane.names();
    plots::rollouts_by_bin(path, 2, (0, 1), (&x, &y), &panels)
}

/// `tr D` over time and the branch coordinate `z1` (`z0 = t`, others 0),
/// grey where no training embryo of the nearest bin lies within
/// [`MASK_BANDWIDTH`] in the `z0, z1` plane.
fn plot_heterogeneity(
    path: &Path,
    model: &Learned<'_, f32>,
    train: &Snapshots,
    times: &[f64],
) -> Result<(), String> {
    let d = train.d;
    let positions: Vec<f64> = (0..25).map(|j| -0.4 + 2.2 * j as f64 / 24.0).collect();
    let (mut zg, mut tg) = (Vec::new(), Vec::new());
    for &t in times {
        for &x in &positions {
            let mut p = vec![0.0f32; d];
            p[0] = t as f32;
            p[1] = x as f32;
            zg.extend(p);
            tg.push(t as f32);
        }
    }
    let dg = learned_diffusion(model, &zg, &tg);
    let trace: Vec<f64> = dg
        .chunks_exact(d * d)
        .map(|m| (0..d).map(|k| m[k * d + k] as f64).sum())
        .collect();
    let nearest_bin = |t: f64| {
        BINS.iter()
            .copied()
            .min_by(|a, b| {
                (f64::from(*a) - t)
                    .abs()
                    .total_cmp(&(f64::from(*b) - t).abs())
            })
            .unwrap_or(BINS[0])
    };
    let observed: Vec<bool> = zg
        .chunks_exact(d)
        .zip(&tg)
        .map(|(p, &t)| {
            let bin = nearest_bin(f64::from(t));
            (0..train.len()).any(|i| {
                let q = &train.z[i * d..i * d + 2];
                train.t[i] == bin
                    && f64::from(q[0] - p[0]).hypot(f64::from(q[1] - p[1])) <= MASK_BANDWIDTH
            })
        })
        .collect();
    plots::heatmap(
        path,
        "tr D",
        "z1",
        times,
        &positions,
        &trace,
        &observed,
        &format!(
            "z0 = t, other coordinates 0; grey: no training embryo of the nearest bin within {MASK_BANDWIDTH} in (z0, z1)"
        ),
    )
}

/// Local calibration of `D` on the held-out tracked pairs of each bin
/// transition, in minibatches of [`CALIBRATION_BATCH`] pairs: the target
/// `D̂_b = Σ r rᵀ / (B h)` of the residuals `r = y − φ_h(x)` around the
/// learned drift's flow, against the mean of `D` over the pairs' two end
/// states — the learned `D` and the true one (whose error is what the
/// batch size and the flow's residual leave).
fn plot_calibration(path: &Path, model: &Learned<'_, f32>, test: &Snapshots) -> Result<(), String> {
    let d = test.d;
    let truth = EmbryoProcess { d };
    let mut starts = Vec::new();
    let (mut learned_q, mut true_q) = (Vec::new(), Vec::new());
    for k in 0..BINS.len() - 1 {
        let (x, y) = tracked_pairs(test, BINS[k], BINS[k + 1]);
        let pairs = x.len() / d;
        let batches = pairs / CALIBRATION_BATCH;
        if batches < 2 {
            continue;
        }
        let rows = batches * CALIBRATION_BATCH;
        let (x, y) = (&x[..rows * d], &y[..rows * d]);
        let h = BINS[k + 1] - BINS[k];
        let (t0, t1) = (vec![BINS[k]; rows], vec![BINS[k + 1]; rows]);
        let mut flow = vec![0.0f32; rows * d];
        let mut ws = vec![0.0f32; rk4_flow_workspace_len(model, rows)];
        rk4_flow(
            model,
            x,
            &t0,
            &vec![h; rows],
            FLOW_SUBSTEPS,
            &mut flow,
            &mut ws,
        )
        .map_err(|e| format!("calibration: {e}"))?;
        let mut target = vec![0.0f64; batches * d * d];
        for (r, (yr, pr)) in y.chunks_exact(d).zip(flow.chunks_exact(d)).enumerate() {
            let out = &mut target[(r / CALIBRATION_BATCH) * d * d..][..d * d];
            for i in 0..d {
                for j in 0..d {
                    let (ri, rj) = (yr[i] - pr[i], yr[j] - pr[j]);
                    out[i * d + j] +=
                        f64::from(ri * rj) / (CALIBRATION_BATCH as f64 * f64::from(h));
                }
            }
        }
        let learned: Vec<f64> = pair_means(
            &learned_diffusion(model, x, &t0),
            &learned_diffusion(model, y, &t1),
            d * d,
        );
        let (mut l, mut dm) = (vec![0.0f64; d * d], vec![0.0f64; d * d]);
        let mut exact = |z: &[f32], t: f32| -> Vec<f64> {
            z.chunks_exact(d)
                .flat_map(|p| {
                    let p: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
                    truth.diffusion_at(&p, f64::from(t), &mut l, &mut dm);
                    dm.clone()
                })
                .collect()
        };
        let (ex, ey) = (exact(x, BINS[k]), exact(y, BINS[k + 1]));
        let exact_mean = pair_means_f64(&ex, &ey, d * d);
        learned_q.push(batch_quantiles(&learned, &target, d)?);
        true_q.push(batch_quantiles(&exact_mean, &target, d)?);
        starts.push(f64::from(BINS[k]));
    }
    plots::calibration(
        path,
        &format!(
            "local calibration of D: held-out tracked pairs, {CALIBRATION_BATCH} per minibatch, D̂ around the learned flow"
        ),
        "start of the transition (t)",
        "‖D − D̂‖_F (per unit time)",
        &starts,
        &[
            QuantileSeries {
                name: "learned D",
                quantiles: &learned_q,
            },
            QuantileSeries {
                name: "true D",
                quantiles: &true_q,
            },
        ],
    )
}

/// Start and end states (`pairs × d` each) of the embryos tracked from
/// bin `t0` to bin `t1`, in row order of the start bin.
fn tracked_pairs(data: &Snapshots, t0: f32, t1: f32) -> (Vec<f32>, Vec<f32>) {
    let d = data.d;
    let ends: HashMap<u32, usize> = (0..data.len())
        .filter(|&i| data.t[i] == t1)
        .filter_map(|i| data.track[i].map(|id| (id, i)))
        .collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in (0..data.len()).filter(|&i| data.t[i] == t0) {
        if let Some(&j) = data.track[i].and_then(|id| ends.get(&id)) {
            x.extend_from_slice(&data.z[i * d..(i + 1) * d]);
            y.extend_from_slice(&data.z[j * d..(j + 1) * d]);
        }
    }
    (x, y)
}

/// Per minibatch, the mean over its pairs of `(a + b) / 2` (`a`, `b` are
/// `rows × width`, the value at each pair's two ends).
fn pair_means(a: &[f32], b: &[f32], width: usize) -> Vec<f64> {
    let a: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let b: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    pair_means_f64(&a, &b, width)
}

fn pair_means_f64(a: &[f64], b: &[f64], width: usize) -> Vec<f64> {
    let rows = a.len() / width;
    let mut out = vec![0.0f64; (rows / CALIBRATION_BATCH) * width];
    for r in 0..rows {
        let o = &mut out[(r / CALIBRATION_BATCH) * width..][..width];
        for (k, o) in o.iter_mut().enumerate() {
            *o += 0.5 * (a[r * width + k] + b[r * width + k]) / CALIBRATION_BATCH as f64;
        }
    }
    out
}

/// Quantiles at [`QUANTILE_LEVELS`] of `‖D_b − D̂_b‖_F` over minibatches.
fn batch_quantiles(d_pred: &[f64], d_hat: &[f64], d: usize) -> Result<[f64; 5], String> {
    let batches = d_hat.len() / (d * d);
    let (mut abs, mut rel) = ([0.0f64; 5], [0.0f64; 5]);
    let mut ws = vec![0.0f64; calibration_workspace_len(batches)];
    calibration_summary(
        d_pred,
        d_hat,
        d,
        &QUANTILE_LEVELS,
        &mut abs,
        &mut rel,
        &mut ws,
    )
    .map_err(|e| format!("calibration: {e}"))?;
    Ok(abs)
}
