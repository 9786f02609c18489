//! `morphosde uot` end to end: files in, files and one JSON line out, and
//! clear non-zero exits on bad input.

#[path = "common/cli.rs"]
mod cli;

use cli::{subcommand, temp_dir as dir};
use std::path::{Path, PathBuf};
use std::process::Output;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn read_matrix(path: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

fn uot(args: &[&str]) -> Output {
    subcommand("uot", args)
}

#[test]
fn writes_plan_masses_velocities_and_a_json_line() {
    let d = dir("ok");
    let (x, y, out) = (d.join("x.csv"), d.join("y.csv"), d.join("out"));
    // Two sources, two targets far apart: the plan pairs them in order.
    write(&x, "u,v\n0,0\n10,0\n");
    write(&y, "0.5,1\n10.5,1\n");
    let o = uot(&[
        "--source",
        x.to_str().unwrap(),
        "--target",
        y.to_str().unwrap(),
        "--epsilon",
        "0.5",
        "--h",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8(o.stdout).unwrap();
    for key in [
        "\"iterations\":",
        "\"marginal_error\":",
        "\"converged\":true",
        "\"objective\":",
        "\"dual\":",
        "\"solve_seconds\":",
    ] {
        assert!(line.contains(key), "{key} missing in {line}");
    }
    let plan = read_matrix(&out.join("plan.csv"));
    assert_eq!((plan.len(), plan[0].len()), (2, 2));
    assert!((plan[0][0] - 0.5).abs() < 1e-6 && plan[0][1] < 1e-30);
    let v = read_matrix(&out.join("velocity.csv"));
    // (y_0 − x_0)/h = (0.5, 1)/0.5.
    assert!((v[0][0] - 1.0).abs() < 1e-5 && (v[0][1] - 2.0).abs() < 1e-5);
    let r = read_matrix(&out.join("row_mass.csv"));
    assert!((r[0][0] - 0.5).abs() < 1e-6);
    assert_eq!(read_matrix(&out.join("col_mass.csv")).len(), 2);
}

#[test]
fn precision_f64_solves_in_f64_and_writes_f64_digits() {
    // One source at 0, one target at 1 (C = 1), unit weights, ρ = 1 on both
    // sides: π = e^{−C/(ε + 2ρ)} (stationarity of C + ε ln π + 2ρ ln π).
    let d = dir("f64");
    let (x, y) = (d.join("x.csv"), d.join("y.csv"));
    write(&x, "0\n");
    write(&y, "1\n");
    let want = (-1.0f64 / 2.5).exp();
    for (precision, tol, err) in [("f32", "1e-6", 1e-5), ("f64", "1e-12", 1e-10)] {
        let out = d.join(precision);
        let o = uot(&[
            "--source",
            x.to_str().unwrap(),
            "--target",
            y.to_str().unwrap(),
            "--epsilon",
            "0.5",
            "--rho",
            "1",
            "--tol",
            tol,
            "--precision",
            precision,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let line = String::from_utf8(o.stdout).unwrap();
        assert!(
            line.contains(&format!("\"precision\":\"{precision}\"")),
            "{line}"
        );
        let plan = read_matrix(&out.join("plan.csv"))[0][0];
        assert!(
            (plan - want).abs() <= err * want,
            "{precision}: {plan} vs {want}"
        );
    }
}

#[test]
fn online_mode_tracks_and_unbalanced_options() {
    let d = dir("tracks");
    let (x, y, w, t, out) = (
        d.join("x.csv"),
        d.join("y.csv"),
        d.join("a.csv"),
        d.join("pairs.csv"),
        d.join("out"),
    );
    write(&x, "0,0\n1,0\n2,0\n");
    write(&y, "0.1,0\n1.1,0\n2.1,0\n3,0\n");
    write(&w, "0.2\n0.3\n0.5\n");
    write(&t, "0,2\n");
    let o = uot(&[
        "--source",
        x.to_str().unwrap(),
        "--target",
        y.to_str().unwrap(),
        "--source-weights",
        w.to_str().unwrap(),
        "--epsilon-rel",
        "0.05",
        "--rho-source",
        "1",
        "--rho-target",
        "2",
        "--tracks",
        t.to_str().unwrap(),
        "--self-edge-bound",
        "0.5",
        "--mode",
        "online",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("plan.csv").exists());
    // The bound drags source 0 toward target 2: velocity points right.
    let v = read_matrix(&out.join("velocity.csv"));
    assert!(v[0][0] > 0.3, "{:?}", v[0]);
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let d = dir("bad");
    let (x, y, nan, out) = (
        d.join("x.csv"),
        d.join("y.csv"),
        d.join("nan.csv"),
        d.join("out"),
    );
    write(&x, "0,0\n1,0\n");
    write(&y, "0,0,0\n");
    write(&nan, "0,0\nNaN,1\n");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    for (args, needle) in [
        (
            vec!["--source", &s(&x), "--target", &s(&y), "--epsilon", "1"],
            "columns",
        ),
        (
            vec!["--source", &s(&nan), "--target", &s(&x), "--epsilon", "1"],
            "x",
        ),
        (
            vec!["--source", &s(&x), "--target", &s(&x), "--epsilon", "0"],
            "epsilon",
        ),
        (
            vec![
                "--source",
                &s(&x),
                "--target",
                &s(&x),
                "--epsilon",
                "1",
                "--rho",
                "-1",
            ],
            "rho",
        ),
        (
            vec![
                "--source",
                &s(&d.join("missing.csv")),
                "--target",
                &s(&x),
                "--epsilon",
                "1",
            ],
            "missing",
        ),
    ] {
        let mut a = args.clone();
        let o_s = s(&out);
        a.extend(["--out", &o_s]);
        let o = uot(&a);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
