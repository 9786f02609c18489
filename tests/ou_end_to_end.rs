//! End to end on the non-normal Ornstein–Uhlenbeck process (issue 8):
//! learned drift and learned `D` from snapshots with 30% of the embryos
//! tracked, through the real pipeline — `morphosde train` at the CLI's
//! defaults (pairwise target, 80 epochs at learning rate 1e-3) with each
//! drift teacher (`--drift-teacher chord|flow`) and residual, `morphosde
//! field` for the learned `D`, `morphosde simulate` for the rollouts —
//! scored on an independent held-out sample the way the demo scores the
//! embryo process:
//! - D error: `‖D_θ − D‖_F / ‖D‖_F` summed over the held-out states of
//!   every bin but the last (square root of the ratio of summed squares);
//! - energy ratio: the mean over the later bins of the energy distance
//!   between rollouts (Euler–Maruyama, step 0.01, from the held-out first
//!   bin) and the held-out bin, over the same mean between an independent
//!   true sample and the held-out bin (the sampling floor);
//! - drift error: `‖f_θ(z) − A z‖ / ‖A z‖` over the same held-out states.
//!
//! Data ([`sample`]): 8 bins at gap 0.2 (`h‖A‖₂ ≈ 0.6`), `per_bin`
//! embryos per bin of which 30% are tracked through every bin and the rest
//! are fresh untracked embryos, simulated by Euler–Maruyama at step 0.002
//! (`synthetic::snapshots`) from `z₀ ~ N(m, 0.1² I)`, `m = (1, −0.5, 0.8)`.
//! The test runs at 600 per bin and 40 epochs (instead of 1000 and 80)
//! and leaves out the flow teacher's one-step row to stay fast (about 18 s
//! on 2 cores); `-- --ignored` runs the full size over three seeds with
//! every row.
//!
//! The figures (tables over seeds, the longer-training runs, where the D
//! error sits) are in `docs/results/ou_end_to_end.md`.
//!
//! `cargo test --release --test ou_end_to_end -- --nocapture` prints the
//! table (`-- --ignored --nocapture` the full size, about 2 minutes).
#[path = "common/non_normal_ou.rs"]
mod non_normal_ou;

use morphosde_cli::commands::scoring::RelativeErrors;
use morphosde_core::integrate::{rk4_flow, rk4_flow_workspace_len};
use morphosde_core::metrics::energy_distance;
use morphosde_core::minibatch::UNTRACKED;
use morphosde_core::rng::Rng;
use morphosde_core::synthetic::LinearSde;
use morphosde_core::synthetic::{SnapshotDesign, snapshots, snapshots_workspace_len};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Observation times: 8 bins, frame gap 0.2 (the demo's).
const BINS: [f32; 8] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4];
const D: usize = 3;
/// Mean and spread of the initial cloud.
const START_MEAN: [f32; D] = [1.0, -0.5, 0.8];
const START_SD: f32 = 0.1;
/// A configuration compared: the drift teacher and the residual, as the
/// CLI spells them.
#[derive(Clone, Copy)]
struct Setting {
    teacher: &'static str,
    residual: &'static str,
}

const fn setting(teacher: &'static str, residual: &'static str) -> Setting {
    Setting { teacher, residual }
}

/// The settings of the fast test: every residual with the chord teacher,
/// the flow-based ones with the flow teacher.
const SETTINGS: [Setting; 7] = [
    setting("chord", "one-step"),
    setting("chord", "flow"),
    setting("chord", "propagated"),
    setting("chord", "propagated-frozen"),
    setting("flow", "flow"),
    setting("flow", "propagated"),
    setting("flow", "propagated-frozen"),
];

/// A snapshot dataset: `obs × D` states, times, track ids.
struct Data {
    z: Vec<f32>,
    t: Vec<f32>,
    track: Vec<u32>,
}

impl Data {
    /// States (row-major) of the rows whose time passes `keep`.
    fn rows(&self, keep: impl Fn(f32) -> bool) -> Vec<f32> {
        (0..self.t.len())
            .filter(|&i| keep(self.t[i]))
            .flat_map(|i| self.z[i * D..(i + 1) * D].iter().copied())
            .collect()
    }
}

