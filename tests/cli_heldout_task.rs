//! The held-out-time task on the command line: `train --exclude-times` /
//! `--times` drop or keep whole time bins (and say so in the summary),
//! `simulate --from-data --t0` starts from the rows of one bin, and
//! `evaluate --t` scores `simulate`'s output against the held-out bin as
//! it is; times that match no bin are errors that name them.

#[path = "common/cli.rs"]
mod cli;

use cli::{morphosde, s, stderr, temp_dir};

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

/// Four bins (t = 0, 0.5, 1, 1.5) of 30 rows: a cloud drifting along x;
/// an id column, every tenth row tracked.
fn snapshot_csv() -> String {
    let mut text = String::from("t,id,x,y\n");
    for (b, t) in [0.0, 0.5, 1.0, 1.5].iter().enumerate() {
        for k in 0..30 {
            let id = if k % 10 == 0 { k as i64 } else { -1 };
            let (x, y) = (
                t + (k as f64 * 0.77 + b as f64).sin() * 0.2,
                (k as f64 * 1.3).cos() * 0.2,
            );
            text += &format!("{t},{id},{x},{y}\n");
        }
    }
    text
}

#[test]
fn train_excludes_or_keeps_bins_and_records_it() {
    let dir = temp_dir("train");
    let data = dir.join("d.csv");
    std::fs::write(&data, snapshot_csv()).unwrap();
    let (model, summary) = (dir.join("m.msde"), dir.join("s.json"));
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--id-column",
            "id",
            "--out",
            s(&model),
            "--summary",
            s(&summary),
        ];
        args.extend(TINY);
        args.extend(extra);
        morphosde(&args)
    };
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap()
    };
    let o = train(&["--exclude-times", "0.5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = read();
    assert_eq!(j["excluded_times"], serde_json::json!([0.5]));
    assert_eq!(j["excluded_rows"], 30);
    assert_eq!(j["data_times"].as_array().unwrap().len(), 4);
    let rows = |j: &serde_json::Value| {
        j["train_rows"].as_u64().unwrap() + j["validation_rows"].as_u64().unwrap()
    };
    assert_eq!(rows(&j), 90);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"excluded_times\":[0.5]"));
    let o = train(&["--times", "0,1.5", "--validation-fraction=0.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = read();
    assert_eq!(j["excluded_times"], serde_json::json!([0.5, 1.0]));
    assert_eq!(rows(&j), 60);
    // Without a filter nothing is excluded.
    let o = train(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        (read()["excluded_rows"].as_u64(), rows(&read())),
        (Some(0), 120)
    );
    // A time that matches no bin, a conflict, one bin left: errors, no model.
    std::fs::remove_file(&model).unwrap();
    for (extra, message) in [
        (
            vec!["--exclude-times", "0.5,0.7"],
            "--exclude-times: no time of the data matches 0.7 (times: 0, 0.5, 1, 1.5)",
        ),
        (
            vec!["--times", "2"],
            "--times: no time of the data matches 2",
        ),
        (
            vec!["--times", "1", "--exclude-times", "0"],
            "cannot be used with",
        ),
        (vec!["--times", "1"], "a single time bin"),
    ] {
        let o = train(&extra);
        assert!(!o.status.success(), "{extra:?}");
        assert!(stderr(&o).contains(message), "{extra:?}: {}", stderr(&o));
        assert!(!model.exists(), "{extra:?} left a model");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn simulate_from_data_then_evaluate_the_held_out_bin() {
    let dir = temp_dir("simulate");
    let data = dir.join("d.csv");
    std::fs::write(&data, snapshot_csv()).unwrap();
    let (model, sims) = (dir.join("m.msde"), dir.join("sims.csv"));
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--id-column",
        "id",
        "--out",
        s(&model),
        "--exclude-times",
        "1",
    ];
    args.extend(TINY);
    let o = morphosde(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let simulate = |extra: &[&str]| {
        let mut args = vec!["simulate", "--from-data", s(&data), "--out", s(&sims)];
        args.extend(extra);
        morphosde(&args)
    };
    // From the rows at t = 0.5 to the held-out t = 1: one trajectory per row.
    let o = simulate(&[
        "--model",
        s(&model),
        "--id-column",
        "id",
        "--t0",
        "0.5",
        "--times",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"trajectories\":30"));
    let csv = std::fs::read_to_string(&sims).unwrap();
    assert!(csv.starts_with("trajectory,t,x,y\n"), "{csv}");
    assert_eq!(csv.lines().count(), 31);
    // evaluate reads it as it is, against the held-out bin of the data.
    let o = morphosde(&[
        "evaluate",
        "--a",
        s(&data),
        "--b",
        s(&sims),
        "--t",
        "1",
        "--id-column",
        "id",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = String::from_utf8(o.stdout).unwrap();
    assert!(json.contains("\"n_a\":30,\"n_b\":30,\"d\":2"), "{json}");
    assert!(!json.contains("\"wasserstein1\":null"), "{json}");
    // The start states are the data's rows at t0, bit for bit (a rollout
    // to t0 itself), with coordinates chosen by --columns.
    let o = simulate(&[
        "--synthetic-dim",
        "2",
        "--columns",
        "y,x",
        "--t0",
        "1.5",
        "--times",
        "1.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<String> = std::fs::read_to_string(&sims)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.splitn(3, ',').nth(2).unwrap().to_string())
        .collect();
    let want: Vec<String> = snapshot_csv()
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("1.5,"))
        .map(|l| {
            let c: Vec<f32> = l.split(',').map(|v| v.parse().unwrap()).collect();
            format!("{},{}", c[3], c[2])
        })
        .collect();
    assert_eq!(got, want);
    // Errors name the flag and the time.
    for (extra, message) in [
        (
            vec!["--synthetic-dim", "2", "--t0", "0.25", "--times", "1"],
            "--t0: no time of the data matches 0.25",
        ),
        (
            vec!["--synthetic-dim", "3", "--id-column", "id", "--times", "1"],
            "--from-data: 2 coordinate columns, but the dynamics have d = 3",
        ),
    ] {
        let o = simulate(&extra);
        assert!(!o.status.success(), "{extra:?}");
        assert!(stderr(&o).contains(message), "{extra:?}: {}", stderr(&o));
    }
    std::fs::remove_dir_all(dir).ok();
}
