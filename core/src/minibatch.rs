//! Local minibatches: source points from time bin `b` and target points
//! from bin `b + 1` within one cluster, for one UOT problem per step.
//!
//! [`MinibatchIndex::build`] bins the times, then sorts the observations by
//! `(bin, cluster, track id, row)` into caller memory, so every
//! `(bin, cluster)` cell is a contiguous, track-sorted range. Sampling
//! allocates nothing and needs no workspace:
//!
//! - sources: `min(B, |cell(b, c)|)` rows drawn without replacement;
//! - targets: first the tracked partners of the drawn sources (rows of bin
//!   `b + 1` in the target pool with the same track id), then rows drawn
//!   without replacement from the rest of the pool, `min(B, |pool|)` in all;
//! - tracked pairs: `(source row, target row)` positions within the batch
//!   for every source whose track continues in the target batch, sorted by
//!   source row, one per source (so sorted and unique), ready for the UOT
//!   self-edge bound.
//!
//! Both lists are returned in index order (sorted by their position in the
//! index), not in draw order.
//!
//! **Fallback for small clusters**: when cluster `c` has fewer than
//! `min_points` observations in bin `b` or in bin `b + 1`, the pools are the
//! whole bins `b` and `b + 1` (all clusters); the result says so.
//!
//! Randomness: step `s` draws from stream `(seed, Family::Minibatch, s)`, so
//! a batch depends only on `(seed, step)` and the index.

use crate::error::{Detail, Error, ErrorKind, Result, check_finite, check_len};
use crate::float::Float;
use crate::rng::{Family, Rng};
use core::cmp::Ordering;

/// Track id of an untracked observation.
pub const UNTRACKED: u32 = u32::MAX;

/// How times become bins.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Binning<F> {
    /// One bin per distinct time value (exact equality), in time order.
    Distinct,
    /// Bins `[t_min + j·w, t_min + (j+1)·w)` of width `w` (> 0) from the
    /// earliest time; empty bins are kept (at most `n` bins).
    Width(F),
}

/// Workspace of [`MinibatchIndex::build`]: `indices` `u32`s and `floats`
/// elements; the index borrows it for its lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexLen {
    pub indices: usize,
    pub floats: usize,
}

/// Workspace for an index over `n` observations.
pub fn index_workspace_len(n: usize) -> IndexLen {
    IndexLen {
        indices: n.saturating_mul(2),
        floats: n,
    }
}

/// The smallest of the times `t` above `after` (the smallest of all when
/// `after` is `None`); `None` when there is none. Walking the distinct
/// times of `n` observations in order this way costs `O(n)` per time and
/// needs no memory.
pub fn next_time<F: Float>(t: &[F], after: Option<F>) -> Option<F> {
    t.iter()
        .copied()
        .filter(|&v| after.is_none_or(|a| v > a))
        .fold(None, |best, v| match best {
            Some(b) if b <= v => Some(b),
            _ => Some(v),
        })
}

/// Sampling parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinibatchConfig {
    /// Largest number of sources and of targets per batch (≥ 1).
    pub batch: usize,
    /// Fewer observations of the cluster than this in either bin triggers
    /// the whole-bin fallback.
    pub min_points: usize,
    pub seed: u64,
}

impl MinibatchConfig {
    /// Batch size `batch`, fallback below 16 points, seed 0.
    pub fn new(batch: usize) -> Self {
        MinibatchConfig {
            batch,
            min_points: 16,
            seed: 0,
        }
    }
}

/// What [`MinibatchIndex::sample`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSizes {
    /// Source bin and cluster of the batch.
    pub bin: usize,
    pub cluster: usize,
    pub sources: usize,
    pub targets: usize,
    /// Tracked pairs (each two `u32`s in `pairs`).
    pub pairs: usize,
    /// The pools were the whole bins (small-cluster fallback).
    pub whole_bins: bool,
}

/// Observations sorted by `(bin, cluster, track, row)`, borrowing the
/// caller's labels, track ids and workspace.
#[derive(Debug)]
pub struct MinibatchIndex<'a, F> {
    labels: &'a [u32],
    track: &'a [u32],
    order: &'a [u32],
    bin_of: &'a [u32],
    bin_time: &'a [F],
    k: usize,
}

