use super::*;
use crate::error::ErrorKind;
use crate::linalg::sym_eigen;

const N: usize = 60;

/// Three groups of 20 points in 2-D (spread 0.3, centres 3 apart) at times
/// 0, 1, 2 by index.
fn blobs() -> ([f64; 2 * N], [f64; N]) {
    let mut z = [0.0f64; 2 * N];
    Rng::stream(11, Family::Data, 0).fill_normal(&mut z);
    let mut t = [0.0f64; N];
    for i in 0..N {
        let g = (i / 20) as f64;
        z[2 * i] = z[2 * i] * 0.3 + 3.0 * g;
        z[2 * i + 1] = z[2 * i + 1] * 0.3 + (g - 1.0).abs();
        t[i] = (i % 3) as f64;
    }
    (z, t)
}

/// The dense graph with the median-distance scale, which these tests
/// check against closed forms (the defaults are a kNN graph).
fn dense<F: Float>(k: usize, sigma_t: F) -> ClusterConfig<F> {
    ClusterConfig {
        sigma_z: SpatialScale::Median,
        mode: Mode::Dense,
        ..ClusterConfig::new(k, sigma_t)
    }
}

/// Runs `cluster` with freshly sized workspaces.
fn run(
    z: &[f64],
    t: &[f64],
    d: usize,
    cfg: &ClusterConfig<f64>,
    labels: &mut [u32],
) -> Result<ClusterSummary<f64>> {
    let n = t.len();
    let len = workspace_len(n, d, cfg)?;
    let mut fw = [0.0f64; 40_000];
    let mut iw = [0u32; 20_000];
    assert!(len.floats <= fw.len() && len.indices <= iw.len(), "{len:?}");
    cluster(z, t, n, d, cfg, labels, &mut fw, &mut iw)
}

/// Leading eigenvalues of D^{-1/2} W D^{-1/2}, built from the formula and
/// decomposed by dense Jacobi.
fn reference_eigenvalues(z: &[f64], t: &[f64], sigma_z: f64, sigma_t: f64) -> [f64; N] {
    let mut m = [0.0f64; N * N];
    for i in 0..N {
        for j in 0..N {
            let dz2 = (z[2 * i] - z[2 * j]).powi(2) + (z[2 * i + 1] - z[2 * j + 1]).powi(2);
            let dt2 = (t[i] - t[j]).powi(2);
            m[i * N + j] =
                (-dz2 / (2.0 * sigma_z * sigma_z) - dt2 / (2.0 * sigma_t * sigma_t)).exp();
        }
    }
    let deg: [f64; N] = core::array::from_fn(|i| m[i * N..][..N].iter().sum());
    for i in 0..N {
        for j in 0..N {
            m[i * N + j] /= (deg[i] * deg[j]).sqrt();
        }
    }
    let (mut w, mut v) = ([0.0; N], [0.0; N * N]);
    sym_eigen(&mut m, N, &mut w, &mut v).unwrap();
    w
}

#[test]
fn dense_eigenvalues_match_jacobi_and_groups_are_found() {
    let (z, t) = blobs();
    let mut cfg = dense(3, 2.0);
    cfg.sigma_z = SpatialScale::Given(0.8);
    let mut labels = [0u32; N];
    let s = run(&z, &t, 2, &cfg, &mut labels).unwrap();
    let w = reference_eigenvalues(&z, &t, 0.8, 2.0);
    assert_eq!(s.eigen_count, 3);
    for (j, (&got, &want)) in s.eigenvalues[..3].iter().zip(&w).enumerate() {
        assert!((got - want).abs() < 1e-10, "{j}: {got} vs {want}");
    }
    for (i, &l) in labels.iter().enumerate() {
        assert_eq!(l, (i / 20) as u32, "point {i}");
    }
}

#[test]
fn knn_with_all_neighbours_equals_dense() {
    let (z, t) = blobs();
    let mut cfg = dense(4, 1.5);
    cfg.sigma_z = SpatialScale::Given(1.1);
    let mut dense_labels = [0u32; N];
    let dense = run(&z, &t, 2, &cfg, &mut dense_labels).unwrap();
    cfg.mode = Mode::Knn { neighbours: N - 1 };
    let mut knn_labels = [0u32; N];
    let knn = run(&z, &t, 2, &cfg, &mut knn_labels).unwrap();
    let w = reference_eigenvalues(&z, &t, 1.1, 1.5);
    for (j, &want) in w[..4].iter().enumerate() {
        assert!((dense.eigenvalues[j] - want).abs() < 1e-10);
        assert!((knn.eigenvalues[j] - want).abs() < 1e-10);
    }
}

#[test]
fn eigengap_picks_the_planted_number_of_groups() {
    let (z, t) = blobs();
    let mut cfg = dense(8, f64::INFINITY);
    cfg.choose_k = true;
    cfg.sigma_z = SpatialScale::SelfTuning { neighbour: 5 };
    let mut labels = [0u32; N];
    let s = run(&z, &t, 2, &cfg, &mut labels).unwrap();
    assert_eq!(s.k, 3, "{:?}", &s.eigenvalues[..9]);
    assert_eq!(s.eigen_count, 9);
    for (i, &l) in labels.iter().enumerate() {
        assert_eq!(l, (i / 20) as u32);
    }
}

