//! `morphosde evaluate` end to end: two CSV clouds from the metrics
//! fixtures give dcor's energy distance, a seeded sliced Wasserstein value
//! that depends only on the seed, POT's exact W1 (an EMD fixture), and clear
//! errors on bad input; `simulate`'s output is read as it is (`trajectory`
//! and `t` recognised, one time selected with `--t`, coordinates matched by
//! name); above the exact solver's limit W1 is null with a note.

#[path = "common/cli.rs"]
mod cli;

use cli::{subcommand, temp_dir};
use std::path::PathBuf;
use std::process::Output;

/// The `x` and `y` clouds and dcor's energy distance of a fixture, as CSV
/// text with a header `t,x0..` and a time column.
fn fixture_csv() -> (String, String, f64) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/clouds_unequal.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let block = |name: &str| {
        let i = lines
            .iter()
            .position(|l| l.split_whitespace().next() == Some(name))
            .unwrap();
        let rows: usize = lines[i].split_whitespace().nth(1).unwrap().parse().unwrap();
        lines[i + 1..i + 1 + rows]
            .iter()
            .map(|l| l.replace(' ', ","))
            .collect::<Vec<_>>()
    };
    let mut a = String::from("t,x0,x1,x2,x3,x4\n");
    for row in block("x") {
        a += &format!("2.5,{row}\n");
    }
    // Rows at another time, to be filtered out by --time.
    a += "7,100,100,100,100,100\n";
    let mut b = String::from("t,x0,x1,x2,x3,x4\n");
    for row in block("y") {
        b += &format!("2.5,{row}\n");
    }
    let energy = block("energy_distance")[0].parse().unwrap();
    (a, b, energy)
}

fn evaluate(args: &[&str]) -> Output {
    subcommand("evaluate", args)
}

