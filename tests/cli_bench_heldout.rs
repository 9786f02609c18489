//! `morphosde bench-heldout` end to end on a tiny grid: every intermediate
//! bin asked for is held out, each variant runs once per seed, the
//! baselines sit beside them, the JSON and the Markdown table agree, the
//! result is deterministic, and a failed run is shown, not averaged away.

#[path = "common/cli.rs"]
mod cli;

use cli::{s, temp_dir};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the benchmark on the tiny grid (datasets at a tenth of their size,
/// their first intermediate bin, two seeds, a small network trained
/// briefly) with `extra` flags (the datasets and the learning rate).
fn bench(out: &Path, markdown: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "bench-heldout",
        "--size",
        "0.1",
        "--seeds",
        "0,1",
        "--bins",
        "1",
        "--epochs",
        "5",
        "--steps-per-epoch",
        "10",
        "--width",
        "16",
        "--depth",
        "1",
        "--batch",
        "16",
        "--validation-fraction",
        "0.2",
        "--quiet",
        "--out",
        s(out),
        "--markdown",
        s(markdown),
    ];
    args.extend(extra);
    Command::new(env!("CARGO_BIN_EXE_morphosde"))
        .args(&args)
        .output()
        .unwrap()
}

/// The tiny grid's datasets and learning rate.
const TINY_GRID: [&str; 4] = ["--datasets", "cycle,petal", "--learning-rate", "0.02"];

/// The results with the timings taken out.
fn results_without_timings(path: &Path) -> Value {
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for r in json["results"].as_array_mut().unwrap() {
        for runs in r["runs"].as_object_mut().unwrap().values_mut() {
            for run in runs.as_array_mut().unwrap() {
                run["seconds"] = Value::Null;
            }
        }
    }
    json["results"].take()
}

#[test]
fn bench_heldout_runs_a_tiny_grid() {
    let dir = temp_dir("ok");
    let (out, md) = (dir.join("r.json"), dir.join("t.md"));
    let o = bench(
        &out,
        &md,
        &[&TINY_GRID[..], &["--write-data", s(&dir)]].concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The datasets as CSV: the cycle at a tenth of its size, 6 bins of 30.
    let csv = std::fs::read_to_string(dir.join("cycle.csv")).unwrap();
    assert!(csv.starts_with("t,id,z0,z1,z2\n0,-1,"), "{}", &csv[..40]);
    assert_eq!(csv.lines().count(), 1 + 180);
    let results = results_without_timings(&out);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    let mut scored_runs = 0;
    for r in results {
        assert_eq!(r["bin"], 1);
        // Equal gaps: the nearest bin is the earlier one.
        assert_eq!(r["nearest_time"], 0.0);
        assert!(r["nearest"].as_f64().unwrap() > 0.0);
        assert_eq!(r["ot_interpolation"].as_array().unwrap().len(), 2);
        for key in ["diffusion", "drift"] {
            let runs = r["runs"][key].as_array().unwrap();
            assert_eq!(runs.len(), 2);
            for (run, seed) in runs.iter().zip([0, 1]) {
                assert_eq!(run["seed"], seed);
                // Scored, or failed with its reason (a briefly trained
                // diffusion head may be refused by train's rollout check).
                let scored = run["w1"].as_f64().is_some_and(|w| w > 0.0);
                assert!(scored != run["error"].is_string(), "{run}");
                scored_runs += scored as usize;
            }
        }
    }
    // The drift-only runs of the cycle are scored at these settings.
    for run in results[0]["runs"]["drift"].as_array().unwrap() {
        assert!(run["w1"].as_f64().is_some(), "{run}");
    }
    assert!(scored_runs >= 4);
    assert_eq!(results[0]["dataset"], "cycle");
    assert_eq!(
        (
            results[0]["n_held"].as_u64(),
            results[0]["n_start"].as_u64()
        ),
        (Some(30), Some(30))
    );
    let table = std::fs::read_to_string(&md).unwrap();
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| cycle")).count(),
        1
    );
    assert!(table.contains("| morphosde, drift only |"));
    assert!(table.contains("| nearest bin (t = 0) |"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("OT interpolation of the neighbours"));
    // The same command gives the same numbers.
    let again = dir.join("r2.json");
    let o = bench(&again, &md, &TINY_GRID);
    assert!(o.status.success());
    assert_eq!(
        results_without_timings(&again),
        Value::Array(results.clone())
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bench_heldout_shows_failed_runs_and_refuses_bad_flags() {
    let dir = temp_dir("bad");
    let (out, md) = (dir.join("r.json"), dir.join("t.md"));
    // Drift-only runs at a learning rate that must diverge: every run fails, each is reported
    // with its error and its W1 is n/a, never averaged into a number.
    let o = bench(
        &out,
        &md,
        &[
            "--learning-rate",
            "1000",
            "--datasets",
            "cycle",
            "--variants",
            "drift",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let run = &json["results"][0]["runs"]["drift"][1];
    assert!(
        run["error"].as_str().unwrap().contains("training diverged"),
        "{run}"
    );
    assert!(run["w1"].is_null());
    let table = std::fs::read_to_string(&md).unwrap();
    assert!(
        table.contains("| morphosde, drift only | n/a | n/a / n/a | ")
            && table.contains(
                "| seed 0: failed (training diverged); seed 1: failed (training diverged) |"
            ),
        "{table}"
    );
    assert!(!table.contains("diffusion on") && json["results"][0]["runs"]["diffusion"].is_null());
    assert!(
        table.contains("morphosde, drift only: 2 of 2 runs had a problem"),
        "{table}"
    );
    for (extra, message) in [
        (vec!["--datasets", "spiral"], "unknown dataset 'spiral'"),
        (vec!["--bins", "0"], "no intermediate bin"),
        (vec!["--size", "0"], "--size"),
        (vec!["--variants", "sde"], "unknown variant 'sde'"),
    ] {
        let mut args = vec!["bench-heldout", "--quiet", "--out", s(&out)];
        args.extend(extra.iter().copied());
        let o = Command::new(env!("CARGO_BIN_EXE_morphosde"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message), "{extra:?}: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}
