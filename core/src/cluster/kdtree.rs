//! A k-d tree over the rows of a point array, stored in caller memory as a
//! permutation of the rows and one split dimension per internal node: the
//! node covering `perm[lo..hi]` (more than [`LEAF`] points) splits at
//! `mid = (lo + hi) / 2` on dimension `split[mid]`, with the rows left of
//! `mid` not above and the rows right of it not below the median row.

use crate::float::Float;
use crate::linalg::squared_distance;
use core::cmp::Ordering;

/// Largest node scanned point by point.
const LEAF: usize = 12;

/// Largest point dimension of a tree.
pub(super) const MAX_DIM: usize = 128;

/// Total order on `(squared distance, row)`: neighbours are reported in this
/// order, so ties break by row number and results do not depend on the
/// traversal.
#[inline]
fn before<F: Float>(da: F, ia: u32, db: F, ib: u32) -> bool {
    da < db || (da == db && ia < ib)
}

/// The tree. `pts` is `n × dim` row-major and finite.
pub(super) struct KdTree<'a, F> {
    pts: &'a [F],
    dim: usize,
    perm: &'a [u32],
    split: &'a [u32],
}

impl<'a, F: Float> KdTree<'a, F> {
    /// Builds the tree in `perm` and `split` (each `n` long).
    pub fn build(pts: &'a [F], dim: usize, perm: &'a mut [u32], split: &'a mut [u32]) -> Self {
        for (i, p) in perm.iter_mut().enumerate() {
            *p = i as u32;
        }
        let n = perm.len();
        build_node(pts, dim, perm, split, 0, n);
        KdTree {
            pts,
            dim,
            perm,
            split,
        }
    }

    /// The `idx.len()` nearest rows to `q` (a `dim`-vector), by squared
    /// Euclidean distance, ascending in `(d2, row)` order, into `idx`/`d2`.
    /// Needs `idx.len() ≤ n`.
    /// Needs `idx.len() ≤ n` and `dim ≤` [`MAX_DIM`].
    pub fn nearest(&self, q: &[F], idx: &mut [u32], d2: &mut [F]) {
        let mut heap = Heap { idx, d2, len: 0 };
        let mut offsets = [F::ZERO; MAX_DIM];
        self.search(q, 0, self.perm.len(), &mut heap, F::ZERO, &mut offsets);
        heap.sort();
    }

    fn dist2(&self, q: &[F], row: u32) -> F {
        squared_distance(q, &self.pts[row as usize * self.dim..][..self.dim])
    }

    /// Squared distance to `row`, or `None` as soon as it exceeds the
    /// heap's worst entry (a full heap would reject it anyway). Sums in
    /// [`squared_distance`]'s order, so an accepted distance has its bits.
    #[inline]
    fn dist2_within(&self, q: &[F], row: u32, heap: &Heap<'_, F>) -> Option<F> {
        let bound = if heap.full() {
            heap.worst()
        } else {
            F::INFINITY
        };
        let p = &self.pts[row as usize * self.dim..][..self.dim];
        let mut s = F::ZERO;
        for (a, b) in q.chunks(4).zip(p.chunks(4)) {
            for (x, y) in a.iter().zip(b) {
                let t = *x - *y;
                s += t * t;
            }
            if s > bound {
                return None;
            }
        }
        Some(s)
    }

    /// Visits the node `perm[lo..hi]`, whose cell is at squared distance at
    /// least `rd = Σ offsets²` from `q` (`offsets[s]`: distance from `q` to
    /// the cell along dimension `s`, Arya & Mount's incremental distance).
    fn search(
        &self,
        q: &[F],
        lo: usize,
        hi: usize,
        heap: &mut Heap<'_, F>,
        rd: F,
        offsets: &mut [F; MAX_DIM],
    ) {
        if hi - lo <= LEAF {
            for &row in &self.perm[lo..hi] {
                if let Some(d) = self.dist2_within(q, row, heap) {
                    heap.offer(d, row);
                }
            }
            return;
        }
        let mid = (lo + hi) / 2;
        let s = self.split[mid] as usize;
        let pivot = self.perm[mid];
        heap.offer(self.dist2(q, pivot), pivot);
        let diff = q[s] - self.pts[pivot as usize * self.dim + s];
        let (near, far) = if diff < F::ZERO {
            ((lo, mid), (mid + 1, hi))
        } else {
            ((mid + 1, hi), (lo, mid))
        };
        self.search(q, near.0, near.1, heap, rd, offsets);
        let old = offsets[s];
        let far_rd = rd - old * old + diff * diff;
        if !heap.full() || far_rd <= heap.worst() {
            offsets[s] = diff;
            self.search(q, far.0, far.1, heap, far_rd, offsets);
            offsets[s] = old;
        }
    }
}

