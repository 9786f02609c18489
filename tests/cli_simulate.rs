//! `morphosde simulate` end to end on the built-in synthetic process:
//! output shape, determinism for a seed, the JSON report, the hand-off to
//! `morphosde evaluate`, and clear errors on bad input.

#[path = "common/cli.rs"]
mod cli;

use cli::{morphosde, s, temp_dir};
use std::path::Path;

#[test]
fn simulate_writes_rollouts_and_report() {
    let dir = temp_dir("ok");
    let (init, out, report) = (
        dir.join("init.csv"),
        dir.join("r.csv"),
        dir.join("report.json"),
    );
    std::fs::write(&init, "a,b,c\n0,0.4,0\n").unwrap();
    let run = |seed: &str, out: &Path| {
        let o = morphosde(&[
            "simulate",
            "--synthetic-dim",
            "3",
            "--initial",
            s(&init),
            "--trajectories",
            "200",
            "--times",
            "0.5,1",
            "--h-max",
            "0.01",
            "--seed",
            seed,
            "--out",
            s(out),
            "--report",
            s(&report),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let json = run("3", &out);
    assert!(json.contains("\"method\":\"strang\""), "{json}");
    assert!(
        json.contains("\"trajectories\":200") && json.contains("\"accepted_steps\":20000"),
        "{json}"
    );
    assert!(json.contains("\"stopped\":0") && json.contains("\"first_stopped\":null"));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), json);
    let csv = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "trajectory,t,a,b,c");
    assert_eq!(lines.len(), 1 + 400);
    assert!(lines[1].starts_with("0,0.5,") && lines[400].starts_with("199,1,"));
    // Same seed, same file; another seed, another file.
    let again = dir.join("r2.csv");
    run("3", &again);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), csv);
    run("4", &again);
    assert_ne!(std::fs::read_to_string(&again).unwrap(), csv);
    // The rollouts at t = 1 scored against those at t = 0.5 by evaluate.
    let o = morphosde(&[
        "evaluate",
        "--a",
        s(&out),
        "--b",
        s(&out),
        "--time-column",
        "t",
        "--time",
        "1",
        "--columns",
        "a,b,c",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"n_a\":200,\"n_b\":200,\"d\":3"));
    // The ODE from a cloud: one mean path per row, no noise.
    std::fs::write(&init, "0,0.1,0\n0,0.6,0.2\n").unwrap();
    let o = morphosde(&[
        "simulate",
        "--synthetic-dim",
        "3",
        "--initial",
        s(&init),
        "--times",
        "0.25,0.5,2",
        "--method",
        "dopri5",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6);
    assert!(csv.starts_with("trajectory,t,z0,z1,z2\n"));
    // z0 advances at speed 1 exactly along the drift: z0(2) = 2.
    let last: Vec<f64> = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(last[..2], [1.0, 2.0]);
    assert!((last[2] - 2.0).abs() < 1e-5, "{last:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn simulate_rejects_bad_input() {
    let dir = temp_dir("bad");
    let (init, out) = (dir.join("init.csv"), dir.join("r.csv"));
    std::fs::write(&init, "0,0.4,0\n").unwrap();
    let base = ["simulate", "--initial", s(&init), "--out", s(&out)];
    for (extra, message) in [
        (vec!["--synthetic-dim", "3", "--times", "1,0.5"], "times"),
        (
            vec!["--synthetic-dim", "3", "--times", "1", "--t0", "2"],
            "times",
        ),
        (
            vec!["--synthetic-dim", "3", "--times", "1", "--h-max", "0"],
            "h_max",
        ),
        (
            vec![
                "--synthetic-dim",
                "3",
                "--times",
                "1",
                "--trajectories",
                "0",
            ],
            "no trajectories",
        ),
        (
            vec![
                "--synthetic-dim",
                "3",
                "--times",
                "1",
                "--method",
                "dopri5",
                "--rtol",
                "-1",
            ],
            "rtol",
        ),
        (vec!["--synthetic-dim", "4", "--times", "1"], "d = 4"),
        (vec!["--synthetic-dim", "1", "--times", "1"], "at least 2"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let o = morphosde(&args);
        assert!(!o.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message), "{extra:?}: {err}");
        assert!(!out.exists(), "no output on error");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Writes model bytes of a small seeded model (d = 3, encoder 1 × 16) with
/// or without a diffusion head, and without a time span or with `span`.
fn write_model(path: &Path, learn_diffusion: bool) {
    write_model_with_span(path, learn_diffusion, None)
}

fn write_model_with_span(path: &Path, learn_diffusion: bool, span: Option<[f32; 2]>) {
    use morphosde_core::codec;
    use morphosde_core::model::{Config, DiffusionHead, Inputs, Layout};
    let config = Config {
        d: 3,
        depth: 1,
        width: 16,
        time_features: 2,
        head: learn_diffusion.then_some(DiffusionHead::Full),
        ..Config::default()
    };
    let layout = Layout::new(&config).unwrap();
    let mut params = vec![0.0f32; layout.len];
    layout.init(5, &mut params).unwrap();
    if let Some(span) = span {
        let mut inputs = Inputs::identity(3);
        inputs.time_span = span;
        layout.set_inputs(&mut params, &inputs).unwrap();
    }
    let mut bytes = vec![0u8; codec::model_bytes_len::<f32>(&config).unwrap()];
    let n = codec::save(&config, &params, &mut bytes).unwrap();
    std::fs::write(path, &bytes[..n]).unwrap();
}

/// Times past the model's training span are reported (report and stderr);
/// times inside it, or a model without a span, report nothing.
#[test]
fn simulate_reports_times_outside_the_training_span() {
    let dir = temp_dir("span");
    let (init, out, model) = (dir.join("init.csv"), dir.join("r.csv"), dir.join("m.msde"));
    std::fs::write(&init, "0.1,-0.2,0.3\n").unwrap();
    write_model_with_span(&model, true, Some([0.0, 1.0]));
    let run = |times: &str| {
        morphosde(&[
            "simulate",
            "--model",
            s(&model),
            "--initial",
            s(&init),
            "--trajectories",
            "5",
            "--times",
            times,
            "--out",
            s(&out),
        ])
    };
    let o = run("0.5,1.0,1.5");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["time_span"], serde_json::json!([0.0, 1.0]));
    let outside = &report["outside_time_span"];
    assert_eq!(
        (outside["past_end"].as_f64(), outside["count"].as_u64()),
        (Some(0.5), Some(1))
    );
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains(
            "1 of the 4 times (t0 and --times) lie outside the model's training span [0, 1]"
        ) && said.contains("0.5 past its end")
            && said.contains("clamped"),
        "{said}"
    );
    let o = run("0.5,1.0");
    assert!(o.status.success() && o.stderr.is_empty());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["outside_time_span"].is_null());
    write_model(&model, true);
    let report: serde_json::Value = serde_json::from_slice(&run("0.5,9.0").stdout).unwrap();
    assert!(report["time_span"].is_null() && report["outside_time_span"].is_null());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn simulate_rolls_out_a_model_file() {
    let dir = temp_dir("model");
    let (init, out) = (dir.join("init.csv"), dir.join("r.csv"));
    let (sde, ode) = (dir.join("sde.msde"), dir.join("ode.msde"));
    std::fs::write(&init, "0.1,-0.2,0.3\n").unwrap();
    write_model(&sde, true);
    write_model(&ode, false);
    let run = |model: &Path, extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--model",
            s(model),
            "--initial",
            s(&init),
            "--trajectories",
            "50",
            "--times",
            "0.1,0.2",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        morphosde(&args)
    };
    // With a diffusion head: the Strang splitting, trajectories spread out.
    let o = run(&sde, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        json.contains("\"dynamics\":\"model\",\"method\":\"strang\""),
        "{json}"
    );
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 1 + 100);
    let at_end: Vec<&str> = csv.lines().filter(|l| l.contains(",0.2,")).collect();
    assert!(
        at_end
            .windows(2)
            .any(|w| w[0].split_once(',').unwrap().1 != w[1].split_once(',').unwrap().1)
    );
    // Without: the mean path by Dopri5, the same for every copy.
    let o = run(&ode, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"method\":\"dopri5\""));
    let csv = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').unwrap().1)
        .collect();
    assert!(rows.iter().step_by(2).all(|r| *r == rows[0]));
    // An SDE method asked of a model without a diffusion head is an error.
    for method in ["em", "strang", "weak2"] {
        let o = run(&ode, &["--method", method]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("--method {method}: ")), "{err}");
        assert!(err.contains("no diffusion head"), "{err}");
    }
    // A corrupted model file is refused.
    let mut bytes = std::fs::read(&sde).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&sde, bytes).unwrap();
    let o = run(&sde, &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}
