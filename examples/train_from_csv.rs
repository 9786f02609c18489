//! Train a model from a snapshot CSV with `morphosde_core`, then roll it out
//! and compare the rollouts with the data at every time.
//!
//! ```text
//! cargo run --release --example train_from_csv [-- data.csv]
//! ```
//!
//! The table has a header and the columns `t` (time), `id` (track id; −1
//! or empty = untracked) and one column per coordinate (the format of
//! `morphosde train --data`, see the README). Without an argument the
//! example first writes a small table of the built-in non-normal
//! Ornstein–Uhlenbeck process (8 times, 120 embryos each) to the system's
//! temporary directory, reads it and deletes it.
//!
//! The core allocates nothing: every call below that works on data takes
//! its scratch memory from a buffer the caller sized with the matching
//! `*_workspace_len` function first. The model is small (one hidden layer
//! of 32) and trained for 10 short epochs so that the example runs in seconds;
//! `morphosde train` uses the full defaults.

use morphosde_cli::data::{CoordinateColumns, Snapshots};
use morphosde_core::integrate::rollout::{
    MAX_BLOCK_ROWS, Method, RolloutConfig, Start, default_workers, rollout, rollout_workspace_len,
};
use morphosde_core::integrate::sde::SdeConfig;
use morphosde_core::metrics::energy_distance;
use morphosde_core::minibatch::UNTRACKED;
use morphosde_core::model::{Config, DiffusionHead, Layout, Learned};
use morphosde_core::synthetic::{NonNormalOu, SnapshotDesign};
use morphosde_core::train::AdamState;
use morphosde_core::train::{
    Control, FitConfig, ModelLearner, Observations, StepPlan, fit, fit_workspace_len,
};
use std::path::PathBuf;

const SEED: u64 = 7;

fn main() -> Result<(), String> {
    let (path, temporary) = match std::env::args_os().nth(1) {
        Some(path) => (PathBuf::from(path), false),
        None => (write_example_table()?, true),
    };
    let data = Snapshots::read(&path, "t", Some("id"), &CoordinateColumns::Rest);
    if temporary {
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let data = data?;
    println!(
        "{}: {} observations of d = {} at {} times",
        path.display(),
        data.len(),
        data.d,
        data.grid().times.len()
    );

    // 1. Configure: the defaults, made smaller and faster (a larger step
    //    for fewer epochs), with a learned full D.
    let config = Config {
        d: data.d,
        depth: 1,
        width: 32,
        head: Some(DiffusionHead::Full),
        learning_rate: 3e-3,
        seed: SEED,
        ..Config::default()
    };
    let fit_config = FitConfig::<f32> {
        epochs: 10,
        steps_per_epoch: 20,
        seed: SEED,
        ..FitConfig::default()
    };

    // 2. Parameters, their best copy and Adam's moments: caller memory,
    //    laid out by `Layout`, initialised from the seed.
    let layout = Layout::new(&config).map_err(|e| e.to_string())?;
    let mut params = vec![0.0f32; layout.len];
    layout
        .init(config.seed, &mut params)
        .map_err(|e| e.to_string())?;
    let mut best = params.clone();
    let (mut m, mut v) = (vec![0.0f32; layout.len], vec![0.0f32; layout.len]);
    let adam = AdamState {
        m: &mut m,
        v: &mut v,
        steps: 0,
    };
    let mut learner = ModelLearner::new(
        &StepPlan::new(&config).map_err(|e| e.to_string())?,
        &mut params,
        &mut best,
        adam,
    )
    .map_err(|e| e.to_string())?;

    // 3. Train: the observations as slices, workspaces sized first.
    let track: Vec<u32> = data.track.iter().map(|t| t.unwrap_or(UNTRACKED)).collect();
    let observations = Observations {
        z: &data.z,
        t: &data.t,
        track: &track,
        d: data.d,
    };
    let need =
        fit_workspace_len(data.len(), data.d, &fit_config, &learner).map_err(|e| e.to_string())?;
    let (mut floats, mut indices) = (vec![0.0f32; need.floats], vec![0u32; need.indices]);
    let report = fit(
        &observations,
        &fit_config,
        &mut learner,
        &mut floats,
        &mut indices,
        &mut |epoch| {
            println!(
                "epoch {:2}: training loss: drift {:.4}, diffusion {:.4}",
                epoch.epoch + 1,
                epoch.train.drift,
                epoch.train.diffusion
            );
            Control::Continue
        },
    )
    .map_err(|e| format!("training: {e}"))?;
    println!(
        "kept the model of epoch {} of {}",
        report.best_epoch + 1,
        report.epochs
    );

    // 4. Roll out from every observation of the first time with the
    //    Strang splitting, recording the states at the later times.
    let model = Learned::new(&config, &params).map_err(|e| e.to_string())?;
    let times = data.grid().times;
    let t0 = times[0] as f32;
    let later: Vec<f32> = times[1..].iter().map(|&t| t as f32).collect();
    let start = data.at_time(times[0], "start")?;
    let n = start.len();
    let rollout_config = RolloutConfig {
        method: Method::StrangRk4(SdeConfig {
            h_max: 0.01,
            trace_clip: None,
        }),
        seed: SEED,
        block_rows: MAX_BLOCK_ROWS,
    };
    let mut out = vec![0.0f32; n * later.len() * data.d];
    let mut stop_times = vec![0.0f32; n];
    let mut ws = vec![0.0f32; rollout_workspace_len(&model, &rollout_config, default_workers())];
    rollout(
        &model,
        Start::Cloud(&start.z),
        t0,
        &later,
        &rollout_config,
        &mut out,
        &mut stop_times,
        &mut ws,
    )
    .map_err(|e| format!("rollout: {e}"))?;

    // 5. Compare: energy distance to the data at each later time (0 for
    //    identical distributions) of the rollouts and, as a yardstick, of
    //    the start cloud left where it was.
    println!("time  energy distance to the data: rollouts, start cloud");
    let d = data.d;
    for (k, &t) in times[1..].iter().enumerate() {
        let rolled: Vec<f32> = (0..n)
            .flat_map(|i| {
                let at = (i * later.len() + k) * d;
                out[at..at + d].iter().copied()
            })
            .collect();
        let observed = data.at_time(t, "time")?;
        let rolled = energy_distance(&rolled, &observed.z, d).map_err(|e| e.to_string())?;
        let still = energy_distance(&start.z, &observed.z, d).map_err(|e| e.to_string())?;
        println!("{t:4.2}  {rolled:.4}  {still:.4}");
    }
    Ok(())
}

/// Writes a snapshot table of the built-in non-normal OU process in two
/// dimensions (8 times 0.2 apart, 120 embryos per time of which 40 are
/// tracked through all of them) and returns its path.
fn write_example_table() -> Result<PathBuf, String> {
    let bins: Vec<f32> = (0..8).map(|k| 0.2 * k as f32).collect();
    let design = SnapshotDesign {
        bins: &bins,
        per_bin: 120,
        tracked: 40,
        seed: SEED,
        h_max: 0.01,
    };
    let data = Snapshots::sampled(&NonNormalOu { d: 2 }, &design)?;
    let path = std::env::temp_dir().join(format!("morphosde-example-{}.csv", std::process::id()));
    data.write(&path)?;
    Ok(path)
}
