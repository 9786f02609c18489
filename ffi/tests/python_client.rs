//! The Python ctypes client's tests (standard library only) pass against
//! the shared library of this build, and its results are bit-identical to
//! the Rust core's: this test computes the core's results on inputs it
//! generates, writes inputs and results to a JSON file, and the Python tests
//! (MSDE_EXPECTED) feed the same inputs through the C ABI and compare.

mod common;
use common::*;
use morphosde_core::cluster::{ClusterConfig, Mode, cluster, workspace_len};
use morphosde_core::codec;
use morphosde_core::integrate::rollout::{
    Method, RolloutConfig, Start, rollout, rollout_workspace_len,
};
use morphosde_core::integrate::sde::SdeConfig;
use morphosde_core::metrics::{
    diffusion_from_factor, diffusion_spectrum, energy_distance, sliced_wasserstein,
    sliced_wasserstein_workspace_len,
};
use morphosde_core::model::{Config, DEFAULT_RANK, DiffusionHead, Inputs, Layout, Learned};
use morphosde_core::propagated::{Propagation, propagate, propagate_workspace_len};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::synthetic::{
    EmbryoProcess, GroundTruth, SnapshotDesign, snapshots_workspace_len,
};
use morphosde_core::train::matching::MatchConfig;
use morphosde_core::train::{AdamState, Batch, train_step};
use morphosde_core::train::{
    Control, FitConfig, ModelLearner, Observations, StepPlan, fit, fit_workspace_len,
};
use morphosde_core::uot::{
    TrackBound, Tracks, UotConfig, UotMode, UotOutput, UotProblem, median_sq_distance,
    median_sq_distance_workspace_len, solve_uot, uot_workspace_len,
};
use std::fmt::Write;
use std::process::Command;

/// A JSON object written field by field (numbers in Rust's shortest
/// round-trip form, so each f32 reaches Python exactly).
#[derive(Default)]
struct Json(String);

impl Json {
    fn field(&mut self, name: &str, value: impl AsRef<str>) -> &mut Self {
        let sep = if self.0.is_empty() { "" } else { ", " };
        write!(self.0, "{sep}\"{name}\": {}", value.as_ref()).unwrap();
        self
    }
    fn done(&self) -> String {
        format!("{{{}}}", self.0)
    }
}

