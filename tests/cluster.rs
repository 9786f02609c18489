//! Planted-structure tests of time-weighted spectral clustering (f32, the
//! shipping type): drifting Gaussian groups are recovered, and groups that
//! share space but not time are split only when σ_t says so.

#[path = "common/ari.rs"]
mod ari;

use ari::adjusted_rand_index;
use morphosde_core::cluster::{ClusterConfig, Mode, SpatialScale, cluster, workspace_len};
use morphosde_core::rng::{Family, Rng};

/// Clusters with workspaces of the reported size.
fn labels_of(z: &[f32], t: &[f32], d: usize, cfg: &ClusterConfig<f32>) -> Vec<u32> {
    let n = t.len();
    let len = workspace_len(n, d, cfg).unwrap();
    let mut fw = vec![0.0f32; len.floats];
    let mut iw = vec![0u32; len.indices];
    let mut labels = vec![0u32; n];
    cluster(z, t, n, d, cfg, &mut labels, &mut fw, &mut iw).unwrap();
    labels
}

/// `groups` Gaussian groups (sd 0.5) in 3-D whose centres start 6 apart
/// and drift 0.5 per time unit in their own direction, `per` points per
/// group at each of times 0..5. Returns (z, t, true group).
fn drifting_groups(groups: usize, per: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let d = 3;
    let mut rng = Rng::stream(seed, Family::Data, 0);
    let (mut z, mut t, mut truth) = (vec![], vec![], vec![]);
    for time in 0..5 {
        for g in 0..groups {
            let angle = g as f64 * std::f64::consts::TAU / groups as f64;
            let centre = [6.0 * angle.cos(), 6.0 * angle.sin(), g as f64];
            let drift = [-angle.sin(), angle.cos(), 0.3];
            for _ in 0..per {
                for c in 0..d {
                    z.push((centre[c] + 0.5 * time as f64 * drift[c] + 0.5 * rng.normal()) as f32);
                }
                t.push(time as f32);
                truth.push(g as u32);
            }
        }
    }
    (z, t, truth)
}

#[test]
fn drifting_groups_are_recovered_in_every_mode() {
    let (z, t, truth) = drifting_groups(4, 30, 1);
    let scales = [
        SpatialScale::Given(1.5),
        SpatialScale::Median,
        SpatialScale::SelfTuning { neighbour: 7 },
    ];
    // 15 neighbours: fewer than the 29 other points of a point's own
    // (group, time) cell, so the graph must link time bins through space.
    for mode in [Mode::Dense, Mode::Knn { neighbours: 15 }] {
        for &sigma_z in &scales {
            let mut cfg = ClusterConfig::new(4, 2.0);
            cfg.sigma_z = sigma_z;
            cfg.mode = mode;
            let labels = labels_of(&z, &t, 3, &cfg);
            let ari = adjusted_rand_index(&labels, &truth);
            assert!(ari >= 0.95, "{mode:?} {sigma_z:?}: ARI {ari}");
        }
    }
}

#[test]
fn groups_apart_in_time_are_split_only_when_sigma_t_says_so() {
    // Two groups drawn from the same 2-D Gaussian, one observed at times
    // 0 and 1, the other at times 10 and 11.
    let mut rng = Rng::stream(2, Family::Data, 0);
    let (mut z, mut t, mut truth) = (vec![], vec![], vec![]);
    for (g, times) in [[0.0f32, 1.0], [10.0, 11.0]].iter().enumerate() {
        for &time in times {
            for _ in 0..120 {
                z.push(rng.normal() as f32);
                z.push(rng.normal() as f32);
                t.push(time);
                truth.push(g as u32);
            }
        }
    }
    for mode in [Mode::Dense, Mode::Knn { neighbours: 12 }] {
        let mut cfg = ClusterConfig::new(2, 1.5);
        cfg.mode = mode;
        let near = adjusted_rand_index(&labels_of(&z, &t, 2, &cfg), &truth);
        assert!(near >= 0.95, "{mode:?} σ_t = 1.5: ARI {near}");
        cfg.sigma_t = f32::INFINITY;
        let blind = adjusted_rand_index(&labels_of(&z, &t, 2, &cfg), &truth);
        assert!(blind.abs() < 0.1, "{mode:?} σ_t = ∞: ARI {blind}");
        cfg.sigma_t = 100.0;
        let wide = adjusted_rand_index(&labels_of(&z, &t, 2, &cfg), &truth);
        assert!(wide.abs() < 0.1, "{mode:?} σ_t = 100: ARI {wide}");
    }
}

#[test]
fn results_are_deterministic_for_a_seed() {
    let (z, t, _) = drifting_groups(3, 20, 3);
    let mut cfg = ClusterConfig::new(3, 2.0);
    cfg.mode = Mode::Knn { neighbours: 10 };
    cfg.seed = 99;
    assert_eq!(labels_of(&z, &t, 3, &cfg), labels_of(&z, &t, 3, &cfg));
}
