//! Snapshot datasets of the kind trajectory-inference tools are judged on:
//! clouds at a few time labels, no tracks, shapes that branch, unequal bin
//! sizes and coordinates on unequal scales. Deterministic for a seed (one
//! `Rng` stream per dataset); `size` scales every bin's count.
//!
//! - [`petal`]: 2-D, five time labels; a compact blob that splits into five
//!   curved arms (petals) growing outwards and widening.
//! - [`bifurcation`]: a branching latent trajectory (progress `p`, branch
//!   coordinate `q`, a thickness `r`) embedded non-linearly in 6
//!   dimensions whose scales differ by up to a factor of 100, in four bins
//!   of unequal size (78 / 62 / 113 / 428 at size 1), the branches taken
//!   60 / 40.
//! - [`cycle`]: 3-D, six time labels of 300 points; an arc on a saddle-shaped
//!   ring that turns by 60° per time unit and spreads along the ring.

use crate::data::Snapshots;
use morphosde_core::rng::{Family, Rng};
use std::f64::consts::PI;

/// The dataset names, in table order.
pub const NAMES: [&str; 3] = ["petal", "bifurcation", "cycle"];

/// The dataset `name` ([`NAMES`]) for `seed` at `size`.
pub fn by_name(name: &str, seed: u64, size: f64) -> Result<Snapshots, String> {
    match name {
        "petal" => Ok(petal(seed, size)),
        "bifurcation" => Ok(bifurcation(seed, size)),
        "cycle" => Ok(cycle(seed, size)),
        _ => Err(format!(
            "--datasets: unknown dataset '{name}' (known: {})",
            NAMES.join(", ")
        )),
    }
}

/// `count` scaled by `size`, at least 2.
fn scaled(count: usize, size: f64) -> usize {
    ((count as f64 * size).round() as usize).max(2)
}

/// Builds a snapshot table from bins of `(time, count)` and a sampler of
/// one point (given the time index and the stream); coordinates `z0, z1, …`.
fn sample(
    d: usize,
    bins: &[(f32, usize)],
    seed: u64,
    stream: u64,
    mut point: impl FnMut(usize, &mut Rng, &mut [f64]),
) -> Snapshots {
    let mut rng = Rng::stream(seed, Family::Data, stream);
    let (mut z, mut t) = (Vec::new(), Vec::new());
    let mut p = vec![0.0; d];
    for (k, &(time, count)) in bins.iter().enumerate() {
        for _ in 0..count {
            point(k, &mut rng, &mut p);
            z.extend(p.iter().map(|&v| v as f32));
            t.push(time);
        }
    }
    let n = t.len();
    Snapshots {
        d,
        z,
        t,
        track: vec![None; n],
        names: (0..d).map(|k| format!("z{k}")).collect(),
        time_origin: 0.0,
    }
}

/// The petal: time labels 0…4, 160 points each at size 1. Label 0: an
/// isotropic blob (σ = 0.1). Label l ≥ 1: one of five arms (equal odds) at
/// radius 0.3 l (σ 0.05), the arm's angle turning by 0.4 rad per unit of
/// radius, spread across it with σ = 0.03 + 0.015 l.
pub fn petal(seed: u64, size: f64) -> Snapshots {
    const ARMS: u64 = 5;
    let bins: Vec<(f32, usize)> = (0..5).map(|l| (l as f32, scaled(160, size))).collect();
    sample(2, &bins, seed, 1, |label, rng, p| {
        if label == 0 {
            let (a, b) = rng.normal_pair();
            p.copy_from_slice(&[0.1 * a, 0.1 * b]);
            return;
        }
        let arm = rng.below(ARMS) as f64;
        let (a, b) = rng.normal_pair();
        let r = 0.3 * label as f64 + 0.05 * a;
        let across = (0.03 + 0.015 * label as f64) * b;
        let theta = 2.0 * PI * arm / ARMS as f64 + 0.4 * r;
        let (s, c) = theta.sin_cos();
        p.copy_from_slice(&[r * c - across * s, r * s + across * c]);
    })
}

/// Scales of the bifurcation's six embedding axes.
const BIFURCATION_SCALES: [f64; 6] = [1.0, 10.0, 100.0, 1.0, 30.0, 3.0];

