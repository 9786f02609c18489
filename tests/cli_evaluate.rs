//! `morphosde evaluate` end to end: two CSV clouds from the metrics
//! fixtures give dcor's energy distance, a seeded sliced Wasserstein value
//! that depends only on the seed, and clear errors on bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msde-cli-evaluate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    Command::new(env!("CARGO_BIN_EXE_morphosde"))
        .arg("evaluate")
        .args(args)
        .output()
        .unwrap()
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
            "--a has 6 coordinates but --b has 2",
        ),
        (
            vec!["--a", sa, "--b", sb, "--columns", "x0,x9"],
            "no column named 'x9'",
        ),
        (
            vec!["--a", sa, "--b", sb, "--time-column", "t", "--time", "1"],
            "no rows selected",
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
