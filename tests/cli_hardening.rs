//! The command line against careless input (issue 18): timestamps too large
//! for 32-bit floats, outputs that cannot be written, header guessing,
//! counts that would hang or abort.

#[path = "common/cli.rs"]
mod cli;

use cli::{morphosde, s, stderr, temp_dir};
use std::path::Path;

const TINY: [&str; 11] = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "2",
    "--batch",
    "16",
    "--width",
    "8",
    "--depth",
    "1",
    "--quiet",
];

/// A snapshot table of 8 bins at `time(k)`, 12 embryos on a circle that
/// barely moves (so two epochs give a usable model), the first 4 tracked
/// through every bin (ids 0..4; the others' id cells empty).
fn snapshots(path: &Path, time: impl Fn(usize) -> f64) {
    let mut text = String::from("t,id,x,y\n");
    for k in 0..8 {
        for e in 0..12 {
            let id = if e < 4 { e.to_string() } else { String::new() };
            let phase = 0.7 * e as f64 + 0.02 * k as f64;
            text += &format!("{:?},{id},{},{}\n", time(k), phase.sin(), phase.cos());
        }
    }
    std::fs::write(path, text).unwrap();
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn unix_seconds_and_hours_keep_every_bin() {
    let dir = temp_dir("times");
    // Unix seconds, four frames a second (f32 rounds them all to one
    // 128 s step: one bin), and hours since 1970 with a frame every six
    // minutes (f32 resolves 1/32 h there).
    for (name, origin, gap) in [("unix", 1.7e9, 0.25), ("hours", 473_000.0, 0.1)] {
        let time = |k: usize| origin + gap * k as f64;
        let data = dir.join(format!("{name}.csv"));
        snapshots(&data, time);
        for id in [None, Some("id")] {
            let (out, sum) = (dir.join("m.msde"), dir.join("s.json"));
            let mut args = vec![
                "train",
                "--data",
                s(&data),
                "--out",
                s(&out),
                "--summary",
                s(&sum),
            ];
            if let Some(id) = id {
                args.extend(["--id-column", id]);
            } else {
                args.extend(["--columns", "x,y"]);
            }
            args.extend(TINY);
            let o = morphosde(&args);
            assert!(o.status.success(), "{name} {id:?}: {}", stderr(&o));
            let j = summary(&sum);
            let times = j["data_times"].as_array().unwrap();
            assert_eq!(times.len(), 8, "{name}: {times:?}");
            let last = times[7].as_f64().unwrap();
            assert!((last - time(7)).abs() < 1e-6 * time(7), "{name}: {last}");
            assert_eq!(j["time_origin"].as_f64().unwrap(), origin);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_run_never_replaces_the_model() {
    let dir = temp_dir("outputs");
    let data = dir.join("d.csv");
    snapshots(&data, |k| k as f64);
    let model = dir.join("existing.msde");
    std::fs::write(&model, b"the user's model").unwrap();
    let missing = dir.join("missing").join("x");
    for flag in ["--summary", "--curves", "--out"] {
        let target = missing.with_extension(if flag == "--curves" { "svg" } else { "json" });
        let mut args = vec!["train", "--data", s(&data), "--id-column", "id"];
        if flag != "--out" {
            args.extend(["--out", s(&model)]);
        }
        args.extend([flag, s(&target)]);
        // Enough epochs that training first would be slow: the check comes
        // before it.
        args.extend(["--epochs", "100000", "--quiet"]);
        let o = morphosde(&args);
        assert!(!o.status.success(), "{flag}");
        let e = stderr(&o);
        assert!(
            e.contains(flag) && e.contains("does not exist"),
            "{flag}: {e}"
        );
        assert_eq!(std::fs::read(&model).unwrap(), b"the user's model");
    }
    let o = morphosde(&["train", "--data", s(&data), "--out", s(&dir), "--quiet"]);
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn id_columns_left_out_are_warned_about() {
    let dir = temp_dir("ids");
    let data = dir.join("d.csv");
    // No empty cells: the id column read as a coordinate.
    let text = std::fs::read_to_string({
        snapshots(&data, |k| k as f64);
        &data
    })
    .unwrap()
    .replace(",,", ",-1,");
    std::fs::write(&data, text).unwrap();
    let out = dir.join("m.msde");
    let mut args = vec!["train", "--data", s(&data), "--out", s(&out)];
    args.extend(TINY);
    // The warning comes before training (whether or not two epochs give a
    // usable model of the id as a coordinate).
    let o = morphosde(&args);
    assert!(
        stderr(&o).contains("column 'id' looks like track ids"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn initial_states_are_read_as_written() {
    let dir = temp_dir("initial");
    let (init, out) = (dir.join("init.csv"), dir.join("r.csv"));
    let run = |text: &str| {
        std::fs::write(&init, text).unwrap();
        morphosde(&[
            "simulate",
            "--synthetic-dim",
            "2",
            "--initial",
            s(&init),
            "--trajectories",
            "3",
            "--times",
            "0.1",
            "--out",
            s(&out),
        ])
    };
    // A numeric first row is a start state, not a header.
    let o = run("0,1\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = std::fs::read_to_string(&out).unwrap();
    assert!(rows.starts_with("trajectory,t,z0,z1\n"), "{rows}");
    assert_eq!(rows.lines().count(), 4);
    // An empty cell is a missing value, not a header.
    let o = run("0.5,\n0.1,0.2\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("row 1, column 'z1' is not a finite number"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counts_that_would_hang_or_abort_are_refused() {
    let dir = temp_dir("counts");
    let (data, init, out) = (dir.join("d.csv"), dir.join("i.csv"), dir.join("o"));
    snapshots(&data, |k| k as f64);
    let o = morphosde(&[
        "train",
        "--data",
        s(&data),
        "--id-column",
        "id",
        "--out",
        s(&out),
        "--steps-per-epoch",
        "5000000000",
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("steps_per_epoch"), "{}", stderr(&o));
    std::fs::write(&init, "x,y\n0,0\n").unwrap();
    let o = morphosde(&[
        "simulate",
        "--synthetic-dim",
        "2",
        "--initial",
        s(&init),
        "--trajectories",
        "10000000000000",
        "--times",
        "0.1,0.2",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--trajectories"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
