//! Time-weighted spectral clustering: dense mode at n = 2,000 and kNN mode
//! at n = 50,000 (d = 8, 8 drifting Gaussian groups over 5 time points,
//! σ_z = 2, σ_t = 2, 10 k-means restarts; kNN with 15 neighbours).
//!
//! `cargo bench --bench cluster`. Prints the workspace each case needs and
//! the process's peak resident memory (VmHWM) after the runs.

use criterion::{Criterion, criterion_group, criterion_main};
use morphosde_core::cluster::{ClusterConfig, Mode, SpatialScale, cluster, workspace_len};
use morphosde_core::rng::{Family, Rng};
use std::hint::black_box;
use std::time::Duration;

const D: usize = 8;
const GROUPS: usize = 8;

/// `n` points: group g = i mod 8 centred at 4·e_g (plus drift 0.3 per time
/// unit along e_{g+1}), unit noise, times 0..5 by row block.
fn data(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::stream(1, Family::Data, 0);
    let mut z = vec![0.0f32; n * D];
    let mut t = vec![0.0f32; n];
    for i in 0..n {
        let g = i % GROUPS;
        let time = (5 * i / n) as f32;
        t[i] = time;
        for c in 0..D {
            let mut x = rng.normal() as f32;
            if c == g {
                x += 4.0;
            }
            if c == (g + 1) % D {
                x += 0.3 * time;
            }
            z[i * D + c] = x;
        }
    }
    (z, t)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn case(c: &mut Criterion, name: &str, n: usize, mode: Mode) {
    let (z, t) = data(n);
    let mut cfg = ClusterConfig::new(GROUPS, 2.0f32);
    cfg.sigma_z = SpatialScale::Given(2.0);
    cfg.mode = mode;
    let len = workspace_len(n, D, &cfg).unwrap();
    println!(
        "{name}: workspace {:.1} MiB",
        len.bytes::<f32>().unwrap() as f64 / (1 << 20) as f64
    );
    let mut fw = vec![0.0f32; len.floats];
    let mut iw = vec![0u32; len.indices];
    let mut labels = vec![0u32; n];
    c.bench_function(name, |b| {
        b.iter(|| {
            cluster(&z, &t, n, D, &cfg, &mut labels, &mut fw, &mut iw).unwrap();
            black_box(&labels);
        })
    });
}

fn benches(c: &mut Criterion) {
    case(c, "cluster_dense_n2000", 2000, Mode::Dense);
    case(
        c,
        "cluster_knn15_n50000",
        50_000,
        Mode::Knn { neighbours: 15 },
    );
    if let Some(mib) = peak_rss_mib() {
        println!("peak resident memory of the bench process: {mib:.1} MiB");
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8));
    targets = benches
}
criterion_main!(group);
