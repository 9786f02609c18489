//! `morphosde demo`, `train` and `field` end to end on a tiny configuration,
//! and bad input refused with a message, a failing exit status and no model
//! file left behind.

#[path = "common/cli.rs"]
mod cli;

use cli::{morphosde, s as path, stderr, temp_dir};
use morphosde_core::model::DriftTeacher;
use std::path::Path;

const TINY: [&str; 12] = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "3",
    "--batch",
    "24",
    "--width",
    "16",
    "--depth",
    "2",
    "--quiet",
    "--validation-fraction=0.2",
];

/// The `time_scale` a `train --summary` file reports.
fn summary_time_scale(summary: &Path) -> f64 {
    let text = std::fs::read_to_string(summary).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["time_scale"].as_f64().unwrap()
}

#[test]
fn demo_then_train_and_field_on_its_data() {
    let dir = temp_dir("demo");
    let mut args = vec!["demo", "--per-bin", "40", "--out", path(&dir)];
    args.extend(TINY);
    let o = morphosde(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for file in [
        "train.csv",
        "heldout.csv",
        "model.msde",
        "report.json",
        "rollouts.csv",
        "rollouts.svg",
        "training.svg",
        "diffusion_backbone.svg",
        "heterogeneity.svg",
        "calibration.svg",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(report.contains("\"d_relative_frobenius_error\""));
    // 8 bins × 40 embryos, header included; rollouts: 40 × 7 rows.
    let rows = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((rows("train.csv"), rows("rollouts.csv")), (321, 281));

    // train on the demo's table: drift only (the default) and with diffusion.
    let model = dir.join("again.msde");
    let summary = dir.join("summary.json");
    let train = dir.join("train.csv");
    let mut args = vec![
        "train",
        "--data",
        path(&train),
        "--id-column",
        "id",
        "--out",
        path(&model),
        "--summary",
        path(&summary),
    ];
    args.extend(TINY);
    let o = morphosde(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("\"learn_diffusion\": false")
    );
    // --time-scale auto (the default) maps the data's span, 0 … 1.4 (as
    // f32), to one unit. The model keeps that span and the data's
    // per-coordinate mean and standard deviation.
    assert_eq!(summary_time_scale(&summary), 1.0 / (1.4f32 as f64));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["autonomous"], false);
    assert_eq!(json["time_span"][1].as_f64().unwrap(), 1.4f32 as f64);
    let scale = &json["standardisation"]["scale"];
    assert!((0..2).all(|k| scale[k].as_f64().unwrap() > 0.0), "{json}");

    // The same table with its times in days (× 5: 0, 1, …, 7): auto gives
    // 1/7, and the model file carries it. (The network's drift and D are per
    // unit of the data's time, so a few steps of training leave the drift
    // of units far from the data's, such as hours, so fast that the
    // model's rollouts leave the data's range and `train` refuses it.)
    let hours = dir.join("days.csv");
    let text = std::fs::read_to_string(&train).unwrap();
    let mut lines = text.lines();
    let mut scaled = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let (t, rest) = line.split_once(',').unwrap();
        let h = (t.parse::<f64>().unwrap() * 5.0).round();
        scaled.push_str(&format!("{h},{rest}\n"));
    }
    assert!(scaled.contains("\n7,") && scaled.contains("\n1,"));
    std::fs::write(&hours, scaled).unwrap();
    let in_hours = dir.join("days.msde");
    let mut args = vec![
        "train",
        "--data",
        path(&hours),
        "--id-column",
        "id",
        "--out",
        path(&in_hours),
        "--summary",
        path(&summary),
    ];
    args.extend(TINY);
    let o = morphosde(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary_time_scale(&summary), 1.0 / 7.0);
    let bytes = std::fs::read(&in_hours).unwrap();
    let config = morphosde_core::codec::load_config::<f32>(&bytes).unwrap();
    assert_eq!(config.time_scale, 1.0 / 7.0);
    assert_eq!(config.drift_teacher, DriftTeacher::Flow, "the CLI default");
    // A fixed scale is taken as given; so is the seed's chord teacher.
    args.extend(["--time-scale", "0.5", "--drift-teacher", "chord"]);
    let o = morphosde(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary_time_scale(&summary), 0.5);
    let summary_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary_json["drift_teacher"], "Chord");
    let config = morphosde_core::codec::load_config::<f32>(&std::fs::read(&in_hours).unwrap());
    assert_eq!(config.unwrap().drift_teacher, DriftTeacher::Chord);

    // --autonomous: no time input, said by the summary and the model file;
    // it cannot be combined with time features.
    let autonomous = dir.join("autonomous.msde");
    let mut flat = vec![
        "train",
        "--data",
        path(&train),
        "--id-column",
        "id",
        "--out",
        path(&autonomous),
        "--summary",
        path(&summary),
        "--autonomous",
    ];
    flat.extend(TINY);
    let o = morphosde(&flat);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["autonomous"], true);
    let config = morphosde_core::codec::load_config::<f32>(&std::fs::read(&autonomous).unwrap());
    assert_eq!(config.unwrap().time_features, 0);
    flat.extend(["--time-features", "4"]);
    let o = morphosde(&flat);
    assert!(!o.status.success() && stderr(&o).contains("--autonomous"));

    // field: f and D at three points; the drift-only model has no D
    // columns, the demo's model a symmetric positive D. The last point lies
    // past the training span, which stderr says (not for the autonomous
    // model, which has no time input).
    let points = dir.join("points.csv");
    std::fs::write(&points, "t,z0,z1\n0.2,0.2,0\n1.0,1.0,1.5\n1.9,1.0,1.5\n").unwrap();
    let out = dir.join("field.csv");
    let o = morphosde(&[
        "field",
        "--model",
        path(&autonomous),
        "--points",
        path(&points),
        "--out",
        path(&out),
    ]);
    assert!(
        o.status.success() && !stderr(&o).contains("span"),
        "{}",
        stderr(&o)
    );
    for (m, diffusion) in [(&model, false), (&dir.join("model.msde"), true)] {
        let o = morphosde(&[
            "field",
            "--model",
            path(m),
            "--points",
            path(&points),
            "--out",
            path(&out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let said = stderr(&o);
        assert!(
            said.contains("1 of 3 points lie outside the model's training span [0, 1.4]")
                && said.contains("0.5 past its end"),
            "{said}"
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        if !diffusion {
            assert!(said.contains("no D columns"), "{said}");
            assert_eq!(lines.next().unwrap(), "t,z0,z1,f0,f1");
            assert!(lines.all(|l| l.split(',').count() == 5));
            continue;
        }
        assert_eq!(lines.next().unwrap(), "t,z0,z1,f0,f1,D00,D01,D10,D11");
        for line in lines {
            let v: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
            let dm = &v[5..9];
            assert!(dm[0] > 0.0 && dm[3] > 0.0 && dm[1] == dm[2]);
            assert!(dm[0] * dm[3] - dm[1] * dm[2] >= 0.0);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_refused_without_leaving_a_model() {
    let dir = temp_dir("bad");
    let model = dir.join("model.msde");
    let good = "t,id,z0\n0,1,0.5\n0.2,1,0.6\n";
    let cases: [(&str, &[&str], &str); 10] = [
        ("t,id,z0\n0,1,0.5\n0.2,1,x\n", &[], "is not a number"),
        ("t,id,z0\n0,1,0.5\n0,2,0.1\n", &[], "single time bin"),
        (
            "time,id,z0\n0,1,0.5\n0.2,1,0.6\n",
            &[],
            "no column named 't'",
        ),
        (
            "t,id,z0\n0,1,0.5\n0.2,1,0.6\n",
            &["--lambda_diff=-1"],
            "lambda_diff",
        ),
        ("t,id,z0\n0,1,0.5\n0.2,1,0.6\n", &["--batch", "1"], "batch"),
        (good, &["--time-scale", "0"], "got '0'"),
        (good, &["--time-scale=-1"], "got '-1'"),
        (good, &["--time-scale", "nan"], "got 'nan'"),
        (good, &["--time-scale", "abc"], "got 'abc'"),
        (good, &["--drift-teacher", "euler"], "'euler'"),
    ];
    for (i, (csv, extra, message)) in cases.iter().enumerate() {
        let data = dir.join(format!("data{i}.csv"));
        std::fs::write(&data, csv).unwrap();
        let mut args = vec![
            "train",
            "--data",
            path(&data),
            "--id-column",
            "id",
            "--out",
            path(&model),
        ];
        args.extend_from_slice(extra);
        let o = morphosde(&args);
        assert!(!o.status.success(), "case {i} succeeded");
        assert!(stderr(&o).contains(message), "case {i}: {}", stderr(&o));
        if extra.first().is_some_and(|a| a.starts_with("--time-scale")) {
            let e = stderr(&o);
            assert!(
                e.contains("--time-scale") && e.contains("'auto' or a finite number > 0"),
                "case {i}: {e}"
            );
        }
        assert!(!model.exists(), "case {i} left a model file");
    }
    let o = morphosde(&["train", "--data", "x.csv", "--no-such-flag"]);
    assert!(!o.status.success() && stderr(&o).contains("--no-such-flag"));
    let o = morphosde(&["train", "--data", "x.csv", "--learn_diffusion", "maybe"]);
    assert!(!o.status.success() && stderr(&o).contains("maybe"));
    std::fs::remove_dir_all(&dir).unwrap();
}
