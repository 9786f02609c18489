//! The time-weighted affinity: spatial scales (given, median heuristic,
//! self-tuning), the dense normalised matrix and the sparse kNN graph.

use super::kdtree::KdTree;
use super::{SpatialScale, embed, for_each_row};
use crate::error::{Arena, Error, ErrorKind, Result, checked_mul};
use crate::fastmath::exp_in_place;
use crate::float::Float;
use crate::linalg::squared_distance;
use crate::rng::{Family, Rng};
use crate::size::Size;
use core::cmp::Ordering;

/// Largest number of points whose pairwise distances the median heuristic
/// uses (a seeded sample when `n` is larger).
pub const MEDIAN_SAMPLE: usize = 512;

/// Stream index (family [`Family::Cluster`]) of the median heuristic's sample.
const MEDIAN_STREAM: u64 = 1;

fn cmp<F: Float>(a: &F, b: &F) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// The time factor: `1 / (2 σ_t²)` (0 when `σ_t = +∞`).
pub(super) struct Kernel<F> {
    half_inv_t2: F,
}

impl<F: Float> Kernel<F> {
    pub fn new(sigma_t: F) -> Self {
        Kernel {
            half_inv_t2: F::ONE / (F::TWO * sigma_t * sigma_t),
        }
    }

    /// `ln W_ij` for squared spatial distance `dz2`, spatial factor
    /// `a = 1/(2σ_z²)` (or `1/(2σ_iσ_j)`) and time difference `dt`.
    #[inline]
    fn log_affinity(&self, dz2: F, a: F, dt: F) -> F {
        -(dz2 * a + dt * dt * self.half_inv_t2)
    }
}

/// Floats the scale estimation needs beyond the local scales.
pub(super) fn median_workspace_floats(n: usize) -> usize {
    let m = n.min(MEDIAN_SAMPLE);
    (m * (m - 1) / 2).max(n)
}

/// Lower median of `v` (reordered).
fn lower_median<F: Float>(v: &mut [F]) -> F {
    let mid = (v.len() - 1) / 2;
    *v.select_nth_unstable_by(mid, cmp).1
}

/// Median pairwise distance over a seeded sample of at most
/// [`MEDIAN_SAMPLE`] points.
fn median_distance<F: Float>(
    z: &[F],
    n: usize,
    d: usize,
    seed: u64,
    order: &mut [u32],
    dist: &mut [F],
) -> Result<F> {
    let m = n.min(MEDIAN_SAMPLE);
    for (i, o) in order[..n].iter_mut().enumerate() {
        *o = i as u32;
    }
    if m < n {
        // Partial Fisher–Yates: the first m entries become a uniform sample.
        let mut rng = Rng::stream(seed, Family::Cluster, MEDIAN_STREAM);
        for i in 0..m {
            let j = i + rng.below((n - i) as u64) as usize;
            order.swap(i, j);
        }
    }
    let mut c = 0;
    for a in 0..m {
        let za = &z[order[a] as usize * d..][..d];
        for b in a + 1..m {
            dist[c] = squared_distance(za, &z[order[b] as usize * d..][..d]);
            c += 1;
        }
    }
    let med = lower_median(&mut dist[..c]).sqrt();
    if med <= F::ZERO {
        return Err(Error::new(
            ErrorKind::NumericalFailure,
            "z",
            "median pairwise distance is zero (points coincide); give sigma_z",
        ));
    }
    Ok(med)
}

/// Raises zero local scales to the smallest positive one and returns their
/// lower median (`tmp`: `n` floats).
fn finish_local_scales<F: Float>(scales: &mut [F], tmp: &mut [F]) -> Result<F> {
    let min_pos = scales
        .iter()
        .copied()
        .filter(|&s| s > F::ZERO)
        .fold(F::INFINITY, F::min);
    if !min_pos.is_finite() {
        return Err(Error::new(
            ErrorKind::NumericalFailure,
            "z",
            "all self-tuning scales are zero (points coincide); give sigma_z",
        ));
    }
    for s in scales.iter_mut() {
        if *s <= F::ZERO {
            *s = min_pos;
        }
    }
    let tmp = &mut tmp[..scales.len()];
    tmp.copy_from_slice(scales);
    Ok(lower_median(tmp))
}