/// Snapshots of `process` at [`BINS`] (see the module docs), or, with
/// `start` (`n × D`), the process rolled out from those states (every one
/// tracked, Euler–Maruyama at step `h_max`).
fn sample(
    process: &LinearSde<'_>,
    per_bin: usize,
    seed: u64,
    start: Option<&[f32]>,
    h_max: f32,
) -> Data {
    let design = SnapshotDesign {
        bins: &BINS,
        per_bin,
        tracked: if start.is_some() {
            per_bin
        } else {
            per_bin * 3 / 10
        },
        seed,
        h_max,
    };
    let obs = design.observations();
    let (mut z, mut t, mut track) = (vec![0.0f32; obs * D], vec![0.0f32; obs], vec![0u32; obs]);
    let mut ws = vec![0.0f32; snapshots_workspace_len(process, &design, 2)];
    let initial = |i: usize, rng: &mut Rng, row: &mut [f32]| match start {
        Some(s) => row.copy_from_slice(&s[i * D..(i + 1) * D]),
        None => {
            rng.fill_normal(row);
            for (x, m) in row.iter_mut().zip(START_MEAN) {
                *x = m + START_SD * *x;
            }
        }
    };
    snapshots(
        process, initial, &design, &mut z, &mut t, &mut track, &mut ws,
    )
    .unwrap();
    Data { z, t, track }
}

/// The chord-velocity process: `dz = C z dt + L dW` with
/// `C = (e^{Ah} − I)/h` at the gap `h = 0.2`, the mean displacement over a
/// gap per unit time, which is what a drift trained on `(z_{t+h} − z_t)/h`
/// teachers learns (`e^{Ah}` by RK4 at 400 substeps from the unit vectors);
/// returns `C` (3×3, row-major).
fn chord_matrix() -> [f64; 9] {
    let h = f64::from(BINS[1] - BINS[0]);
    let unit = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let mut flow = [0.0; 9];
    let mut ws = vec![0.0; rk4_flow_workspace_len::<f64, _>(&non_normal_ou::process(), 3)];
    rk4_flow(
        &non_normal_ou::process(),
        &unit,
        &[0.0; 3],
        &[h; 3],
        400,
        &mut flow,
        &mut ws,
    )
    .unwrap();
    // Row j of `flow` is e^{Ah} e_j, column j of e^{Ah}.
    let mut a = [0.0; 9];
    for (c, x) in a.iter_mut().enumerate() {
        let (i, j) = (c / 3, c % 3);
        *x = (flow[j * 3 + i] - unit[c]) / h;
    }
    a
}

/// The demo's pooled relative error `√(Σ‖x̂ − x‖² / Σ‖x‖²)` of learned
/// values (`rows × width`) against `truth(r, out)`, the true values at
/// state `r`, over all states.
fn pooled_error(learned: &[f32], width: usize, truth: impl FnMut(usize, &mut [f64])) -> f64 {
    RelativeErrors::new(learned, width, truth, |_| 0, 1).pooled(&[0])
}

/// Relative error `‖f − A z‖ / ‖A z‖` (pooled) of drift values `f` at
/// states `z` (both `rows × D`).
fn drift_error(z: &[f64], f: &[f32], process: &LinearSde<'_>) -> f64 {
    let a = process.drift_matrix();
    pooled_error(f, D, |r, out| {
        for (i, x) in out.iter_mut().enumerate() {
            *x = (0..D).map(|j| a[i * D + j] * z[r * D + j]).sum();
        }
    })
}