fn list<T: std::fmt::Debug>(values: &[T]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// An f32 as the f64 holding exactly its value (what Python's float of a
/// c_float is), so results compare with `==`.
fn float(x: f32) -> String {
    format!("{:?}", f64::from(x))
}

fn floats(values: &[f32]) -> String {
    let wide: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
    list(&wide)
}

/// `groups` Gaussian blobs (sd 0.3) 3 apart in 2-D, `per` points each at
/// times 0, 1, 2.
fn blobs(groups: usize, per: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::stream(11, Family::Data, 0);
    let (mut z, mut t) = (vec![], vec![]);
    for time in 0..3 {
        for g in 0..groups {
            for _ in 0..per {
                z.push((3.0 * g as f64 + 0.3 * rng.normal()) as f32);
                z.push((0.2 * time as f64 + 0.3 * rng.normal()) as f32);
                t.push(time as f32);
            }
        }
    }
    (z, t)
}

fn cluster_case(knn: usize) -> String {
    let (z, t) = blobs(3, 8);
    let (n, d) = (t.len(), 2);
    let mut cfg = ClusterConfig::new(3, 2.0f32);
    cfg.seed = 5;
    // 0 is the C config's dense mode.
    cfg.mode = match knn {
        0 => Mode::Dense,
        neighbours => Mode::Knn { neighbours },
    };
    let len = workspace_len(n, d, &cfg).unwrap();
    let mut labels = vec![0u32; n];
    let s = cluster(
        &z,
        &t,
        n,
        d,
        &cfg,
        &mut labels,
        &mut vec![0.0; len.floats],
        &mut vec![0; len.indices],
    )
    .unwrap();
    Json::default()
        .field("z", floats(&z))
        .field("t", floats(&t))
        .field("d", d.to_string())
        .field("k", cfg.k.to_string())
        .field("sigma_t", float(cfg.sigma_t))
        .field("seed", cfg.seed.to_string())
        .field("knn_neighbours", knn.to_string())
        .field("float_ws", len.floats.to_string())
        .field("index_ws", len.indices.to_string())
        .field("labels", list(&labels))
        .field("summary_k", s.k.to_string())
        .field("inertia", float(s.inertia))
        .field("sigma_z", float(s.sigma_z))
        .field("eigenvalues", floats(&s.eigenvalues[..s.eigen_count]))
        .done()
}

/// The small model every model, trainer and sample case uses: d = 2, one
/// hidden layer of 8, 2 time features, full diffusion head, seed 3.
fn small_config() -> Config {
    Config {
        d: 2,
        time_features: 2,
        depth: 1,
        width: 8,
        head: Some(DiffusionHead::Full),
        seed: 3,
        ..Config::default()
    }
}

fn config_fields(c: &Config) -> String {
    Json::default()
        .field("d", c.d.to_string())
        .field("time_features", c.time_features.to_string())
        .field("depth", c.depth.to_string())
        .field("width", c.width.to_string())
        .field("learn_diffusion", (c.head.is_some() as u32).to_string())
        .field("seed", c.seed.to_string())
        .done()
}

fn data(len: usize, index: u64, scale: f64) -> Vec<f32> {
    let mut rng = Rng::stream(17, Family::Data, index);
    (0..len).map(|_| (scale * rng.normal()) as f32).collect()
}

fn model_case() -> String {
    let config = small_config();
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(config.seed, &mut params).unwrap();
    let rows = 4;
    let z = data(rows * 2, 0, 1.0);
    let t: Vec<f32> = (0..rows).map(|i| 0.25 * i as f32).collect();
    let (mut f, mut l) = (vec![0.0; rows * 2], vec![0.0; rows * 2 * layout.q]);
    let mut ws = vec![0.0; layout.infer_workspace_len(rows)];
    layout
        .forward_infer(&params, &z, &t, &mut f, &mut l, &mut ws)
        .unwrap();
    // D = L L^T of each row and its eigen-decomposition.
    let (d, q) = (2, layout.q);
    let (mut w, mut v, mut dm) = (
        vec![0.0; rows * d],
        vec![0.0; rows * d * d],
        vec![0.0; rows * d * d],
    );
    let mut scratch = vec![0.0; d * d];
    for r in 0..rows {
        let lr = &l[r * d * q..][..d * q];
        let dd = r * d * d..(r + 1) * d * d;
        diffusion_spectrum(
            lr,
            d,
            q,
            &mut w[r * d..][..d],
            &mut v[dd.clone()],
            &mut scratch,
        )
        .unwrap();
        diffusion_from_factor(lr, d, q, &mut dm[dd]).unwrap();
    }
    let mut bytes = vec![0u8; codec::model_bytes_len::<f32>(&config).unwrap()];
    codec::save(&config, &params, &mut bytes).unwrap();
    // The same network with a standardisation and a time span (which
    // clamps t = 0 and 0.75).
    let mut inputs = Inputs::identity(2);
    inputs.mean[..2].copy_from_slice(&[0.5, -1.0]);
    inputs.scale[..2].copy_from_slice(&[2.0, 0.25]);
    inputs.time_span = [0.1, 0.6];
    let mut scaled = params.clone();
    layout.set_inputs(&mut scaled, &inputs).unwrap();
    let (mut f_in, mut l_in) = (vec![0.0; rows * 2], vec![0.0; rows * 2 * layout.q]);
    layout
        .forward_infer(&scaled, &z, &t, &mut f_in, &mut l_in, &mut ws)
        .unwrap();
    Json::default()
        .field("config", config_fields(&config))
        .field("params", floats(&params))
        .field("inputs_mean", floats(inputs.mean()))
        .field("inputs_scale", floats(inputs.scale()))
        .field("inputs_span", floats(&inputs.time_span))
        .field("f_inputs", floats(&f_in))
        .field("l_inputs", floats(&l_in))
        .field("z", floats(&z))
        .field("t", floats(&t))
        .field("f", floats(&f))
        .field("l", floats(&l))
        .field("q", layout.q.to_string())
        .field("w", floats(&w))
        .field("v", floats(&v))
        .field("dm", floats(&dm))
        .field("bytes", list(&bytes))
        .done()
}

fn train_case() -> String {
    let config = small_config();
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(config.seed, &mut params).unwrap();
    let n = 6;
    let x = data(n * 2, 1, 1.0);
    let t: Vec<f32> = vec![0.5; n];
    let h: Vec<f32> = vec![0.1; n];
    let v_hat = data(n * 2, 2, 0.5);
    let mass: Vec<f32> = (0..n).map(|i| 0.5 + 0.1 * i as f32).collect();
    let y: Vec<f32> = x
        .iter()
        .zip(&v_hat)
        .zip(data(n * 2, 3, 0.05))
        .map(|((&a, &v), e)| a + 0.1 * v + e)
        .collect();
    let batch = Batch {
        x: &x,
        t: &t,
        h: &h,
        v_hat: &v_hat,
        mass: &mass,
        y: &y,
        plan: &[],
    };
    let (mut m, mut v) = (vec![0.0; layout.len], vec![0.0; layout.len]);
    let mut adam = AdamState {
        m: &mut m,
        v: &mut v,
        steps: 0,
    };
    let mut ws = vec![0.0; StepPlan::new(&config).unwrap().workspace_len(n)];
    let mut totals = vec![];
    for epoch in 0..3 {
        let loss = train_step(
            &StepPlan::new(&config).unwrap(),
            epoch,
            &batch,
            &mut params,
            &mut adam,
            &mut ws,
        )
        .unwrap();
        totals.push(loss.total);
    }
    Json::default()
        .field("x", floats(&x))
        .field("t", floats(&t))
        .field("h", floats(&h))
        .field("v_hat", floats(&v_hat))
        .field("mass", floats(&mass))
        .field("y", floats(&y))
        .field("totals", floats(&totals))
        .field("params", floats(&params))
        .done()
}

fn sample_case() -> String {
    let config = small_config();
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(config.seed, &mut params).unwrap();
    let learned = Learned::new(&config, &params).unwrap();
    let (n, times, start) = (5, [0.1f32, 0.2, 0.4], [0.3f32, -0.2]);
    let mut out_all = vec![];
    let mut stop_all = vec![];
    let sde = SdeConfig {
        h_max: 0.05,
        trace_clip: None,
    };
    for method in [
        Method::Rk4 { h: 0.05 },
        Method::EulerMaruyama(sde),
        Method::StrangRk4(sde),
        Method::PlatenWeak2(sde),
    ] {
        let cfg = RolloutConfig {
            method,
            seed: 9,
            block_rows: 2,
        };
        let mut ws = vec![0.0; rollout_workspace_len(&learned, &cfg, 1)];
        let (mut out, mut stop) = (vec![0.0; n * times.len() * 2], vec![0.0; n]);
        rollout(
            &learned,
            Start::Point(&start),
            0.0,
            &times,
            &cfg,
            &mut out,
            &mut stop,
            &mut ws,
        )
        .unwrap();
        out_all.push(floats(&out));
        stop_all.extend(stop);
    }
    assert!(stop_all.iter().all(|s| s.is_infinite()));
    Json::default()
        .field("start", floats(&start))
        .field("times", floats(&times))
        .field("n", n.to_string())
        .field("h", float(0.05))
        .field("seed", "9")
        .field("block_rows", "2")
        .field("rk4", &out_all[0])
        .field("em", &out_all[1])
        .field("strang", &out_all[2])
        .field("weak2", &out_all[3])
        .done()
}

fn metrics_case() -> String {
    let (x, y) = (data(7 * 3, 4, 1.0), data(5 * 3, 5, 1.5));
    let energy = energy_distance(&x, &y, 3).unwrap();
    let mut ws = vec![0.0; sliced_wasserstein_workspace_len(7, 5, 3, 20)];
    let sliced = sliced_wasserstein(&x, &y, 3, 20, 4, &mut ws).unwrap();
    Json::default()
        .field("x", floats(&x))
        .field("y", floats(&y))
        .field("d", "3")
        .field("energy", float(energy))
        .field("sliced", float(sliced))
        .field("projections", "20")
        .field("seed", "4")
        .done()
}

/// Unbalanced transport between two small clouds: dense with a self-edge
/// fraction on two tracks (plan wanted), and online with per-pair bounds.
fn uot_case(online: bool) -> String {
    let (n, m, d) = (6, 5, 2);
    let x = data(n * d, 6, 1.0);
    let y: Vec<f32> = data(m * d, 7, 1.0).iter().map(|v| v + 0.3).collect();
    let a: Vec<f32> = (0..n).map(|i| 1.0 + 0.1 * i as f32).collect();
    let b: Vec<f32> = (0..m).map(|j| 1.2 - 0.1 * j as f32).collect();
    let pairs = [0u32, 0, 2, 1];
    let bounds = [0.3f32, 0.2];
    let mut cfg = UotConfig::new(0.5f32);
    cfg.rho_source = 2.0;
    cfg.rho_target = 1.5;
    cfg.h = 0.25;
    cfg.tol = 1e-5;
    let beta = 0.5f32;
    cfg.mode = if online {
        UotMode::Online
    } else {
        UotMode::Dense
    };
    let tracks = Tracks {
        pairs: &pairs,
        bound: if online {
            TrackBound::PerPair(&bounds)
        } else {
            TrackBound::Fraction(beta)
        },
    };
    let problem = UotProblem {
        x: &x,
        y: &y,
        a: &a,
        b: &b,
        n,
        m,
        d,
        tracks: Some(tracks),
    };
    let (mut f, mut g) = (vec![0.0; n], vec![0.0; m]);
    let (mut rows, mut cols) = (vec![0.0; n], vec![0.0; m]);
    let (mut vel, mut plan) = (vec![0.0; n * d], vec![0.0; n * m]);
    let mut ws = vec![0.0; uot_workspace_len(n, m, d, cfg.mode)];
    let r = solve_uot(
        &problem,
        &cfg,
        &mut UotOutput {
            f: &mut f,
            g: &mut g,
            row_mass: &mut rows,
            col_mass: &mut cols,
            velocity: Some(&mut vel),
            barycenter: None,
            plan: Some(&mut plan),
        },
        &mut ws,
    )
    .unwrap();
    assert!(r.converged);
    let mut median_ws = vec![0.0; median_sq_distance_workspace_len(n, m)];
    let median = median_sq_distance(&x, &y, n, m, d, &mut median_ws).unwrap();
    Json::default()
        .field("median", float(median))
        .field("x", floats(&x))
        .field("y", floats(&y))
        .field("a", floats(&a))
        .field("b", floats(&b))
        .field("d", d.to_string())
        .field("pairs", list(&pairs))
        .field("bounds", if online { floats(&bounds) } else { "[]".into() })
        .field("online", (online as u32).to_string())
        .field("epsilon", float(cfg.epsilon))
        .field("rho_source", float(cfg.rho_source))
        .field("rho_target", float(cfg.rho_target))
        .field("h", float(cfg.h))
        .field("tol", float(cfg.tol))
        .field("self_edge_bound", float(beta))
        .field("row_mass", floats(&rows))
        .field("col_mass", floats(&cols))
        .field("velocity", floats(&vel))
        .field("plan", floats(&plan))
        .field("objective", float(r.objective))
        .field("dual", float(r.dual))
        .field("marginal_error", float(r.marginal_error))
        .field("total_mass", float(r.total_mass))
        .field("iterations", r.iterations.to_string())
        .done()
}

/// Snapshots of the synthetic embryo process in 2-D: 3 bins of 60, 20
/// embryos tracked through all bins.
fn snapshots() -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let p = EmbryoProcess { d: 2 };
    let bins = [0.0f32, 0.2, 0.4];
    let design = SnapshotDesign {
        bins: &bins,
        per_bin: 60,
        tracked: 20,
        seed: 3,
        h_max: 0.02,
    };
    let obs = design.observations();
    let (mut z, mut t, mut track) = (vec![0.0; obs * 2], vec![0.0; obs], vec![0; obs]);
    let mut ws = vec![0.0; snapshots_workspace_len(&p, &design, 1)];
    p.snapshots(&design, &mut z, &mut t, &mut track, &mut ws)
        .unwrap();
    (z, t, track)
}