fn field(json: &str, key: &str) -> f64 {
    let start = json.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

#[test]
fn evaluate_scores_two_clouds() {
    let dir = temp_dir("ok");
    let (a, b, energy) = fixture_csv();
    let (pa, pb, out) = (
        dir.join("a.csv"),
        dir.join("b.csv"),
        dir.join("metrics.json"),
    );
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let (sa, sb) = (pa.to_str().unwrap(), pb.to_str().unwrap());
    let run = |seed: &str| {
        let o = evaluate(&[
            "--a",
            sa,
            "--b",
            sb,
            "--time-column",
            "t",
            "--time",
            "2.5",
            "--columns",
            "1,2,3,4,5",
            "--projections",
            "64",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let json = run("4");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), json);
    assert_eq!(
        (field(&json, "n_a"), field(&json, "n_b"), field(&json, "d")),
        (200.0, 150.0, 5.0)
    );
    let got = field(&json, "energy_distance");
    assert!(
        (got - energy).abs() < 1e-12 * energy,
        "{got} vs dcor {energy}"
    );
    let sw = field(&json, "sliced_wasserstein");
    assert!(sw > 0.0);
    assert_eq!(field(&run("4"), "sliced_wasserstein"), sw);
    assert_ne!(field(&run("5"), "sliced_wasserstein"), sw);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn evaluate_rejects_bad_input() {
    let dir = temp_dir("bad");
    let (a, b, _) = fixture_csv();
    let (pa, pb, pc) = (dir.join("a.csv"), dir.join("b.csv"), dir.join("c.csv"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    std::fs::write(&pc, "1,2\n3,4\n").unwrap();
    let (sa, sb, sc) = (
        pa.to_str().unwrap(),
        pb.to_str().unwrap(),
        pc.to_str().unwrap(),
    );
    for (args, message) in [
        (
            vec!["--a", sa, "--b", sc],
            "--a has 5 coordinates but --b has 2",
        ),
        (
            vec!["--a", sa, "--b", sb, "--columns", "x0,x9"],
            "no column named 'x9'",
        ),
        (
            vec!["--a", sa, "--b", sb, "--time-column", "t", "--time", "1"],
            "--a --t: no time of the data matches 1 (times: 2.5, 7)",
        ),
        (
            vec!["--a", sc, "--b", sc, "--t", "1"],
            "--t: neither file has the time column 't'",
        ),
        (
            vec!["--a", sb, "--b", sb, "--projections", "0"],
            "projections",
        ),
        (vec!["--a", "/nonexistent.csv", "--b", sb], "cannot read"),
    ] {
        let o = evaluate(&args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Field `key` of a one-line JSON object as raw text.
fn raw<'a>(json: &'a str, key: &str) -> &'a str {
    let start = json.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    let rest = &json[start..];
    &rest[..rest.find([',', '}']).unwrap()]
}

#[test]
fn evaluate_reads_simulate_output_and_reports_exact_w1() {
    let dir = temp_dir("sim");
    // Held-out data at t = 0.6 (and rows at 0.8 to be left out); rollouts
    // in simulate's layout with the coordinates in the other order: at
    // t = 0.6 they are the held-out cloud moved by (0.3, 0.4), so W1 = 0.5.
    let mut held = String::from("t,id,x,y\n");
    let mut sims = String::from("trajectory,t,y,x\n");
    for k in 0..40 {
        let (x, y) = ((k as f64 * 0.37).sin() * 2.0, (k as f64 * 0.11).cos());
        held += &format!("0.6,{k},{x},{y}\n0.8,{k},{},{}\n", x + 5.0, y);
        sims += &format!("{k},0.6,{},{}\n{k},1,0,0\n", y + 0.4, x + 0.3);
    }
    let (ph, ps) = (dir.join("held.csv"), dir.join("sims.csv"));
    std::fs::write(&ph, held).unwrap();
    std::fs::write(&ps, sims).unwrap();
    let (sh, ss) = (ph.to_str().unwrap(), ps.to_str().unwrap());
    let o = evaluate(&["--a", sh, "--b", ss, "--t", "0.6", "--id-column", "id"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        (field(&json, "n_a"), field(&json, "n_b"), field(&json, "d")),
        (40.0, 40.0, 2.0)
    );
    assert!(json.contains("\"coordinates\":[\"x\",\"y\"]"), "{json}");
    assert!((field(&json, "wasserstein1") - 0.5).abs() < 1e-5, "{json}");
    assert!(field(&json, "energy_distance") > 0.0 && field(&json, "sliced_wasserstein") > 0.0);
    // Without --id-column, the id is a coordinate --b lacks.
    let o = evaluate(&["--a", sh, "--b", ss, "--t", "0.6"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--b has no column named 'id'"),
        "{err}"
    );
    // A column of --b that --a lacks is an error, not ignored.
    let o = evaluate(&["--a", ss, "--b", sh, "--t", "0.6"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--b has coordinate columns that --a lacks: id"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn evaluate_w1_matches_pot_and_says_when_it_is_too_big() {
    let dir = temp_dir("w1");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/emd/cases.json"
    ))
    .unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = root["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "unequal_uniform_d3")
        .unwrap();
    let csv = |key: &str| {
        let v: Vec<f64> = case[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let mut s = String::from("a,b,c\n");
        for row in v.chunks(3) {
            s += &format!("{},{},{}\n", row[0], row[1], row[2]);
        }
        s
    };
    let (pa, pb) = (dir.join("x.csv"), dir.join("y.csv"));
    std::fs::write(&pa, csv("x")).unwrap();
    std::fs::write(&pb, csv("y")).unwrap();
    let o = evaluate(&["--a", pa.to_str().unwrap(), "--b", pb.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = String::from_utf8(o.stdout).unwrap();
    let want = case["cost"].as_f64().unwrap();
    let got = field(&json, "wasserstein1");
    assert!((got - want).abs() < 1e-9 * want, "{got} vs POT {want}");
    assert_eq!(raw(&json, "wasserstein1_note"), "null");
    // 5001 points: above the exact solver's limit; the rest is reported.
    let big: String = std::iter::once("v\n".to_string())
        .chain((0..5001).map(|k| format!("{}\n", k as f64 / 5001.0)))
        .collect();
    std::fs::write(&pa, big).unwrap();
    let o = evaluate(&["--a", pa.to_str().unwrap(), "--b", pa.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = String::from_utf8(o.stdout).unwrap();
    assert_eq!(raw(&json, "wasserstein1"), "null");
    assert!(json.contains("at most 5000 per side"), "{json}");
    assert!(field(&json, "energy_distance").abs() < 1e-12);
    std::fs::remove_dir_all(dir).ok();
}