/// Runs the CLI; panics with its stderr on failure.
fn morphosde(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_morphosde"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "morphosde {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `header` and one row per state, `prefix(i)` first.
fn write_csv(file: &Path, header: &str, z: &[f32], prefix: impl Fn(usize) -> String) {
    let mut text = format!("{header}\n");
    for (i, row) in z.chunks_exact(D).enumerate() {
        let _ = writeln!(text, "{}{},{},{}", prefix(i), row[0], row[1], row[2]);
    }
    std::fs::write(file, text).unwrap();
}

/// A CLI output table: its header and rows.
fn read_csv(file: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    (header, rows)
}

/// Mean of the energy distances between `clouds[k]` and the held-out bin
/// `k + 1`, over the later bins.
fn mean_energy(clouds: &[Vec<f32>], test: &Data) -> f64 {
    let total: f64 = clouds
        .iter()
        .zip(&BINS[1..])
        .map(|(cloud, &tb)| f64::from(energy_distance(cloud, &test.rows(|t| t == tb), D).unwrap()))
        .sum();
    total / clouds.len() as f64
}

/// Scores of one trained model (see the module docs).
struct Scores {
    d_error: f64,
    energy: f64,
    /// Relative error of the learned drift at the held-out states against
    /// the true `A z` and against the chord velocity `C z`.
    drift_error: f64,
    drift_vs_chord: f64,
}

/// Trains with `setting` on `train.csv` in `dir` and scores the model.
fn train_and_score(
    dir: &Path,
    setting: Setting,
    seed: u64,
    extra: &[&str],
    test: &Data,
    chord: &LinearSde<'_>,
) -> Scores {
    let Setting { teacher, residual } = setting;
    let name = format!("{teacher}-{residual}");
    let model = dir.join(format!("{name}.msde"));
    let (data, seed_arg) = (dir.join("train.csv"), seed.to_string());
    let mut args = vec![
        "train",
        "--data",
        path(&data),
        "--id-column",
        "id",
        "--learn_diffusion",
        "true",
        "--residual",
        residual,
        "--drift-teacher",
        teacher,
        "--seed",
        &seed_arg,
        "--out",
        path(&model),
        "--quiet",
    ];
    args.extend(extra);
    morphosde(&args);
    // Learned D at the held-out states of every bin but the last.
    let field = dir.join(format!("{name}-field.csv"));
    morphosde(&[
        "field",
        "--model",
        path(&model),
        "--points",
        path(&dir.join("points.csv")),
        "--out",
        path(&field),
    ]);
    let (header, rows) = read_csv(&field);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (z0, f0, first) = (column("z0"), column("f0"), column("D00"));
    let block = |at: usize, width: usize| -> Vec<f64> {
        rows.iter()
            .flat_map(|r| r[at..at + width].iter().copied())
            .collect()
    };
    let narrow = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
    let (z, drift) = (block(z0, D), narrow(block(f0, D)));
    let truth = non_normal_ou::diffusion();
    let d_error = pooled_error(&narrow(block(first, D * D)), D * D, |_, out| {
        out.copy_from_slice(&truth)
    });
    // Rollouts from the held-out first bin to the later bins.
    let rollouts = dir.join(format!("{name}-rollouts.csv"));
    let times: Vec<String> = BINS[1..].iter().map(f32::to_string).collect();
    let rollout_seed = (seed + 3).to_string();
    morphosde(&[
        "simulate",
        "--model",
        path(&model),
        "--initial",
        path(&dir.join("start.csv")),
        "--times",
        &times.join(","),
        "--seed",
        &rollout_seed,
        "--out",
        path(&rollouts),
    ]);
    let (_, rows) = read_csv(&rollouts);
    let clouds: Vec<Vec<f32>> = BINS[1..]
        .iter()
        .map(|&tb| {
            rows.iter()
                .filter(|r| r[1] as f32 == tb)
                .flat_map(|r| r[2..2 + D].iter().map(|&x| x as f32))
                .collect()
        })
        .collect();
    Scores {
        d_error,
        energy: mean_energy(&clouds, test),
        drift_error: drift_error(&z, &drift, &non_normal_ou::process()),
        drift_vs_chord: drift_error(&z, &drift, chord),
    }
}

/// One run: every setting's scores, the floor, and the energy distances
/// of the true process's rollouts from the same start (what a perfect
/// model scores) and of the chord-velocity process's (what a perfect model
/// of the chord velocity scores).
struct Run {
    scores: Vec<Scores>,
    floor: f64,
    true_rollouts: f64,
    chord_rollouts: f64,
}

/// Samples training, held-out and reference data with `seed` (`seed`,
/// `seed + 1`, `seed + 2`, as the demo does), trains every setting with
/// the CLI's defaults and `extra` flags, and scores them.
fn run(per_bin: usize, seed: u64, settings: &[Setting], extra: &[&str]) -> Run {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "msde-ou-e2e-{}-{per_bin}-{seed}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ou = &non_normal_ou::process();
    let train = sample(ou, per_bin, seed, None, 0.002);
    let test = sample(ou, per_bin, seed + 1, None, 0.002);
    let reference = sample(ou, per_bin, seed + 2, None, 0.002);
    let chord_a = chord_matrix();
    let chord = LinearSde::new(D, &chord_a, &[], &non_normal_ou::L, D).unwrap();
    write_csv(&dir.join("train.csv"), "t,id,z0,z1,z2", &train.z, |i| {
        let id = match train.track[i] {
            UNTRACKED => -1,
            id => i64::from(id),
        };
        format!("{},{id},", train.t[i])
    });
    let last = BINS[BINS.len() - 1];
    let leaving: Vec<f32> = test.t.iter().copied().filter(|&t| t != last).collect();
    write_csv(
        &dir.join("points.csv"),
        "t,z0,z1,z2",
        &test.rows(|t| t != last),
        |i| format!("{},", leaving[i]),
    );
    let start = test.rows(|t| t == BINS[0]);
    write_csv(&dir.join("start.csv"), "z0,z1,z2", &start, |_| {
        String::new()
    });
    let scores = settings
        .iter()
        .map(|&s| train_and_score(&dir, s, seed, extra, &test, &chord))
        .collect();
    let later = |data: &Data| -> Vec<Vec<f32>> {
        BINS[1..].iter().map(|&tb| data.rows(|t| t == tb)).collect()
    };
    let n = start.len() / D;
    let truth = sample(ou, n, seed + 3, Some(&start), 0.01);
    let chord_paths = sample(&chord, n, seed + 3, Some(&start), 0.01);
    std::fs::remove_dir_all(&dir).ok();
    Run {
        scores,
        floor: mean_energy(&later(&reference), &test),
        true_rollouts: mean_energy(&later(&truth), &test),
        chord_rollouts: mean_energy(&later(&chord_paths), &test),
    }
}

fn print(per_bin: usize, seed: u64, settings: &[Setting], run: &Run) {
    eprintln!(
        "OU non-normal, {per_bin}/bin, seed {seed}: energy floor {:.5}; rollouts of the true \
         process {:.5} ({:.2}x), of the chord-velocity process {:.5} ({:.1}x)",
        run.floor,
        run.true_rollouts,
        run.true_rollouts / run.floor,
        run.chord_rollouts,
        run.chord_rollouts / run.floor
    );
    for (Setting { teacher, residual }, s) in settings.iter().zip(&run.scores) {
        eprintln!(
            "  {teacher:<5} teacher, {residual:<18} D error {:5.1}%  energy {:.5} ({:4.1}x floor)  drift error {:4.1}% \
             (vs chord {:4.1}%)",
            100.0 * s.d_error,
            s.energy,
            s.energy / run.floor,
            100.0 * s.drift_error,
            100.0 * s.drift_vs_chord
        );
    }
}

#[test]
fn propagated_target_learns_ou_diffusion_end_to_end() {
    let (per_bin, seed) = (600, 0);
    let run = run(per_bin, seed, &SETTINGS, &["--epochs", "40"]);
    print(per_bin, seed, &SETTINGS, &run);
    // The protocol can reach the 1.5x: the true process rolled out
    // from the held-out start scores at the floor (measured 1.05x).
    assert!(
        run.true_rollouts < 1.5 * run.floor,
        "true process {} vs floor {}",
        run.true_rollouts,
        run.floor
    );
    assert!(run.chord_rollouts > 10.0 * run.floor);
    let [
        chord_one_step,
        chord_flow,
        chord_propagated,
        chord_frozen,
        flow_flow,
        flow_propagated,
        flow_frozen,
    ] = &run.scores[..]
    else {
        unreachable!()
    };
    let chord_rows = [
        ("chord one-step", chord_one_step),
        ("chord flow", chord_flow),
        ("chord propagated", chord_propagated),
        ("chord frozen", chord_frozen),
    ];
    // The chord teacher learns from (z_{t+h} − z_t)/h: the drift is the
    // chord velocity (measured 7.0% from C z), 20.1% from the true A z, and
    // the chord process alone sits far above the floor (measured 25.9x).
    for (name, s) in chord_rows {
        assert!(
            s.drift_vs_chord < 0.10,
            "{name}: drift vs chord {}",
            s.drift_vs_chord
        );
        assert!(
            s.drift_error > 0.15,
            "{name}: drift error {}",
            s.drift_error
        );
        // The rollouts are as close as that drift allows (measured
        // 0.96-0.97x the chord process's distance).
        assert!(
            s.energy < 1.25 * run.chord_rollouts,
            "{name}: energy {} vs chord process {}",
            s.energy,
            run.chord_rollouts
        );
    }
    // With the chord teacher the propagated targets bring D closest
    // (measured 18.4% and 18.1%, against 27.7% one-step and 25.8% flow): the
    // biased drift's flow and Jacobian enter the target.
    for (name, s) in [
        ("chord propagated", chord_propagated),
        ("chord frozen", chord_frozen),
    ] {
        assert!(s.d_error < 0.27, "{name}: D error {}", s.d_error);
        assert!(
            s.d_error < chord_one_step.d_error.min(chord_flow.d_error) - 0.025,
            "{name}: D error {} vs one-step {} and flow {}",
            s.d_error,
            chord_one_step.d_error,
            chord_flow.d_error
        );
    }
    // The flow teacher removes the drift's finite-gap bias: 8.5% from A z
    // (21.4% from the chord), against 20.1% with the chord teacher, and the
    // rollouts fall from 25x the floor to 1.6-2.0x, an order of magnitude
    // below the chord process's. Not yet the 1.5x.
    let flow_rows = [
        ("flow flow", flow_flow),
        ("flow propagated", flow_propagated),
        ("flow frozen", flow_frozen),
    ];
    for (name, s) in flow_rows {
        assert!(
            s.drift_error < 0.10,
            "{name}: drift error {}",
            s.drift_error
        );
        assert!(
            s.drift_error < 0.5 * chord_propagated.drift_error,
            "{name}: drift error {} vs chord teacher's {}",
            s.drift_error,
            chord_propagated.drift_error
        );
        assert!(
            s.energy < 4.0 * run.floor,
            "{name}: energy {} vs floor {}",
            s.energy,
            run.floor
        );
        assert!(
            s.energy < 0.2 * run.chord_rollouts,
            "{name}: energy {} vs chord process {}",
            s.energy,
            run.chord_rollouts
        );
    }
    // With the flow teacher too the propagated targets bring D closest
    // (measured 13.8% and 13.7%, against 27.8% with the flow residual;
    // within the 15% at this seed).
    for (name, s) in [
        ("flow propagated", flow_propagated),
        ("flow frozen", flow_frozen),
    ] {
        assert!(s.d_error < 0.25, "{name}: D error {}", s.d_error);
        assert!(
            s.d_error < flow_flow.d_error - 0.04,
            "{name}: D error {} vs flow residual {}",
            s.d_error,
            flow_flow.d_error
        );
    }
}

/// The full-size measurement: 1000 per bin, 80 epochs, three seeds, both
/// teachers with each residual.
#[test]
#[ignore]
fn full_size_over_three_seeds() {
    const FULL: [Setting; 8] = [
        setting("chord", "one-step"),
        setting("chord", "flow"),
        setting("chord", "propagated"),
        setting("chord", "propagated-frozen"),
        setting("flow", "one-step"),
        setting("flow", "flow"),
        setting("flow", "propagated"),
        setting("flow", "propagated-frozen"),
    ];
    for seed in 0..3 {
        print(1000, seed, &FULL, &run(1000, seed, &FULL, &[]));
    }
}

/// Longer training with the flow teacher and the propagated residual at
/// full size, three seeds: 160 epochs (the schedule stretched, so the
/// learning rate decays over twice the steps), with and without the
/// pairwise target's residuals averaged over 8 neighbours.
#[test]
#[ignore]
fn full_size_flow_teacher_longer_training() {
    const FLOW_PROPAGATED: [Setting; 1] = [setting("flow", "propagated")];
    let variants: [&[&str]; 2] = [
        &["--epochs", "160"],
        &["--epochs", "160", "--k-neighbours", "8"],
    ];
    for extra in variants {
        for seed in 0..3 {
            eprintln!("{extra:?}");
            let run = run(1000, seed, &FLOW_PROPAGATED, extra);
            print(1000, seed, &FLOW_PROPAGATED, &run);
        }
    }
}