#[test]
fn median_heuristic_is_the_median_pairwise_distance() {
    let (z, t) = blobs();
    let cfg = dense(3, 1.0);
    let mut labels = [0u32; N];
    let s = run(&z, &t, 2, &cfg, &mut labels).unwrap();
    let mut dists = [0.0f64; N * (N - 1) / 2];
    let mut c = 0;
    for i in 0..N {
        for j in i + 1..N {
            dists[c] =
                ((z[2 * i] - z[2 * j]).powi(2) + (z[2 * i + 1] - z[2 * j + 1]).powi(2)).sqrt();
            c += 1;
        }
    }
    dists.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(s.sigma_z, dists[(dists.len() - 1) / 2]);
}

#[test]
fn bad_input_is_refused_with_the_argument_named() {
    let (z, t) = blobs();
    let mut labels = [0u32; N];
    let base = dense(3, 1.0);
    let check = |cfg: ClusterConfig<f64>, z: &[f64], t: &[f64], kind: ErrorKind, arg: &str| {
        let mut labels = [0u32; N];
        let e = run(z, t, 2, &cfg, &mut labels[..t.len()]).unwrap_err();
        assert_eq!((e.kind, e.arg), (kind, arg), "{e}");
    };
    check(
        ClusterConfig { k: 0, ..base },
        &z,
        &t,
        ErrorKind::BadConfig,
        "k",
    );
    check(
        ClusterConfig { k: 61, ..base },
        &z,
        &t,
        ErrorKind::BadConfig,
        "k",
    );
    check(
        ClusterConfig { k: 5, ..base },
        &z[..8],
        &t[..4],
        ErrorKind::BadConfig,
        "k",
    );
    check(
        ClusterConfig {
            sigma_t: 0.0,
            ..base
        },
        &z,
        &t,
        ErrorKind::BadConfig,
        "sigma_t",
    );
    check(
        ClusterConfig {
            sigma_t: f64::NAN,
            ..base
        },
        &z,
        &t,
        ErrorKind::BadConfig,
        "sigma_t",
    );
    let given = |s| ClusterConfig {
        sigma_z: SpatialScale::Given(s),
        ..base
    };
    check(given(-1.0), &z, &t, ErrorKind::BadConfig, "sigma_z");
    check(
        given(f64::INFINITY),
        &z,
        &t,
        ErrorKind::BadConfig,
        "sigma_z",
    );
    let knn = |k| ClusterConfig {
        mode: Mode::Knn { neighbours: k },
        ..base
    };
    check(knn(0), &z, &t, ErrorKind::BadConfig, "mode");
    check(knn(N), &z, &t, ErrorKind::BadConfig, "mode");
    let e = workspace_len(100, 200, &knn(5)).unwrap_err();
    assert_eq!((e.kind, e.arg), (ErrorKind::BadDimension, "d"));
    let mut bad = z;
    bad[7] = f64::NAN;
    check(base, &bad, &t, ErrorKind::NonFinite, "z");
    let mut bad_t = t;
    bad_t[3] = f64::INFINITY;
    check(base, &z, &bad_t, ErrorKind::NonFinite, "t");
    // All points equal: no data-driven scale.
    check(base, &[1.0; 2 * N], &t, ErrorKind::NumericalFailure, "z");
    // Short workspace and mismatched lengths.
    let mut fw = [0.0f64; 100];
    let mut iw = [0u32; 100];
    let e = cluster(&z, &t, N, 2, &base, &mut labels, &mut fw, &mut iw).unwrap_err();
    assert_eq!((e.kind, e.arg), (ErrorKind::BufferTooSmall, "float_ws"));
    let e = cluster(&z[..10], &t, N, 2, &base, &mut labels, &mut fw, &mut iw).unwrap_err();
    assert_eq!((e.kind, e.arg), (ErrorKind::BadDimension, "z"));
}

#[test]
fn memory_limit_error_reports_the_bytes_needed() {
    let mut cfg = dense::<f32>(4, 1.0);
    let n = 100_000;
    let e = workspace_len(n, 8, &cfg).unwrap_err();
    let need = match e.detail {
        Detail::Len { expected, got } => {
            assert_eq!(got, 1 << 30);
            expected
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(e.arg, "memory_limit_bytes");
    // At least the n² affinity matrix.
    assert!(need >= n * n * 4, "{need}");
    cfg.mode = Mode::Knn { neighbours: 10 };
    let len = workspace_len(n, 8, &cfg).unwrap();
    assert!(len.bytes::<f32>().unwrap() < 100 << 20, "{len:?}");
    // The exact limit passes, one byte less fails.
    cfg.memory_limit_bytes = len.bytes::<f32>().unwrap();
    assert!(workspace_len(n, 8, &cfg).is_ok());
    cfg.memory_limit_bytes -= 1;
    assert!(workspace_len(n, 8, &cfg).is_err());
}