fn build_node<F: Float>(
    pts: &[F],
    dim: usize,
    perm: &mut [u32],
    split: &mut [u32],
    lo: usize,
    hi: usize,
) {
    if hi - lo <= LEAF {
        return;
    }
    // Split on the dimension of largest spread.
    let mut best = (0, F::NEG_INFINITY);
    for s in 0..dim {
        let (mut min, mut max) = (F::INFINITY, F::NEG_INFINITY);
        for &row in &perm[lo..hi] {
            let v = pts[row as usize * dim + s];
            min = min.min(v);
            max = max.max(v);
        }
        if max - min > best.1 {
            best = (s, max - min);
        }
    }
    let s = best.0;
    let mid = (lo + hi) / 2;
    perm[lo..hi].select_nth_unstable_by(mid - lo, |&a, &b| {
        let (va, vb) = (pts[a as usize * dim + s], pts[b as usize * dim + s]);
        va.partial_cmp(&vb)
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(&b))
    });
    split[mid] = s as u32;
    build_node(pts, dim, perm, split, lo, mid);
    build_node(pts, dim, perm, split, mid + 1, hi);
}

/// Bounded max-heap of `(d2, row)` living in the caller's output slices.
struct Heap<'b, F> {
    idx: &'b mut [u32],
    d2: &'b mut [F],
    len: usize,
}

impl<F: Float> Heap<'_, F> {
    fn full(&self) -> bool {
        self.len == self.idx.len()
    }

    fn worst(&self) -> F {
        self.d2[0]
    }

    fn above(&self, a: usize, b: usize) -> bool {
        before(self.d2[b], self.idx[b], self.d2[a], self.idx[a])
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.idx.swap(a, b);
        self.d2.swap(a, b);
    }

    fn offer(&mut self, d: F, row: u32) {
        if !self.full() {
            let mut c = self.len;
            self.idx[c] = row;
            self.d2[c] = d;
            self.len += 1;
            while c > 0 {
                let parent = (c - 1) / 2;
                if !self.above(c, parent) {
                    break;
                }
                self.swap(c, parent);
                c = parent;
            }
        } else if self.len > 0 && before(d, row, self.d2[0], self.idx[0]) {
            self.idx[0] = row;
            self.d2[0] = d;
            self.sift_down(0, self.len);
        }
    }

    fn sift_down(&mut self, mut c: usize, len: usize) {
        loop {
            let (l, r) = (2 * c + 1, 2 * c + 2);
            let mut top = c;
            if l < len && self.above(l, top) {
                top = l;
            }
            if r < len && self.above(r, top) {
                top = r;
            }
            if top == c {
                return;
            }
            self.swap(c, top);
            c = top;
        }
    }

    /// Heap sort: ascending `(d2, row)`.
    fn sort(&mut self) {
        for end in (1..self.len).rev() {
            self.swap(0, end);
            self.sift_down(0, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Family, Rng};

    #[test]
    fn nearest_matches_brute_force_including_ties() {
        let (n, dim, k) = (300, 3, 9);
        let mut pts = [0.0f64; 300 * 3];
        Rng::stream(3, Family::Data, 0).fill_normal(&mut pts);
        // Rounded coordinates create many exact distance ties.
        for x in pts.iter_mut() {
            *x = (*x * 2.0).round();
        }
        let (mut perm, mut split) = ([0u32; 300], [0u32; 300]);
        let tree = KdTree::build(&pts, dim, &mut perm, &mut split);
        for qi in 0..n {
            let q = &pts[qi * dim..][..dim];
            let (mut idx, mut d2) = ([0u32; 9], [0.0f64; 9]);
            tree.nearest(q, &mut idx, &mut d2);
            // Brute force in (d2, row) order.
            let mut all: [(f64, u32); 300] = core::array::from_fn(|j| {
                let p = &pts[j * dim..][..dim];
                (
                    q.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum(),
                    j as u32,
                )
            });
            all.sort_by(|a, b| a.partial_cmp(b).unwrap());
            for r in 0..k {
                assert_eq!((d2[r], idx[r]), all[r], "query {qi} rank {r}");
            }
        }
    }
}