/// The dense mode's spatial scale: returns `σ_z` (for self-tuning the
/// median local scale, with the local scales in `scales`). `m` (`n × n`) is
/// used as scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn spatial_scale_dense<F: Float>(
    z: &[F],
    n: usize,
    d: usize,
    how: &SpatialScale<F>,
    seed: u64,
    order: &mut [u32],
    sample: &mut [F],
    scales: &mut [F],
    m: &mut [F],
) -> Result<F> {
    match *how {
        SpatialScale::Given(s) => Ok(s),
        SpatialScale::Median => median_distance(z, n, d, seed, order, sample),
        SpatialScale::SelfTuning { neighbour } => {
            for_each_row(m, n, |i, row| {
                let zi = &z[i * d..][..d];
                for (j, r) in row.iter_mut().enumerate() {
                    *r = squared_distance(zi, &z[j * d..][..d]);
                }
                row[i] = F::INFINITY;
                row.select_nth_unstable_by(neighbour - 1, cmp);
            });
            for (i, s) in scales.iter_mut().enumerate() {
                *s = m[i * n + neighbour - 1].sqrt();
            }
            finish_local_scales(scales, sample)
        }
    }
}

/// Spatial factor `1/(2σ_z²)`, or `1/(2σ_iσ_j)` with local scales.
#[inline]
fn spatial_factor<F: Float>(local: bool, global: F, scales: &[F], i: usize, j: usize) -> F {
    if local {
        F::ONE / (F::TWO * scales[i] * scales[j])
    } else {
        global
    }
}

/// Fills `m` (`n × n`) with `D^{-1/2} W D^{-1/2}`. `scales` holds the local
/// scales for self-tuning and is overwritten with `D^{-1/2}`.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_normalised<F: Float>(
    z: &[F],
    t: &[F],
    n: usize,
    d: usize,
    kernel: &Kernel<F>,
    sigma_z: F,
    how: &SpatialScale<F>,
    scales: &mut [F],
    m: &mut [F],
) {
    let local = matches!(how, SpatialScale::SelfTuning { .. });
    let global = F::ONE / (F::TWO * sigma_z * sigma_z);
    {
        let scales = &*scales;
        for_each_row(m, n, |i, row| {
            let zi = &z[i * d..][..d];
            for (j, r) in row.iter_mut().enumerate() {
                let a = spatial_factor(local, global, scales, i, j);
                *r = kernel.log_affinity(squared_distance(zi, &z[j * d..][..d]), a, t[i] - t[j]);
            }
            exp_in_place(row);
        });
    }
    for (i, s) in scales.iter_mut().enumerate() {
        let deg: F = m[i * n..][..n].iter().copied().sum();
        *s = F::ONE / deg.sqrt();
    }
    let inv_sqrt_deg = &*scales;
    for_each_row(m, n, |i, row| {
        let ri = inv_sqrt_deg[i];
        for (r, &rj) in row.iter_mut().zip(inv_sqrt_deg) {
            *r = *r * ri * rj;
        }
    });
}

/// Workspace pieces of the kNN mode.
pub(super) struct KnnSizes {
    /// Neighbours found per query, the point itself included.
    query: usize,
    /// Largest number of stored (directed) entries of the symmetric graph.
    max_entries: usize,
    pub floats: usize,
    pub indices: usize,
}

impl KnnSizes {
    pub fn new(n: usize, query: usize, neighbours: usize) -> Result<Self> {
        // Each row: itself, its own neighbours, and at most n·neighbours
        // reverse edges in total.
        let max_entries = checked_mul(n, 2 * neighbours + 1, "n")?;
        if max_entries > u32::MAX as usize {
            return Err(Error::too_large(
                "n",
                "too many graph entries for 32-bit offsets",
            ));
        }
        let nq = checked_mul(n, query, "n")?;
        Ok(KnnSizes {
            query,
            max_entries,
            floats: (Size(nq) + max_entries).get(),
            indices: (Size(n) * 3 + nq + 1 + max_entries).get(),
        })
    }
}

/// The symmetric normalised kNN affinity in CSR form.
pub(super) struct KnnGraph<'a, F> {
    offsets: &'a [u32],
    cols: &'a [u32],
    vals: &'a [F],
    n: usize,
    /// The global spatial scale used (median local scale for self-tuning).
    pub sigma_z: F,
}

/// Runs `nearest` for every row of `pts` (`n × dim`) into `idx`/`d2`
/// (rows of `q`).
fn all_nearest<F: Float>(
    tree: &KdTree<'_, F>,
    pts: &[F],
    dim: usize,
    q: usize,
    idx: &mut [u32],
    d2: &mut [F],
) {
    #[cfg(feature = "std")]
    {
        use rayon::prelude::*;
        idx.par_chunks_mut(q)
            .zip(d2.par_chunks_mut(q))
            .with_min_len(64)
            .enumerate()
            .for_each(|(i, (ri, rd))| tree.nearest(&pts[i * dim..][..dim], ri, rd));
    }
    #[cfg(not(feature = "std"))]
    for (i, (ri, rd)) in idx.chunks_mut(q).zip(d2.chunks_mut(q)).enumerate() {
        tree.nearest(&pts[i * dim..][..dim], ri, rd);
    }
}

