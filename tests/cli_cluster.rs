//! `morphosde cluster` end to end: planted groups recovered from a CSV, and
//! bad input refused with a message and a failing exit status.

#[path = "common/cli.rs"]
mod cli;

use cli::{morphosde, temp_dir};

#[path = "common/ari.rs"]
mod ari;

use morphosde_core::rng::{Family, Rng};
use std::path::PathBuf;

/// Three 2-D groups 5 apart (sd 0.5) with an id column, times 0..3.
fn write_data(path: &PathBuf) -> Vec<u32> {
    let mut rng = Rng::stream(4, Family::Data, 0);
    let mut text = String::from("id,time,x,y\n");
    let mut truth = vec![];
    for i in 0..270 {
        let g = i % 3;
        let time = i / 90;
        let x = 5.0 * g as f64 + 0.5 * rng.normal() + 0.3 * time as f64;
        let y = 0.5 * rng.normal();
        text += &format!("{i},{time},{x},{y}\n");
        truth.push(g as u32);
    }
    std::fs::write(path, text).unwrap();
    truth
}

#[test]
fn clusters_a_csv_into_labels() {
    let dir = temp_dir("ok");
    let data = dir.join("data.csv");
    let out = dir.join("labels.csv");
    let truth = write_data(&data);
    for extra in [
        &["--sigma-z", "1.5"][..],
        &["--self-tuning", "7", "--knn", "20"][..],
    ] {
        let mut args = vec![
            "cluster",
            "--data",
            data.to_str().unwrap(),
            "--time-column",
            "time",
            "--id-column",
            "id",
            "--k",
            "3",
            "--sigma-t",
            "2",
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let run = morphosde(&args);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let summary = String::from_utf8(run.stdout).unwrap();
        assert!(summary.contains("\"n\":270,\"d\":2,\"k\":3"), "{summary}");
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("row,t,label"));
        let labels: Vec<u32> = lines
            .enumerate()
            .map(|(i, l)| {
                let v: Vec<&str> = l.split(',').collect();
                assert_eq!(v[0], i.to_string());
                assert_eq!(v[1], (i / 90).to_string());
                v[2].parse().unwrap()
            })
            .collect();
        let ari = ari::adjusted_rand_index(&labels, &truth);
        assert!(ari >= 0.95, "{extra:?}: ARI {ari}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The case end to end: four groups 6 sd apart in 4-D over 5 time
/// bins (`tests/fixtures/cluster_defaults/equal_d4_sep6.csv`). The default
/// scale finds them; the median scale on the dense graph does not.
#[test]
fn defaults_find_four_groups_in_4d() {
    let dir = temp_dir("defaults");
    let fixture = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cluster_defaults/equal_d4_sep6.csv"),
    )
    .unwrap();
    // Keep t and z0..z3; the truth is the next column.
    let (mut text, mut truth) = (String::new(), vec![]);
    for (i, line) in fixture.lines().enumerate() {
        let v: Vec<&str> = line.split(',').collect();
        text += &v[..5].join(",");
        text.push('\n');
        if i > 0 {
            truth.push(v[5].parse::<u32>().unwrap());
        }
    }
    let data = dir.join("data.csv");
    std::fs::write(&data, text).unwrap();
    let out = dir.join("labels.csv");
    let ari_with = |extra: &[&str]| {
        let mut args = vec![
            "cluster",
            "--data",
            data.to_str().unwrap(),
            "--time-column",
            "t",
            "--k",
            "4",
            "--sigma-t",
            "1.5",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let run = morphosde(&args);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let labels: Vec<u32> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
            .collect();
        ari::adjusted_rand_index(&labels, &truth)
    };
    let default = ari_with(&[]);
    assert!(default >= 0.95, "defaults: ARI {default}");
    let median = ari_with(&["--sigma-z", "median", "--dense"]);
    assert!(median < 0.5, "--sigma-z median --dense: ARI {median}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_input_fails_with_a_message() {
    let dir = temp_dir("bad");
    let data = dir.join("data.csv");
    let out = dir.join("labels.csv");
    write_data(&data);
    let d = data.to_str().unwrap();
    let o = out.to_str().unwrap();
    let base = ["cluster", "--data", d, "--time-column", "time", "--out", o];
    for (extra, needle) in [
        (&["--k", "0", "--sigma-t", "1"][..], "k: must be in 1..=32"),
        (&["--k", "3", "--sigma-t", "-1"][..], "sigma_t"),
        (
            &["--k", "3", "--sigma-t", "1", "--sigma-z", "0"][..],
            "sigma_z",
        ),
        (
            &["--k", "3", "--sigma-t", "1", "--memory-limit-mib", "0"][..],
            "memory_limit_bytes",
        ),
        (
            &[
                "--k",
                "3",
                "--sigma-t",
                "1",
                "--sigma-z",
                "1",
                "--self-tuning",
                "5",
            ][..],
            "cannot be used with",
        ),
        (&["--k", "3", "--sigma-t", "1", "--knn", "0"][..], "mode"),
        (
            &["--k", "3", "--sigma-t", "1", "--sigma-z", "wide"][..],
            "'wide' is neither a number nor 'median'",
        ),
        (
            &["--k", "3", "--sigma-t", "1", "--knn", "5", "--dense"][..],
            "cannot be used with",
        ),
    ] {
        let run = morphosde(&[&base[..], extra].concat());
        assert!(!run.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let run = morphosde(&[
        "cluster",
        "--data",
        d,
        "--time-column",
        "when",
        "--k",
        "2",
        "--sigma-t",
        "1",
        "--out",
        o,
    ]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("no column named 'when'"));
    assert!(!out.exists(), "no output on failure");
    std::fs::remove_dir_all(dir).unwrap();
}
