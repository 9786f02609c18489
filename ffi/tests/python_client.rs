//! The Python ctypes client's tests (standard library only) pass against
//! the shared library of this build, and its results are bit-identical to
//! the Rust core's: this test computes the core's results on inputs it
//! generates, writes inputs and results to a JSON file, and the Python tests
//! (MSDE_EXPECTED) feed the same inputs through the C ABI and compare.

mod common;
use common::*;
use morphosde_core::cluster::{ClusterConfig, Mode, cluster, workspace_len};
use morphosde_core::rng::{Family, Rng};
use std::fmt::Write;
use std::process::Command;

/// A JSON object written field by field (numbers in Rust's shortest
/// round-trip form, so each f32 reaches Python exactly).
#[derive(Default)]
struct Json(String);

impl Json {
    fn field(&mut self, name: &str, value: impl AsRef<str>) -> &mut Self {
        let sep = if self.0.is_empty() { "" } else { ", " };
        write!(self.0, "{sep}\"{name}\": {}", value.as_ref()).unwrap();
        self
    }
    fn done(&self) -> String {
        format!("{{{}}}", self.0)
    }
}

fn list<T: std::fmt::Debug>(values: &[T]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// An f32 as the f64 holding exactly its value (what Python's float of a
/// c_float is), so results compare with `==`.
fn float(x: f32) -> String {
    format!("{:?}", f64::from(x))
}

fn floats(values: &[f32]) -> String {
    let wide: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
    list(&wide)
}

/// `groups` Gaussian blobs (sd 0.3) 3 apart in 2-D, `per` points each at
/// times 0, 1, 2.
fn blobs(groups: usize, per: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::stream(11, Family::Data, 0);
    let (mut z, mut t) = (vec![], vec![]);
    for time in 0..3 {
        for g in 0..groups {
            for _ in 0..per {
                z.push((3.0 * g as f64 + 0.3 * rng.normal()) as f32);
                z.push((0.2 * time as f64 + 0.3 * rng.normal()) as f32);
                t.push(time as f32);
            }
        }
    }
    (z, t)
}

fn cluster_case(knn: usize) -> String {
    let (z, t) = blobs(3, 8);
    let (n, d) = (t.len(), 2);
    let mut cfg = ClusterConfig::new(3, 2.0f32);
    cfg.seed = 5;
    if knn > 0 {
        cfg.mode = Mode::Knn { neighbours: knn };
    }
    let len = workspace_len(n, d, &cfg).unwrap();
    let mut labels = vec![0u32; n];
    let s = cluster(
        &z,
        &t,
        n,
        d,
        &cfg,
        &mut labels,
        &mut vec![0.0; len.floats],
        &mut vec![0; len.indices],
    )
    .unwrap();
    Json::default()
        .field("z", floats(&z))
        .field("t", floats(&t))
        .field("d", d.to_string())
        .field("k", cfg.k.to_string())
        .field("sigma_t", float(cfg.sigma_t))
        .field("seed", cfg.seed.to_string())
        .field("knn_neighbours", knn.to_string())
        .field("float_ws", len.floats.to_string())
        .field("index_ws", len.indices.to_string())
        .field("labels", list(&labels))
        .field("summary_k", s.k.to_string())
        .field("inertia", float(s.inertia))
        .field("sigma_z", float(s.sigma_z))
        .field("eigenvalues", floats(&s.eigenvalues[..s.eigen_count]))
        .done()
}

fn expected() -> String {
    Json::default()
        .field(
            "cluster",
            format!("[{}, {}]", cluster_case(0), cluster_case(10)),
        )
        .done()
}

#[test]
fn python_ctypes_tests_pass() {
    let so = library_dir().join("libmorphosde.so");
    assert!(so.exists(), "{} not built", so.display());
    let expected_path =
        std::env::temp_dir().join(format!("msde-expected-{}.json", std::process::id()));
    std::fs::write(&expected_path, expected()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/python/test_ffi.py"))
        .arg("-v")
        .env("MORPHOSDE_LIB", &so)
        .env("MSDE_EXPECTED", &expected_path)
        .output()
        .expect("python3 is required for the ctypes client tests");
    let _ = std::fs::remove_file(&expected_path);
    assert!(
        out.status.success(),
        "python tests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