impl<'a, F: Float> KnnGraph<'a, F> {
    /// Builds the graph from workspace pieces taken from the arenas.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        z: &[F],
        t: &[F],
        n: usize,
        d: usize,
        kernel: &Kernel<F>,
        how: &SpatialScale<F>,
        neighbours: usize,
        seed: u64,
        sizes: &KnnSizes,
        order: &mut [u32],
        sample: &mut [F],
        scales: &mut [F],
        fa: &mut Arena<'a, F>,
        ia: &mut Arena<'a, u32>,
    ) -> Result<Self> {
        let q = sizes.query;
        let d2 = fa.take(n * q)?;
        let vals = fa.take(sizes.max_entries)?;
        let perm = ia.take(n)?;
        let split = ia.take(n)?;
        let nbr = ia.take(n * q)?;
        let offsets = ia.take(n + 1)?;
        let cols = ia.take(sizes.max_entries)?;
        // Neighbours in z alone; one query pass serves the graph and the
        // self-tuning scales.
        {
            let tree = KdTree::build(z, d, perm, split);
            all_nearest(&tree, z, d, q, nbr, d2);
        }
        let local = matches!(how, SpatialScale::SelfTuning { .. });
        let sigma_z = match *how {
            SpatialScale::Given(s) => s,
            SpatialScale::Median => median_distance(z, n, d, seed, order, sample)?,
            SpatialScale::SelfTuning { neighbour } => {
                for (i, s) in scales.iter_mut().enumerate() {
                    *s = kth_other(&nbr[i * q..][..q], &d2[i * q..][..q], i, neighbour).sqrt();
                }
                finish_local_scales(scales, sample)?
            }
        };
        // Keep the first `neighbours` entries other than the point itself.
        for i in 0..n {
            let row = &mut nbr[i * q..][..q];
            let mut w = 0;
            for r in 0..q {
                if row[r] as usize != i && w < neighbours {
                    row[w] = row[r];
                    w += 1;
                }
            }
        }
        let listed = |i: usize, j: u32| nbr[i * q..][..neighbours].contains(&j);
        // Row lengths: itself + own neighbours + reverse edges not listed.
        offsets.fill(0);
        for i in 0..n {
            offsets[i + 1] += (1 + neighbours) as u32;
            for &j in &nbr[i * q..][..neighbours] {
                if !listed(j as usize, i as u32) {
                    offsets[j as usize + 1] += 1;
                }
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        // Fill: `split` becomes the per-row write cursor.
        let cursor = split;
        for i in 0..n {
            let o = offsets[i] as usize;
            cols[o] = i as u32;
            cols[o + 1..][..neighbours].copy_from_slice(&nbr[i * q..][..neighbours]);
            cursor[i] = (o + 1 + neighbours) as u32;
        }
        for i in 0..n {
            for &j in &nbr[i * q..][..neighbours] {
                if !listed(j as usize, i as u32) {
                    let c = &mut cursor[j as usize];
                    cols[*c as usize] = i as u32;
                    *c += 1;
                }
            }
        }
        let entries = offsets[n] as usize;
        let global = F::ONE / (F::TWO * sigma_z * sigma_z);
        for i in 0..n {
            let zi = &z[i * d..][..d];
            for e in offsets[i] as usize..offsets[i + 1] as usize {
                let j = cols[e] as usize;
                let a = spatial_factor(local, global, scales, i, j);
                vals[e] =
                    kernel.log_affinity(squared_distance(zi, &z[j * d..][..d]), a, t[i] - t[j]);
            }
        }
        exp_in_place(&mut vals[..entries]);
        for (i, s) in scales.iter_mut().enumerate() {
            let deg: F = vals[offsets[i] as usize..offsets[i + 1] as usize]
                .iter()
                .copied()
                .sum();
            *s = F::ONE / deg.sqrt();
        }
        for i in 0..n {
            for e in offsets[i] as usize..offsets[i + 1] as usize {
                vals[e] = vals[e] * scales[i] * scales[cols[e] as usize];
            }
        }
        Ok(KnnGraph {
            offsets,
            cols: &cols[..entries],
            vals: &vals[..entries],
            n,
            sigma_z,
        })
    }

    pub fn operator(&self) -> embed::CsrOp<'_, F> {
        embed::CsrOp {
            offsets: self.offsets,
            cols: self.cols,
            vals: self.vals,
            n: self.n,
        }
    }
}

/// Squared distance of the `k`-th nearest point other than `i` in a sorted
/// neighbour row that holds at least `k + 1` entries.
fn kth_other<F: Float>(idx: &[u32], d2: &[F], i: usize, k: usize) -> F {
    let mut seen = 0;
    for (&j, &dd) in idx.iter().zip(d2) {
        if j as usize != i {
            seen += 1;
            if seen == k {
                return dd;
            }
        }
    }
    d2[idx.len() - 1]
}