/// The training loop's small configuration of the fit case.
fn small_fit_config() -> FitConfig<f32> {
    let mut cfg = FitConfig {
        epochs: 4,
        steps_per_epoch: 3,
        batch: 24,
        min_points: 8,
        validation_fraction: 0.2,
        validation_batches: 2,
        patience: 1,
        seed: 8,
        ..FitConfig::default()
    };
    cfg.cluster.k = 2;
    cfg
}

/// core fit of the small model on the snapshots (with and without track
/// ids), from its seeded initialisation.
fn fit_case(tracked: bool) -> String {
    let config = small_config();
    let layout = Layout::new(&config).unwrap();
    let (z, t, mut track) = snapshots();
    if !tracked {
        track.fill(morphosde_core::minibatch::UNTRACKED);
    }
    let cfg = small_fit_config();
    let p = layout.len;
    let (mut params, mut best) = (vec![0.0f32; p], vec![0.0; p]);
    layout.init(config.seed, &mut params).unwrap();
    let (mut m, mut v) = (vec![0.0; p], vec![0.0; p]);
    let adam = AdamState {
        m: &mut m,
        v: &mut v,
        steps: 0,
    };
    let mut learner = ModelLearner::new(
        &StepPlan::new(&config).unwrap(),
        &mut params,
        &mut best,
        adam,
    )
    .unwrap();
    let need = fit_workspace_len(t.len(), 2, &cfg, &learner).unwrap();
    let (mut fw, mut iw) = (vec![f32::NAN; need.floats], vec![u32::MAX; need.indices]);
    let data = Observations {
        z: &z,
        t: &t,
        track: &track,
        d: 2,
    };
    let mut losses = vec![f32::NAN; cfg.epochs * 4];
    let r = fit(&data, &cfg, &mut learner, &mut fw, &mut iw, &mut |e| {
        let valid = e.validation.map_or(f32::NAN, |l| l.total);
        losses[e.epoch * 4..][..4].copy_from_slice(&[
            e.train.total,
            e.train.drift,
            e.train.diffusion,
            valid,
        ]);
        Control::Continue
    })
    .unwrap();
    let steps = learner.adam.steps;
    // Non-finite floats (epochs not run) as null.
    let losses: Vec<String> = losses
        .iter()
        .map(|&x| {
            if x.is_finite() {
                float(x)
            } else {
                "null".into()
            }
        })
        .collect();
    Json::default()
        .field("z", floats(&z))
        .field("t", floats(&t))
        .field("track", if tracked { list(&track) } else { "[]".into() })
        .field("epochs", cfg.epochs.to_string())
        .field("steps_per_epoch", cfg.steps_per_epoch.to_string())
        .field("batch", cfg.batch.to_string())
        .field("min_points", cfg.min_points.to_string())
        .field("validation_fraction", float(cfg.validation_fraction))
        .field("validation_batches", cfg.validation_batches.to_string())
        .field("patience", cfg.patience.to_string())
        .field("clusters", cfg.cluster.k.to_string())
        .field("seed", cfg.seed.to_string())
        .field("params", floats(&params))
        .field("epoch_losses", format!("[{}]", losses.join(", ")))
        .field("report_epochs", r.epochs.to_string())
        .field("best_epoch", r.best_epoch.to_string())
        .field("stopped_early", (r.stopped_early as u32).to_string())
        .field("train_rows", r.train_rows.to_string())
        .field("validation_rows", r.validation_rows.to_string())
        .field("steps", steps.to_string())
        .done()
}

