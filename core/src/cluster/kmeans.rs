//! k-means on the embedding rows: k-means++ seeding (D² sampling) and
//! Lloyd iterations, several seeded restarts, the lowest inertia kept.
//!
//! Restart `r` draws from stream `FIRST_RESTART_STREAM + r` of
//! [`Family::Cluster`] (stream 0 starts the eigensolver, stream 1 samples
//! the median heuristic). An empty cluster takes the point farthest from
//! its centroid.

use super::MAX_CLUSTERS;
use crate::float::Float;
use crate::linalg::squared_distance;
use crate::rng::{Family, Rng};

const FIRST_RESTART_STREAM: u64 = 2;

/// Floats of workspace for `n` points and `k` clusters (in `k` dimensions).
pub(super) fn workspace_floats(n: usize, k: usize) -> usize {
    (2 * k * k + k).saturating_add(n)
}

/// Best of `restarts` k-means runs on `emb` (`n × k`): labels into
/// `labels`, returns the inertia. `current`: `n` indices of scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn best_of_restarts<F: Float>(
    emb: &[F],
    n: usize,
    k: usize,
    restarts: usize,
    max_iter: usize,
    seed: u64,
    labels: &mut [u32],
    current: &mut [u32],
    ws: &mut [F],
) -> F {
    let (centroids, rest) = ws.split_at_mut(k * k);
    let (sums, rest) = rest.split_at_mut(k * k);
    let (counts, rest) = rest.split_at_mut(k);
    let dist = &mut rest[..n];
    let current = &mut current[..n];
    let mut best = F::INFINITY;
    for r in 0..restarts {
        let mut rng = Rng::stream(seed, Family::Cluster, FIRST_RESTART_STREAM + r as u64);
        plus_plus(emb, n, k, &mut rng, centroids, dist);
        let inertia = lloyd(emb, n, k, max_iter, centroids, sums, counts, dist, current);
        if r == 0 || inertia < best {
            best = inertia;
            labels.copy_from_slice(current);
        }
    }
    best
}

/// k-means++ seeding into `centroids` (`k × k`); `dist` ends as each
/// point's squared distance to its nearest seed.
fn plus_plus<F: Float>(
    emb: &[F],
    n: usize,
    k: usize,
    rng: &mut Rng,
    centroids: &mut [F],
    dist: &mut [F],
) {
    let first = rng.below(n as u64) as usize;
    centroids[..k].copy_from_slice(&emb[first * k..][..k]);
    for (i, di) in dist.iter_mut().enumerate() {
        *di = squared_distance(&emb[i * k..][..k], &centroids[..k]);
    }
    for c in 1..k {
        let total: f64 = dist.iter().map(|d| d.to_f64()).sum();
        let pick = if total > 0.0 {
            let target = rng.uniform() * total;
            let mut acc = 0.0;
            let mut pick = None;
            for (i, di) in dist.iter().enumerate() {
                acc += di.to_f64();
                if acc > target && *di > F::ZERO {
                    pick = Some(i);
                    break;
                }
            }
            // Rounding can leave `target` above the running sum: take the
            // last point with positive weight.
            pick.unwrap_or_else(|| dist.iter().rposition(|&d| d > F::ZERO).unwrap_or(0))
        } else {
            rng.below(n as u64) as usize
        };
        let centre = &mut centroids[c * k..][..k];
        centre.copy_from_slice(&emb[pick * k..][..k]);
        for (i, di) in dist.iter_mut().enumerate() {
            *di = di.min(squared_distance(&emb[i * k..][..k], centre));
        }
    }
}

/// Lloyd iterations from the given centroids until the labels stop
/// changing or `max_iter` updates; returns the inertia of the final labels.
#[allow(clippy::too_many_arguments)]
fn lloyd<F: Float>(
    emb: &[F],
    n: usize,
    k: usize,
    max_iter: usize,
    centroids: &mut [F],
    sums: &mut [F],
    counts: &mut [F],
    dist: &mut [F],
    labels: &mut [u32],
) -> F {
    let mut iter = 0;
    loop {
        // Assignment (ties to the lower cluster id).
        let mut changed = false;
        for i in 0..n {
            let e = &emb[i * k..][..k];
            let mut best = (0u32, F::INFINITY);
            for c in 0..k {
                let dc = squared_distance(e, &centroids[c * k..][..k]);
                if dc < best.1 {
                    best = (c as u32, dc);
                }
            }
            changed |= iter == 0 || labels[i] != best.0;
            labels[i] = best.0;
            dist[i] = best.1;
        }
        if !changed || iter == max_iter {
            return dist.iter().copied().sum();
        }
        iter += 1;
        // Update: centroids are the means of their points.
        sums.fill(F::ZERO);
        counts.fill(F::ZERO);
        for i in 0..n {
            let c = labels[i] as usize;
            counts[c] += F::ONE;
            for (s, &e) in sums[c * k..][..k].iter_mut().zip(&emb[i * k..][..k]) {
                *s += e;
            }
        }
        for c in 0..k {
            let centre = &mut centroids[c * k..][..k];
            if counts[c] > F::ZERO {
                for (m, &s) in centre.iter_mut().zip(&sums[c * k..][..k]) {
                    *m = s / counts[c];
                }
            } else {
                let mut far = 0;
                for i in 1..n {
                    if dist[i] > dist[far] {
                        far = i;
                    }
                }
                centre.copy_from_slice(&emb[far * k..][..k]);
                dist[far] = F::ZERO;
            }
        }
    }
}

/// Renumbers labels (`< k`) by first appearance.
pub(super) fn canonical_labels(labels: &mut [u32], k: usize) {
    let mut map = [u32::MAX; MAX_CLUSTERS];
    let mut next = 0;
    for l in labels.iter_mut() {
        let slot = &mut map[*l as usize % k.max(1)];
        if *slot == u32::MAX {
            *slot = next;
            next += 1;
        }
        *l = *slot;
    }
}