/// Start of the first position in `order[lo..hi]` whose key is not below
/// `key` (the keys are non-decreasing along `order`).
fn lower_bound(lo: usize, hi: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `count` distinct values of `0..pool`, ascending, into `out[..count]`
/// (Floyd's algorithm with a sorted set; `count ≤ pool`).
fn floyd(rng: &mut Rng, pool: usize, count: usize, out: &mut [u32]) {
    for (len, j) in (pool - count..pool).enumerate() {
        let r = rng.below(j as u64 + 1) as u32;
        let v = match out[..len].binary_search(&r) {
            Ok(_) => j as u32,
            Err(_) => r,
        };
        let at = out[..len].binary_search(&v).unwrap_or_else(|p| p);
        out.copy_within(at..len, at + 1);
        out[at] = v;
    }
}

impl<'a, F: Float> MinibatchIndex<'a, F> {
    /// Builds the index of `n = t.len()` observations with cluster `labels`
    /// (`< k`) and `track` ids ([`UNTRACKED`] for none; a track should occur
    /// at most once per bin, otherwise its lowest row is its partner).
    /// Errors: mismatched lengths, short workspace, non-finite times, labels
    /// `≥ k`, a bad bin width, more than `n` bins, or a single time bin.
    pub fn build(
        t: &[F],
        labels: &'a [u32],
        track: &'a [u32],
        k: usize,
        binning: Binning<F>,
        indices: &'a mut [u32],
        floats: &'a mut [F],
    ) -> Result<Self> {
        let n = t.len();
        check_len(labels, n, "labels")?;
        check_len(track, n, "track")?;
        check_finite(t, "t")?;
        if n > u32::MAX as usize {
            return Err(Error::bad_dim(
                "t",
                "too many observations for 32-bit indices",
            ));
        }
        if k == 0 {
            return Err(Error::bad_config("k", "need at least one cluster"));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= k) {
            return Err(Error::bad_config("labels", "label not below k").with(Detail::Index(i)));
        }
        let need = index_workspace_len(n);
        if indices.len() < need.indices {
            return Err(Error::too_small("indices", need.indices, indices.len()));
        }
        if floats.len() < need.floats {
            return Err(Error::too_small("floats", need.floats, floats.len()));
        }
        let (order, rest) = indices.split_at_mut(n);
        let bin_of = &mut rest[..n];
        let cmp = |a: &F, b: &F| a.partial_cmp(b).unwrap_or(Ordering::Equal);
        let bins = match binning {
            Binning::Distinct => {
                let times = &mut floats[..n];
                times.copy_from_slice(t);
                times.sort_unstable_by(cmp);
                let mut bins = 0;
                for i in 0..n {
                    if bins == 0 || times[i] != times[bins - 1] {
                        times[bins] = times[i];
                        bins += 1;
                    }
                }
                for (b, &ti) in bin_of.iter_mut().zip(t) {
                    *b = lower_bound(0, bins, |j| times[j] < ti) as u32;
                }
                bins
            }
            Binning::Width(w) => {
                if !(w.is_finite() && w > F::ZERO) {
                    return Err(
                        Error::bad_config("binning", "bin width must be finite and > 0")
                            .with(Detail::Value(w.to_f64())),
                    );
                }
                let t_min = t.iter().copied().fold(F::INFINITY, F::min);
                let mut bins = 0;
                for (b, &ti) in bin_of.iter_mut().zip(t) {
                    let j = ((ti - t_min) / w).to_f64();
                    if j >= n as f64 {
                        return Err(Error::bad_config(
                            "binning",
                            "bin width too small: more bins than observations",
                        )
                        .with(Detail::Value(w.to_f64())));
                    }
                    *b = j as u32;
                    bins = bins.max(j as usize + 1);
                }
                for (j, bt) in floats[..bins].iter_mut().enumerate() {
                    *bt = t_min + F::from_usize(j) * w;
                }
                bins
            }
        };
        if bins < 2 {
            return Err(Error::new(
                ErrorKind::BadDimension,
                "t",
                "a single time bin: minibatches need bins b and b + 1",
            ));
        }
        for (i, o) in order.iter_mut().enumerate() {
            *o = i as u32;
        }
        let bin_of = &*bin_of;
        order.sort_unstable_by_key(|&i| {
            let i = i as usize;
            (bin_of[i], labels[i], track[i], i as u32)
        });
        Ok(MinibatchIndex {
            labels,
            track,
            order,
            bin_of,
            bin_time: &floats[..bins],
            k,
        })
    }

    /// Number of time bins.
    pub fn bins(&self) -> usize {
        self.bin_time.len()
    }

    /// Time of bin `b`: its distinct time value, or its lower edge.
    pub fn bin_time(&self, b: usize) -> F {
        self.bin_time[b]
    }

    /// Bin of observation `i`.
    pub fn bin_of(&self, i: usize) -> usize {
        self.bin_of[i] as usize
    }

    /// Key of index position `pos`.
    fn key(&self, pos: usize) -> (u32, u32) {
        let i = self.order[pos] as usize;
        (self.bin_of[i], self.labels[i])
    }

    /// Positions of cell `(bin, cluster)` (or the whole bin for `None`).
    fn range(&self, bin: usize, cluster: Option<usize>) -> (usize, usize) {
        let n = self.order.len();
        let (lo_key, hi_key) = match cluster {
            Some(c) => ((bin as u32, c as u32), (bin as u32, c as u32 + 1)),
            None => ((bin as u32, 0), (bin as u32 + 1, 0)),
        };
        (
            lower_bound(0, n, |p| self.key(p) < lo_key),
            lower_bound(0, n, |p| self.key(p) < hi_key),
        )
    }

    /// Observations of cluster `cluster` in bin `bin`.
    pub fn count(&self, bin: usize, cluster: usize) -> usize {
        let (lo, hi) = self.range(bin, Some(cluster));
        hi - lo
    }

    /// Position of the first row of `track` in the track-sorted cells
    /// covering `[lo, hi)` of one bin.
    fn find_track(
        &self,
        lo: usize,
        hi: usize,
        whole_bin: bool,
        bin: usize,
        track: u32,
    ) -> Option<usize> {
        let search = |lo: usize, hi: usize| {
            let p = lower_bound(lo, hi, |p| self.track[self.order[p] as usize] < track);
            (p < hi && self.track[self.order[p] as usize] == track).then_some(p)
        };
        if !whole_bin {
            return search(lo, hi);
        }
        (0..self.k).find_map(|c| {
            let (a, b) = self.range(bin, Some(c));
            search(a, b)
        })
    }

    /// Draws the batch of `step`: the source cell is the cell of a uniformly
    /// drawn observation outside the last bin (cells weighted by size),
    /// then as [`MinibatchIndex::sample_cell`] with the same stream.
    pub fn sample(
        &self,
        cfg: &MinibatchConfig,
        step: u64,
        source: &mut [u32],
        target: &mut [u32],
        pairs: &mut [u32],
    ) -> Result<BatchSizes> {
        let mut rng = Rng::stream(cfg.seed, Family::Minibatch, step);
        let last = self.range(self.bins() - 1, None).0;
        let (bin, cluster) = self.key(rng.below(last as u64) as usize);
        self.draw(
            cfg,
            &mut rng,
            bin as usize,
            cluster as usize,
            source,
            target,
            pairs,
        )
    }

    /// Draws the batch of `step` from bin `bin` (`< bins − 1`): the source
    /// cell is the cell of a uniformly drawn observation of that bin, then
    /// as [`MinibatchIndex::sample_cell`] with the same stream.
    pub fn sample_in_bin(
        &self,
        cfg: &MinibatchConfig,
        step: u64,
        bin: usize,
        source: &mut [u32],
        target: &mut [u32],
        pairs: &mut [u32],
    ) -> Result<BatchSizes> {
        if bin + 1 >= self.bins() {
            return Err(Error::bad_config("bin", "needs a following bin").with(Detail::Index(bin)));
        }
        let mut rng = Rng::stream(cfg.seed, Family::Minibatch, step);
        let (lo, hi) = self.range(bin, None);
        if lo == hi {
            return Err(Error::new(ErrorKind::BadDimension, "bin", "empty time bin")
                .with(Detail::Index(bin)));
        }
        let (_, cluster) = self.key(lo + rng.below((hi - lo) as u64) as usize);
        self.draw(cfg, &mut rng, bin, cluster as usize, source, target, pairs)
    }

    /// Draws the batch of `step` from bin `bin` (`< bins − 1`) and cluster
    /// `cluster` into `source` and `target` (observation rows, at least
    /// `cfg.batch` long) and `pairs` (at least `2·cfg.batch` long; pair `j`
    /// is `(pairs[2j], pairs[2j+1])` = (source row, target row) within the
    /// batch). Errors: bad bin/cluster/batch, short outputs, or an empty pool.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_cell(
        &self,
        cfg: &MinibatchConfig,
        step: u64,
        bin: usize,
        cluster: usize,
        source: &mut [u32],
        target: &mut [u32],
        pairs: &mut [u32],
    ) -> Result<BatchSizes> {
        let mut rng = Rng::stream(cfg.seed, Family::Minibatch, step);
        self.draw(cfg, &mut rng, bin, cluster, source, target, pairs)
    }

    #[allow(clippy::too_many_arguments)]
    fn draw(
        &self,
        cfg: &MinibatchConfig,
        rng: &mut Rng,
        bin: usize,
        cluster: usize,
        source: &mut [u32],
        target: &mut [u32],
        pairs: &mut [u32],
    ) -> Result<BatchSizes> {
        let b = cfg.batch;
        if b == 0 || b > u32::MAX as usize / 2 {
            return Err(Error::bad_config("batch", "must be ≥ 1").with(Detail::Index(b)));
        }
        if bin + 1 >= self.bins() {
            return Err(Error::bad_config("bin", "needs a following bin").with(Detail::Index(bin)));
        }
        if cluster >= self.k {
            return Err(Error::bad_config("cluster", "not below k").with(Detail::Index(cluster)));
        }
        if source.len() < b {
            return Err(Error::too_small("source", b, source.len()));
        }
        if target.len() < b {
            return Err(Error::too_small("target", b, target.len()));
        }
        if pairs.len() < 2 * b {
            return Err(Error::too_small("pairs", 2 * b, pairs.len()));
        }
        let whole_bins = self.count(bin, cluster) < cfg.min_points
            || self.count(bin + 1, cluster) < cfg.min_points;
        let cell = if whole_bins { None } else { Some(cluster) };
        let (s_lo, s_hi) = self.range(bin, cell);
        let (t_lo, t_hi) = self.range(bin + 1, cell);
        if s_lo == s_hi || t_lo == t_hi {
            return Err(Error::new(ErrorKind::BadDimension, "bin", "empty time bin")
                .with(Detail::Index(if s_lo == s_hi { bin } else { bin + 1 })));
        }
        let ns = b.min(s_hi - s_lo);
        let nt = b.min(t_hi - t_lo);
        floyd(rng, s_hi - s_lo, ns, source);
        // Partners of the sources: target pool offsets, kept per source in
        // pairs[b..2b] and listed (sorted, unique) in target[..m].
        const NONE: u32 = u32::MAX;
        let mut m = 0;
        for a in 0..ns {
            let tr = self.track[self.order[s_lo + source[a] as usize] as usize];
            let partner = if tr == UNTRACKED {
                None
            } else {
                self.find_track(t_lo, t_hi, whole_bins, bin + 1, tr)
            };
            pairs[b + a] = partner.map_or(NONE, |p| (p - t_lo) as u32);
            if let Some(p) = partner {
                target[m] = (p - t_lo) as u32;
                m += 1;
            }
        }
        target[..m].sort_unstable();
        let mut unique = 0;
        for j in 0..m {
            if unique == 0 || target[j] != target[unique - 1] {
                target[unique] = target[j];
                unique += 1;
            }
        }
        let m = unique;
        // Fill: draws among the pool offsets that are not partners.
        let (partners, fill) = target.split_at_mut(m);
        floyd(rng, t_hi - t_lo - m, nt - m, fill);
        for v in fill[..nt - m].iter_mut() {
            for &p in partners.iter() {
                if p <= *v {
                    *v += 1;
                } else {
                    break;
                }
            }
        }
        target[..nt].sort_unstable();
        // Pairs as batch rows (writes at 2w, 2w+1 ≤ 2a+1 ≤ b + a never reach
        // the unread entries b + a' for a' > a).
        let mut np = 0;
        for a in 0..ns {
            let p = pairs[b + a];
            if p != NONE {
                // Every partner offset was put into the target list above.
                let row = target[..nt].binary_search(&p).unwrap_or(0);
                pairs[2 * np] = a as u32;
                pairs[2 * np + 1] = row as u32;
                np += 1;
            }
        }
        for s in source[..ns].iter_mut() {
            *s = self.order[s_lo + *s as usize];
        }
        for t in target[..nt].iter_mut() {
            *t = self.order[t_lo + *t as usize];
        }
        Ok(BatchSizes {
            bin,
            cluster,
            sources: ns,
            targets: nt,
            pairs: np,
            whole_bins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 300;

    /// Three bins (times 0, 1, 2.5) of 100 rows; clusters 0, 1 with 45 rows
    /// per bin and cluster 2 with 10. Tracks: rows of cluster 0 and 1 with
    /// even position in their bin carry track (position, cluster), shared
    /// across bins; the rest are untracked.
    fn data() -> ([f32; N], [u32; N], [u32; N]) {
        let times = [0.0f32, 1.0, 2.5];
        let mut t = [0.0; N];
        let mut labels = [0; N];
        let mut track = [UNTRACKED; N];
        // Interleave bins so the index has real sorting to do.
        for i in 0..N {
            let (bin, pos) = (i % 3, i / 3);
            t[i] = times[bin];
            labels[i] = if pos < 45 {
                0
            } else if pos < 90 {
                1
            } else {
                2
            };
            if labels[i] < 2 && pos % 2 == 0 {
                track[i] = (pos as u32) * 10 + labels[i];
            }
        }
        (t, labels, track)
    }

    fn build<'a>(
        t: &[f32],
        labels: &'a [u32],
        track: &'a [u32],
        iw: &'a mut [u32],
        fw: &'a mut [f32],
    ) -> MinibatchIndex<'a, f32> {
        MinibatchIndex::build(t, labels, track, 3, Binning::Distinct, iw, fw).unwrap()
    }

    #[test]
    fn batches_respect_bins_clusters_and_tracks() {
        let (t, labels, track) = data();
        let (mut iw, mut fw) = ([0u32; 2 * N], [0.0f32; N]);
        let index = build(&t, &labels, &track, &mut iw, &mut fw);
        assert_eq!(index.bins(), 3);
        assert_eq!(index.bin_time(2), 2.5);
        assert_eq!(index.count(1, 2), 10);
        let cfg = MinibatchConfig {
            batch: 20,
            min_points: 16,
            seed: 7,
        };
        let (mut src, mut tgt, mut pairs) = ([0u32; 20], [0u32; 20], [0u32; 40]);
        let (mut seen_pairs, mut fallbacks) = (0, 0);
        for step in 0..50 {
            let s = index
                .sample(&cfg, step, &mut src, &mut tgt, &mut pairs)
                .unwrap();
            // Cluster 2 (10 rows per bin) takes the whole-bin fallback.
            assert!(s.bin < 2 && s.cluster < 3, "{s:?}");
            assert_eq!(s.whole_bins, s.cluster == 2);
            fallbacks += s.whole_bins as usize;
            assert_eq!((s.sources, s.targets), (20, 20));
            let (src, tgt) = (&src[..20], &tgt[..20]);
            let right_cell = |i: u32, bin: usize| {
                index.bin_of(i as usize) == bin
                    && (s.whole_bins || labels[i as usize] == s.cluster as u32)
            };
            assert!(src.iter().all(|&i| right_cell(i, s.bin)));
            assert!(tgt.iter().all(|&i| right_cell(i, s.bin + 1)));
            for list in [src, tgt] {
                let mut sorted = [0u32; 20];
                sorted.copy_from_slice(list);
                sorted.sort_unstable();
                assert!(sorted.windows(2).all(|w| w[0] < w[1]), "repeated rows");
            }
            // Pairs: same track, sorted by source row, and complete: every
            // tracked source whose track exists in the next bin and cluster
            // (all of them here) has its partner in the batch.
            let pr = &pairs[..2 * s.pairs];
            for p in pr.chunks(2) {
                let (a, b) = (src[p[0] as usize] as usize, tgt[p[1] as usize] as usize);
                assert_eq!(track[a], track[b]);
                assert_ne!(track[a], UNTRACKED);
            }
            assert!(
                pr.chunks(2)
                    .map(|p| p[0])
                    .collect::<heapless::Vec<u32, 20>>()
                    .windows(2)
                    .all(|w| w[0] < w[1])
            );
            let tracked = src
                .iter()
                .filter(|&&i| track[i as usize] != UNTRACKED)
                .count();
            assert_eq!(s.pairs, tracked);
            seen_pairs += s.pairs;
            // Same (seed, step) gives the same batch.
            let (mut src2, mut tgt2, mut pairs2) = ([0u32; 20], [0u32; 20], [0u32; 40]);
            let s2 = index
                .sample(&cfg, step, &mut src2, &mut tgt2, &mut pairs2)
                .unwrap();
            assert_eq!(s, s2);
            assert_eq!(
                (&src2[..], &tgt2[..], &pairs2[..2 * s.pairs]),
                (src, tgt, pr)
            );
        }
        assert!(seen_pairs > 200, "{seen_pairs}");
        assert!(fallbacks > 0 && fallbacks < 25, "{fallbacks}");
        // Another step gives another batch.
        let (mut a, mut b) = ([0u32; 20], [0u32; 20]);
        index
            .sample_cell(&cfg, 1, 0, 0, &mut a, &mut tgt, &mut pairs)
            .unwrap();
        index
            .sample_cell(&cfg, 2, 0, 0, &mut b, &mut tgt, &mut pairs)
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn small_cluster_falls_back_to_whole_bins_and_small_pools_give_all_rows() {
        let (t, labels, track) = data();
        let (mut iw, mut fw) = ([0u32; 2 * N], [0.0f32; N]);
        let index = build(&t, &labels, &track, &mut iw, &mut fw);
        let mut cfg = MinibatchConfig::new(150);
        let (mut src, mut tgt, mut pairs) = ([0u32; 150], [0u32; 150], [0u32; 300]);
        // Cluster 2 has 10 < 16 rows per bin: whole bins of 100.
        let s = index
            .sample_cell(&cfg, 0, 1, 2, &mut src, &mut tgt, &mut pairs)
            .unwrap();
        assert!(s.whole_bins);
        assert_eq!((s.sources, s.targets), (100, 100));
        assert!(src[..100].iter().all(|&i| index.bin_of(i as usize) == 1));
        assert!(tgt[..100].iter().all(|&i| index.bin_of(i as usize) == 2));
        // Every tracked row of bin 1 continues in bin 2: 23 + 22 pairs.
        assert_eq!(s.pairs, 45);
        // With the threshold lowered the cluster is used alone, all rows.
        cfg.min_points = 10;
        let s = index
            .sample_cell(&cfg, 0, 1, 2, &mut src, &mut tgt, &mut pairs)
            .unwrap();
        assert!(!s.whole_bins);
        assert_eq!((s.sources, s.targets, s.pairs), (10, 10, 0));
        assert!(src[..10].iter().all(|&i| labels[i as usize] == 2));
    }

    #[test]
    fn bad_input_is_refused() {
        let (t, labels, track) = data();
        let (mut iw, mut fw) = ([0u32; 2 * N], [0.0f32; N]);
        let e = MinibatchIndex::build(
            &[1.0f32; N],
            &labels,
            &track,
            3,
            Binning::Distinct,
            &mut iw,
            &mut fw,
        )
        .unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BadDimension, "t"));
        let e = MinibatchIndex::build(&t, &labels, &track, 2, Binning::Distinct, &mut iw, &mut fw)
            .unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BadConfig, "labels"));
        let e = MinibatchIndex::build(
            &t,
            &labels,
            &track,
            3,
            Binning::Width(0.0),
            &mut iw,
            &mut fw,
        )
        .unwrap_err();
        assert_eq!(e.arg, "binning");
        let e = MinibatchIndex::build(
            &t,
            &labels,
            &track,
            3,
            Binning::Width(1e-6),
            &mut iw,
            &mut fw,
        )
        .unwrap_err();
        assert_eq!(e.arg, "binning");
        let mut bad = t;
        bad[4] = f32::NAN;
        let e = MinibatchIndex::build(
            &bad,
            &labels,
            &track,
            3,
            Binning::Distinct,
            &mut iw,
            &mut fw,
        )
        .unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::NonFinite, "t"));
        let e = MinibatchIndex::build(
            &t,
            &labels,
            &track,
            3,
            Binning::Distinct,
            &mut iw[..10],
            &mut fw,
        )
        .unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BufferTooSmall, "indices"));
        let index = build(&t, &labels, &track, &mut iw, &mut fw);
        let (mut src, mut tgt, mut pairs) = ([0u32; 8], [0u32; 8], [0u32; 16]);
        let cfg = MinibatchConfig::new(8);
        for (bin, cluster, arg) in [(2, 0, "bin"), (0, 3, "cluster")] {
            let e = index
                .sample_cell(&cfg, 0, bin, cluster, &mut src, &mut tgt, &mut pairs)
                .unwrap_err();
            assert_eq!(e.arg, arg);
        }
        let e = index
            .sample(&MinibatchConfig::new(0), 0, &mut src, &mut tgt, &mut pairs)
            .unwrap_err();
        assert_eq!(e.arg, "batch");
        let e = index
            .sample(&cfg, 0, &mut src, &mut tgt, &mut pairs[..15])
            .unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BufferTooSmall, "pairs"));
    }

    #[test]
    fn width_binning_keeps_empty_bins_and_reports_them() {
        // Times 0, 0.4 (bin 0), 2.1 (bin 2): bin 1 is empty.
        let t = [0.0f32, 0.4, 2.1, 2.1];
        let labels = [0u32; 4];
        let track = [UNTRACKED; 4];
        let (mut iw, mut fw) = ([0u32; 8], [0.0f32; 4]);
        let index = MinibatchIndex::build(
            &t,
            &labels,
            &track,
            1,
            Binning::Width(1.0),
            &mut iw,
            &mut fw,
        )
        .unwrap();
        assert_eq!(index.bins(), 3);
        assert_eq!((index.bin_of(1), index.bin_of(2)), (0, 2));
        assert_eq!(index.bin_time(2), 2.0);
        let cfg = MinibatchConfig::new(2);
        let (mut src, mut tgt, mut pairs) = ([0u32; 2], [0u32; 2], [0u32; 4]);
        let e = index
            .sample_cell(&cfg, 0, 0, 0, &mut src, &mut tgt, &mut pairs)
            .unwrap_err();
        assert_eq!((e.arg, e.detail), ("bin", Detail::Index(1)));
    }

    #[test]
    fn floyd_draws_distinct_sorted_values_uniformly() {
        let mut rng = Rng::stream(3, Family::Data, 0);
        let mut hits = [0u32; 10];
        let mut out = [0u32; 4];
        for _ in 0..20_000 {
            floyd(&mut rng, 10, 4, &mut out);
            assert!(out.windows(2).all(|w| w[0] < w[1]) && out[3] < 10);
            for &v in &out {
                hits[v as usize] += 1;
            }
        }
        // Each value is in a draw with probability 0.4: 8000 ± 69 (sd); 6 sd band.
        for h in hits {
            assert!((h as i32 - 8000).abs() < 420, "{hits:?}");
        }
    }
}