/// The explicit propagated estimator along the small model's flow, from
/// given moments and from single pairs.
fn propagated_case() -> String {
    let config = small_config();
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(config.seed, &mut params).unwrap();
    let learned = Learned::new(&config, &params).unwrap();
    let (rows, d, substeps) = (3, 2, 4);
    let z = data(rows * d, 8, 1.0);
    let t = [0.0f32, 0.3, 0.6];
    let h = [0.2f32, 0.3, 0.25];
    let y: Vec<f32> = z
        .iter()
        .zip(data(rows * d, 9, 0.2))
        .map(|(a, e)| a + e)
        .collect();
    let moments = [
        0.5f32, 0.1, 0.1, 0.3, 1.0, -0.2, -0.2, 0.4, 0.2, 0.05, 0.05, 0.6,
    ];
    let nodes = substeps + 1;
    let (mut states, mut props) = (vec![0.0; rows * nodes * d], vec![0.0; rows * nodes * d * d]);
    let mut ws = vec![0.0; propagate_workspace_len(&learned, rows)];
    propagate(
        &learned,
        &z,
        &t,
        &h,
        substeps,
        &mut states,
        &mut props,
        &mut ws,
    )
    .unwrap();
    let flow: Vec<f32> = (0..rows)
        .flat_map(|r| states[(r * nodes + substeps) * d..][..d].to_vec())
        .collect();
    let mut pair_moments = vec![0.0f32; rows * d * d];
    for r in 0..rows {
        for a in 0..d {
            let ra = y[r * d + a] - flow[r * d + a];
            for c in 0..d {
                let rc = y[r * d + c] - flow[r * d + c];
                pair_moments[r * d * d + a * d + c] = ra * rc / h[r];
            }
        }
    }
    let map = Propagation::new(d, substeps, &h, &props).unwrap();
    let mut est_ws = vec![0.0; map.explicit_diffusion_workspace_len()];
    let (mut from_moments, mut from_pairs) = (vec![0.0; rows * d * d], vec![0.0; rows * d * d]);
    map.explicit_diffusion(&moments, &mut from_moments, &mut est_ws)
        .unwrap();
    map.explicit_diffusion(&pair_moments, &mut from_pairs, &mut est_ws)
        .unwrap();
    Json::default()
        .field("z", floats(&z))
        .field("t", floats(&t))
        .field("h", floats(&h))
        .field("substeps", substeps.to_string())
        .field("y", floats(&y))
        .field("moments", floats(&moments))
        .field("flow", floats(&flow))
        .field("from_moments", floats(&from_moments))
        .field("from_pairs", floats(&from_pairs))
        .done()
}