/// The bifurcation: times 0…3 with 78 / 62 / 113 / 428 points at size 1.
/// Latent progress `p ~ t + 0.25 N` (asynchronous cells), branch `q = ±0.9
/// max(0, p − 1) + 0.08 N` (+ with odds 0.6), thickness `r = 0.1 N`;
/// embedded as `(p, q, sin 1.2p + 0.4q², pq + r, cos(0.8p)(1 + 0.5q),
/// tanh(q − 0.3p) + r)`, each axis with noise 0.02 and then multiplied by
/// its scale (1, 10, 100, 1, 30, 3).
pub fn bifurcation(seed: u64, size: f64) -> Snapshots {
    let counts = [78, 62, 113, 428];
    let bins: Vec<(f32, usize)> = counts
        .iter()
        .enumerate()
        .map(|(k, &c)| (k as f32, scaled(c, size)))
        .collect();
    sample(6, &bins, seed, 2, |k, rng, e| {
        let (a, b) = rng.normal_pair();
        let p = k as f64 + 0.25 * a;
        let branch = if rng.uniform() < 0.6 { 1.0 } else { -1.0 };
        let q = branch * 0.9 * (p - 1.0).max(0.0) + 0.08 * b;
        let r = 0.1 * rng.normal();
        let latent = [
            p,
            q,
            (1.2 * p).sin() + 0.4 * q * q,
            p * q + r,
            (0.8 * p).cos() * (1.0 + 0.5 * q),
            (q - 0.3 * p).tanh() + r,
        ];
        for ((out, v), scale) in e.iter_mut().zip(latent).zip(BIFURCATION_SCALES) {
            *out = (v + 0.02 * rng.normal()) * scale;
        }
    })
}

/// The cycle: time labels 0…5, 300 points each at size 1. Phase
/// `φ = (π/3) t + 0.5 (1 + 0.3 t) N`, radius `1 + 0.05 N`, height
/// `0.4 sin 2φ + 0.05 N`: the point `(R cos φ, R sin φ, height)`.
pub fn cycle(seed: u64, size: f64) -> Snapshots {
    let bins: Vec<(f32, usize)> = (0..6).map(|l| (l as f32, scaled(300, size))).collect();
    sample(3, &bins, seed, 3, |label, rng, p| {
        let t = label as f64;
        let (a, b) = rng.normal_pair();
        let phi = PI / 3.0 * t + 0.5 * (1.0 + 0.3 * t) * a;
        let radius = 1.0 + 0.05 * b;
        let height = 0.4 * (2.0 * phi).sin() + 0.05 * rng.normal();
        p.copy_from_slice(&[radius * phi.cos(), radius * phi.sin(), height]);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_have_their_bins_and_are_deterministic() {
        for name in NAMES {
            let a = by_name(name, 3, 1.0).unwrap();
            assert_eq!(a, by_name(name, 3, 1.0).unwrap(), "{name}");
            assert_ne!(a.z, by_name(name, 4, 1.0).unwrap().z, "{name}");
            assert!(a.track.iter().all(Option::is_none));
            assert!(a.z.iter().all(|v| v.is_finite()));
        }
        let count = |s: &Snapshots, t: f32| s.t.iter().filter(|&&x| x == t).count();
        let b = bifurcation(0, 1.0);
        let counts: Vec<usize> = (0..4).map(|k| count(&b, k as f32)).collect();
        assert_eq!(counts, [78, 62, 113, 428]);
        assert_eq!(petal(0, 1.0).len(), 800);
        assert_eq!((cycle(0, 1.0).len(), cycle(0, 0.1).len()), (1800, 180));
        // The bifurcation's axes differ in scale by about a factor of 100.
        let spread = |k: usize| {
            let v: Vec<f32> = b.z.iter().skip(k).step_by(6).copied().collect();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
        };
        let (lo, hi) = (0..6)
            .map(spread)
            .fold((f32::MAX, 0.0f32), |(lo, hi), s| (lo.min(s), hi.max(s)));
        assert!(hi / lo > 30.0, "{lo} {hi}");
        assert!(
            by_name("spiral", 0, 1.0)
                .unwrap_err()
                .contains("unknown dataset")
        );
    }
}