/// The core's defaults under the C ABI's field names (enums as their
/// `MSDE_` values, flags as 0/1, f32 fields exactly), which the Python
/// module's `model_config()` and `fit_config()` must give.
fn defaults_case() -> String {
    let c = Config::default();
    let model = Json::default()
        .field("d", c.d.to_string())
        .field("time_features", c.time_features.to_string())
        .field("time_scale", format!("{:?}", c.time_scale))
        .field("depth", c.depth.to_string())
        .field("width", c.width.to_string())
        .field("learn_diffusion", (c.head.is_some() as u32).to_string())
        .field(
            "diffusion_low_rank",
            (matches!(c.head, Some(DiffusionHead::LowRank { .. })) as u32).to_string(),
        )
        .field(
            "diffusion_diagonal",
            ((c.head == Some(DiffusionHead::Diagonal)) as u32).to_string(),
        )
        .field("warmup_epochs", c.warmup_epochs.to_string())
        .field(
            "q",
            match c.head {
                Some(DiffusionHead::LowRank { q }) => q,
                _ => DEFAULT_RANK,
            }
            .to_string(),
        )
        .field("lambda_diff", format!("{:?}", c.lambda_diff))
        .field("diffusion_epsilon", format!("{:?}", c.diffusion_epsilon))
        .field("drift_loss", (c.drift_loss as u32).to_string())
        .field("mass_weighting", (c.mass_weighting as u32).to_string())
        .field("target_mode", (c.target_mode as u32).to_string())
        .field("residual", (c.residual as u32).to_string())
        .field("drift_teacher", (c.drift_teacher as u32).to_string())
        .field("mass_threshold", format!("{:?}", c.mass_threshold))
        .field("flow_substeps", c.flow_substeps.to_string())
        .field("k_neighbours", c.k_neighbours.to_string())
        .field("shrinkage", format!("{:?}", c.shrinkage))
        .field("target_epsilon", format!("{:?}", c.target_epsilon))
        .field("clip_grad_norm", format!("{:?}", c.clip_grad_norm))
        .field("clip_trace", format!("{:?}", c.clip_trace))
        .field("learning_rate", format!("{:?}", c.learning_rate))
        .field("beta1", format!("{:?}", c.beta1))
        .field("beta2", format!("{:?}", c.beta2))
        .field("adam_epsilon", format!("{:?}", c.adam_epsilon))
        .field("weight_decay", format!("{:?}", c.weight_decay))
        .field("seed", c.seed.to_string())
        .done();
    let f = FitConfig::<f32>::default();
    let cluster = Json::default()
        .field("k", f.cluster.k.to_string())
        .field("choose_k", (f.cluster.choose_k as u32).to_string())
        .field("sigma_t", float(f.cluster.sigma_t))
        .field("restarts", f.cluster.restarts.to_string())
        .field("kmeans_max_iter", f.cluster.kmeans_max_iter.to_string())
        .field("eigen_max_iter", f.cluster.eigen_max_iter.to_string())
        .field(
            "memory_limit_bytes",
            f.cluster.memory_limit_bytes.to_string(),
        )
        .done();
    let fit = Json::default()
        .field("epochs", f.epochs.to_string())
        .field("steps_per_epoch", f.steps_per_epoch.to_string())
        .field("batch", f.batch.to_string())
        .field("min_points", f.min_points.to_string())
        .field("epsilon_relative", float(f.epsilon_relative))
        .field("rho_relative", float(f.rho_relative))
        .field("track_bound", float(f.track_bound))
        .field("uot_tol", float(f.uot_tol))
        .field("uot_max_iter", f.uot_max_iter.to_string())
        .field("validation_fraction", float(f.validation_fraction))
        .field("validation_batches", f.validation_batches.to_string())
        .field("patience", f.patience.to_string())
        .field("validation_tolerance", float(f.validation_tolerance))
        .field("final_learning_rate", float(f.final_learning_rate))
        .field("bridge_epsilon", (f.bridge_epsilon as u32).to_string())
        .field("seed", f.seed.to_string())
        .field(
            "validation_min_per_bin",
            f.validation_min_per_bin.to_string(),
        )
        .field("divergence_factor", float(f.divergence_factor))
        .field("max_rollbacks", f.max_rollbacks.to_string())
        .done();
    let m = MatchConfig::default();
    let matching = Json::default()
        .field("steps", m.steps.to_string())
        .field("batch", m.batch.to_string())
        .field("substeps", m.substeps.to_string())
        .field("horizon", m.horizon.to_string())
        .field("learning_rate", format!("{:?}", m.learning_rate))
        .field("clip_grad_norm", format!("{:?}", m.clip_grad_norm))
        .field(
            "validation_fraction",
            format!("{:?}", m.validation_fraction),
        )
        .field("check_every", m.check_every.to_string())
        .field("starts_per_step", m.starts_per_step.to_string())
        .field("diffusion_anchor", format!("{:?}", m.diffusion_anchor))
        .field("seed", m.seed.to_string())
        .done();
    Json::default()
        .field("model", model)
        .field("fit", fit)
        .field("cluster", cluster)
        .field("match", matching)
        .done()
}

fn expected() -> String {
    Json::default()
        .field("defaults", defaults_case())
        .field(
            "cluster",
            format!("[{}, {}]", cluster_case(0), cluster_case(10)),
        )
        .field("model", model_case())
        .field("train", train_case())
        .field("sample", sample_case())
        .field("metrics", metrics_case())
        .field("uot", format!("[{}, {}]", uot_case(false), uot_case(true)))
        .field("propagated", propagated_case())
        .field("fit", format!("[{}, {}]", fit_case(true), fit_case(false)))
        .done()
}

#[test]
fn python_ctypes_tests_pass() {
    let so = library_dir().join("libmorphosde.so");
    assert!(so.exists(), "{} not built", so.display());
    let expected_path =
        std::env::temp_dir().join(format!("msde-expected-{}.json", std::process::id()));
    std::fs::write(&expected_path, expected()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/python/test_ffi.py"))
        .arg("-v")
        .env("MORPHOSDE_LIB", &so)
        .env("MSDE_EXPECTED", &expected_path)
        .output()
        .expect("python3 is required for the ctypes client tests");
    let _ = std::fs::remove_file(&expected_path);
    assert!(
        out.status.success(),
        "python tests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
