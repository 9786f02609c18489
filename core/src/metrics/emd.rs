//! Exact optimal transport (earth mover's distance) between two weighted
//! point clouds: the Wasserstein-1 distance with Euclidean cost, and the
//! exact coupling for either the Euclidean or the squared Euclidean cost.
//!
//! Method: the primal network simplex on the complete bipartite graph
//! (sources `0..n`, sinks `n..n+m`, an artificial root), with strongly
//! feasible spanning trees (Cunningham 1976: no cycling), block-search
//! pricing over blocks of `√(nm)` arcs and the thread / last-successor tree
//! representation of LEMON's `NetworkSimplex` (Kovács 2015), the solver
//! behind POT's `ot.emd`. The transportation problem is uncapacitated, so
//! every arc outside the tree carries no flow: only the tree is stored
//! (`O(n + m)` memory) and the costs `c(i, j)` are computed from the points
//! when an arc is priced. Costs, potentials and flows are `f64` whatever
//! `F` is.
//!
//! Cost: one pricing sweep is `O(n m d)`; a pivot prices about one block
//! (`O(√(nm) d)`; squared distances are compared against the threshold the
//! potentials set, so no square root is taken for an arc that does not
//! enter) and updates the tree along the moved subtree (`O(n + m)` at
//! worst). The number of pivots has no useful worst-case bound; on point
//! clouds it grows a little faster than `n + m` (a factor of tens at a few
//! thousand points), so a solve is roughly `O((n + m) √(nm) d)` times that
//! factor. Sizes are capped at
//! [`EMD_MAX_POINTS`] per side and pivots at [`emd_max_pivots`].

use super::check_cloud;
use crate::error::{Detail, Error, ErrorKind, Result, check_finite, check_len};
use crate::float::Float;

/// Largest number of points per side [`emd`] accepts: the pivots grow a
/// little faster than `n + m` and each prices `√(nm)` arcs, so larger
/// problems take too long; subsample, or use the sliced or energy
/// distances.
pub const EMD_MAX_POINTS: usize = 5_000;

/// How far the sums of the weights may be from one (they are then
/// normalised to one in `f64`): covers `f32` rounding of the weights.
pub const EMD_WEIGHT_SUM_TOLERANCE: f64 = 1e-5;

/// Pricing tolerance, as a fraction of the largest arc cost: an arc enters
/// the tree only if its reduced cost is below `−EMD_PRICE_TOLERANCE · c_max`.
/// The returned cost is optimal to within this times `c_max`.
pub const EMD_PRICE_TOLERANCE: f64 = 1e-11;

/// Largest total mass the artificial arcs may keep at the end (rounding of
/// the normalised weights); more is reported as a numerical failure.
const ARTIFICIAL_MASS_TOLERANCE: f64 = 1e-9;

/// The ground cost `c(x, y)` of the transport problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroundCost {
    /// `‖x − y‖`: the optimal cost is the Wasserstein-1 distance.
    Euclidean,
    /// `‖x − y‖²`: the optimal cost is `W₂²`, the coupling the one of
    /// displacement (McCann) interpolation.
    SquaredEuclidean,
}

/// Workspace of [`emd`]: `floats` `f64`s and `indices` `u32`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmdLen {
    pub floats: usize,
    pub indices: usize,
}

/// Workspace for clouds of `n` and `m` points: two `f64`s and six `u32`s
/// per node of the graph (`n + m + 1` nodes).
pub fn emd_workspace_len(n: usize, m: usize) -> EmdLen {
    let nodes = n.saturating_add(m).saturating_add(1);
    EmdLen {
        floats: nodes.saturating_mul(2),
        indices: nodes.saturating_mul(6),
    }
}

/// Most pivots [`emd`] makes for clouds of `n` and `m` points before it
/// gives up with [`ErrorKind::NotConverged`]: `1000 (n + m)`.
pub fn emd_max_pivots(n: usize, m: usize) -> usize {
    n.saturating_add(m).saturating_mul(1000)
}

/// One entry of an optimal coupling: `mass` moves from source point
/// `source` to target point `target`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlanEntry {
    pub source: u32,
    pub target: u32,
    pub mass: f64,
}

/// What [`emd`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Emd {
    /// `Σ π_ij c(x_i, y_j)` of the optimal coupling `π`.
    pub cost: f64,
    /// Simplex pivots made.
    pub pivots: usize,
    /// Entries written to the plan (those with positive mass; at most
    /// `n + m − 1`).
    pub plan_len: usize,
}

/// Wasserstein-1 distance `min_π Σ π_ij ‖x_i − y_j‖` between the clouds
/// `x` (`n×d`, weights `a`) and `y` (`m×d`, weights `b`); `None` weights
/// are uniform. See [`emd`] for the method, the limits and the workspace.
pub fn wasserstein1<F: Float>(
    x: &[F],
    a: Option<&[F]>,
    y: &[F],
    b: Option<&[F]>,
    d: usize,
    floats: &mut [f64],
    indices: &mut [u32],
) -> Result<F> {
    let out = emd(x, a, y, b, d, GroundCost::Euclidean, None, floats, indices)?;
    Ok(F::from_f64(out.cost))
}

/// Exact optimal transport between `x` (`n×d`, weights `a`, length `n`)
/// and `y` (`m×d`, weights `b`, length `m`) for the ground cost `ground`:
/// the optimal cost and, if `plan` is given (length at least `n + m − 1`),
/// the coupling's positive entries (a vertex of the transport polytope, so
/// at most `n + m − 1` of them), sorted by nothing in particular.
///
/// Weights: non-negative, each summing to one within
/// [`EMD_WEIGHT_SUM_TOLERANCE`] (normalised in `f64`); `None` = uniform.
/// Workspace: [`emd_workspace_len`]`(n, m)`. Errors: bad or non-finite
/// clouds or weights, more than [`EMD_MAX_POINTS`] points on a side (the
/// argument at fault is named), short buffers, more than
/// [`emd_max_pivots`] pivots ([`ErrorKind::NotConverged`]).
#[allow(clippy::too_many_arguments)]
pub fn emd<F: Float>(
    x: &[F],
    a: Option<&[F]>,
    y: &[F],
    b: Option<&[F]>,
    d: usize,
    ground: GroundCost,
    plan: Option<&mut [PlanEntry]>,
    floats: &mut [f64],
    indices: &mut [u32],
) -> Result<Emd> {
    let n = check_cloud(x, d, "x")?;
    let m = check_cloud(y, d, "y")?;
    for (count, arg) in [(n, "x"), (m, "y")] {
        if count > EMD_MAX_POINTS {
            return Err(Error::bad_dim(
                arg,
                "more points than EMD_MAX_POINTS allows for exact transport",
            )
            .with(Detail::Len {
                expected: EMD_MAX_POINTS,
                got: count,
            }));
        }
    }
    let a = Weights::new(a, n, "a")?;
    let b = Weights::new(b, m, "b")?;
    let need = emd_workspace_len(n, m);
    if floats.len() < need.floats {
        return Err(Error::too_small("floats", need.floats, floats.len()));
    }
    if indices.len() < need.indices {
        return Err(Error::too_small("indices", need.indices, indices.len()));
    }
    if let Some(p) = &plan
        && p.len() < n + m - 1
    {
        return Err(Error::too_small("plan", n + m - 1, p.len()));
    }
    let mut costs = Costs {
        x,
        y,
        d,
        m,
        ground,
        scale: 1.0,
        inv_scale: 1.0,
    };
    let mut c_max = 0.0f64;
    for i in 0..n {
        for j in 0..m {
            c_max = c_max.max(costs.raw(i, j));
        }
    }
    if !c_max.is_finite() {
        return Err(Error::new(
            ErrorKind::NumericalFailure,
            "x",
            "a distance between the clouds overflows",
        ));
    }
    if c_max > 0.0 {
        costs.scale = c_max;
        costs.inv_scale = 1.0 / c_max;
    }
    let mut simplex = Simplex::new(n, m, &a, &b, floats, indices);
    let tolerance = EMD_PRICE_TOLERANCE;
    // LEMON's initial pivots: the cheapest arc into every sink.
    for j in 0..m {
        let mut best = (0, f64::INFINITY);
        for i in 0..n {
            let c = costs.scaled(i, j);
            if c < best.1 {
                best = (i, c);
            }
        }
        let (i, c) = best;
        if simplex.reduced_cost(i, j, c) < -tolerance && !simplex.in_tree(i, j) {
            simplex.pivot(i, j, c)?;
        }
    }
    let max_pivots = emd_max_pivots(n, m);
    let block = (libm::sqrt((n * m) as f64) as usize).max(10);
    let mut next = (0usize, 0usize);
    while let Some((i, j, c)) = simplex.entering(&costs, block, tolerance, &mut next) {
        if simplex.pivots >= max_pivots {
            return Err(Error::new(
                ErrorKind::NotConverged,
                "emd",
                "network simplex reached its pivot limit",
            )
            .with(Detail::Len {
                expected: max_pivots,
                got: simplex.pivots,
            }));
        }
        simplex.pivot(i, j, c)?;
    }
    simplex.finish(&costs, plan)
}

/// Weights of one side, normalised in `f64`.
struct Weights<'a, F> {
    w: Option<&'a [F]>,
    inv_sum: f64,
}

impl<'a, F: Float> Weights<'a, F> {
    fn new(w: Option<&'a [F]>, count: usize, arg: &'static str) -> Result<Self> {
        let Some(w) = w else {
            return Ok(Weights {
                w: None,
                inv_sum: 1.0 / count as f64,
            });
        };
        check_len(w, count, arg)?;
        check_finite(w, arg)?;
        if let Some(i) = w.iter().position(|&v| v < F::ZERO) {
            return Err(Error::bad_config(arg, "negative weight").with(Detail::Index(i)));
        }
        let sum: f64 = w.iter().map(|v| v.to_f64()).sum();
        if (sum - 1.0).abs() > EMD_WEIGHT_SUM_TOLERANCE {
            return Err(
                Error::bad_config(arg, "weights do not sum to one").with(Detail::Value(sum))
            );
        }
        Ok(Weights {
            w: Some(w),
            inv_sum: 1.0 / sum,
        })
    }

    fn get(&self, i: usize) -> f64 {
        match self.w {
            None => self.inv_sum,
            Some(w) => w[i].to_f64() * self.inv_sum,
        }
    }
}

/// Arc costs computed from the points, in `f64`; `scaled` divides by the
/// largest cost so the simplex works on costs in `[0, 1]`.
struct Costs<'a, F> {
    x: &'a [F],
    y: &'a [F],
    d: usize,
    m: usize,
    ground: GroundCost,
    /// The largest cost `c_max` (1 if all costs are zero) and its inverse.
    scale: f64,
    inv_scale: f64,
}

impl<F: Float> Costs<'_, F> {
    #[inline]
    fn raw(&self, i: usize, j: usize) -> f64 {
        let xi = &self.x[i * self.d..(i + 1) * self.d];
        let yj = &self.y[j * self.d..(j + 1) * self.d];
        let s = squared_distance(xi, yj);
        match self.ground {
            GroundCost::Euclidean => libm::sqrt(s),
            GroundCost::SquaredEuclidean => s,
        }
    }

    #[inline]
    fn scaled(&self, i: usize, j: usize) -> f64 {
        self.raw(i, j) * self.inv_scale
    }
}

/// `‖p − q‖²` in `f64`, with four partial sums (independent dependency
/// chains: the pricing loop is latency-bound otherwise).
#[inline]
fn squared_distance<F: Float>(p: &[F], q: &[F]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (pc, qc) = (p.chunks_exact(4), q.chunks_exact(4));
    let (pr, qr) = (pc.remainder(), qc.remainder());
    for (a, b) in pc.zip(qc) {
        for k in 0..4 {
            let e = a[k].to_f64() - b[k].to_f64();
            acc[k] += e * e;
        }
    }
    for (k, (&a, &b)) in pr.iter().zip(qr).enumerate() {
        let e = a.to_f64() - b.to_f64();
        acc[k] += e * e;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// "No node": the root's parent.
const NONE: u32 = u32::MAX;

/// The spanning tree of the network simplex. Nodes: sources `0..n`, sinks
/// `n..n+m`, the root `n+m`. The tree arc of node `u` (to `parent[u]`) is
/// the real arc between a source and a sink, or an artificial arc to the
/// root (source → root at cost 0, root → sink at the artificial cost); so a
/// source's tree arc always points up (towards its parent) and a sink's
/// down. `flow[u]` is the flow on `u`'s tree arc; arcs outside the tree
/// carry none. `pi` are LEMON's potentials: the reduced cost of arc
/// `s → t` is `c + pi[s] − pi[t]`, zero on tree arcs. `thread` is the
/// preorder (a cycle through every node), `rev_thread` its inverse,
/// `succ_num[u]` the size of `u`'s subtree and `last_succ[u]` its last node
/// in the preorder.
struct Simplex<'w> {
    n: usize,
    root: usize,
    parent: &'w mut [u32],
    thread: &'w mut [u32],
    rev_thread: &'w mut [u32],
    succ_num: &'w mut [u32],
    last_succ: &'w mut [u32],
    dirty: &'w mut [u32],
    pi: &'w mut [f64],
    flow: &'w mut [f64],
    pivots: usize,
}

impl<'w> Simplex<'w> {
    /// The initial strongly feasible tree: every node hangs from the root
    /// by its artificial arc, which carries its weight.
    fn new<F: Float>(
        n: usize,
        m: usize,
        a: &Weights<'_, F>,
        b: &Weights<'_, F>,
        floats: &'w mut [f64],
        indices: &'w mut [u32],
    ) -> Self {
        let nodes = n + m + 1;
        let root = n + m;
        let (pi, rest) = floats.split_at_mut(nodes);
        let flow = &mut rest[..nodes];
        let (parent, rest) = indices.split_at_mut(nodes);
        let (thread, rest) = rest.split_at_mut(nodes);
        let (rev_thread, rest) = rest.split_at_mut(nodes);
        let (succ_num, rest) = rest.split_at_mut(nodes);
        let (last_succ, rest) = rest.split_at_mut(nodes);
        let dirty = &mut rest[..nodes];
        // Costs are scaled to [0, 1]: LEMON's artificial cost (c_max + 1)·N.
        let artificial = 2.0 * (n + m) as f64;
        parent[root] = NONE;
        thread[root] = 0;
        rev_thread[0] = root as u32;
        succ_num[root] = nodes as u32;
        last_succ[root] = (root - 1) as u32;
        pi[root] = 0.0;
        flow[root] = 0.0;
        for u in 0..root {
            parent[u] = root as u32;
            thread[u] = (u + 1) as u32;
            rev_thread[u + 1] = u as u32;
            succ_num[u] = 1;
            last_succ[u] = u as u32;
            if u < n {
                pi[u] = 0.0;
                flow[u] = a.get(u);
            } else {
                pi[u] = artificial;
                flow[u] = b.get(u - n);
            }
        }
        Simplex {
            n,
            root,
            parent,
            thread,
            rev_thread,
            succ_num,
            last_succ,
            dirty,
            pi,
            flow,
            pivots: 0,
        }
    }

    /// +1 if `u`'s tree arc points up (a source), −1 if down (a sink).
    #[inline]
    fn dir(&self, u: usize) -> f64 {
        if u < self.n { 1.0 } else { -1.0 }
    }

    #[inline]
    fn reduced_cost(&self, i: usize, j: usize, c: f64) -> f64 {
        c + self.pi[i] - self.pi[self.n + j]
    }

    /// Whether the arc `i → n + j` is in the tree.
    #[inline]
    fn in_tree(&self, i: usize, j: usize) -> bool {
        let t = self.n + j;
        self.parent[i] as usize == t || self.parent[t] as usize == i
    }

    /// Block search: scans arcs from `next` in blocks of `block` and returns
    /// the most negative reduced cost of the first block that has one
    /// below `−tolerance`, or `None` after a full sweep without one.
    fn entering<F: Float>(
        &self,
        costs: &Costs<'_, F>,
        block: usize,
        tolerance: f64,
        next: &mut (usize, usize),
    ) -> Option<(usize, usize, f64)> {
        let (n, m) = (self.n, costs.m);
        let (mut i, mut j) = *next;
        let mut best: Option<(usize, usize)> = None;
        let mut min = -tolerance;
        let mut scanned = 0;
        let mut count = block;
        while scanned < n * m {
            let end = m.min(j + count);
            if let Some(jb) = self.price_row(costs, i, j, end, &mut min) {
                best = Some((i, jb));
            }
            scanned += end - j;
            count -= end - j;
            j = end;
            if j == m {
                j = 0;
                i = if i + 1 == n { 0 } else { i + 1 };
            }
            if count == 0 {
                if best.is_some() {
                    break;
                }
                count = block;
            }
        }
        *next = (i, j);
        best.map(|(i, j)| (i, j, costs.scaled(i, j)))
    }

    /// Prices the arcs `i → n + j` for `j` in `j0..j1`: the sink with the
    /// most negative reduced cost below `min` (which it lowers), if any.
    /// Compares squared distances against the threshold the potentials
    /// set, so no square root is taken for an arc that does not qualify.
    #[inline]
    fn price_row<F: Float>(
        &self,
        costs: &Costs<'_, F>,
        i: usize,
        j0: usize,
        j1: usize,
        min: &mut f64,
    ) -> Option<usize> {
        let d = costs.d;
        let xi = &costs.x[i * d..(i + 1) * d];
        let pi_i = self.pi[i];
        let pis = &self.pi[self.n + j0..self.n + j1];
        let ys = &costs.y[j0 * d..j1 * d];
        let scale = costs.scale;
        let mut best = None;
        for (k, (yj, &pi_j)) in ys.chunks_exact(d).zip(pis).enumerate() {
            // rc < min  ⟺  c_scaled < t.
            let t = *min - pi_i + pi_j;
            if t <= 0.0 {
                continue;
            }
            let bound = match costs.ground {
                GroundCost::Euclidean => (t * scale) * (t * scale),
                GroundCost::SquaredEuclidean => t * scale,
            };
            let sq = squared_distance(xi, yj);
            if sq < bound && !self.in_tree(i, j0 + k) {
                let rc = self.reduced_cost(i, j0 + k, costs.scaled(i, j0 + k));
                if rc < *min {
                    *min = rc;
                    best = Some(j0 + k);
                }
            }
        }
        best
    }

    /// One pivot on the entering arc `i → n + j` of (scaled) cost `c`.
    fn pivot(&mut self, i: usize, j: usize, c: f64) -> Result<()> {
        self.pivots += 1;
        let (source, target) = (i, self.n + j);
        let join = self.join(source, target);
        // Leaving arc: the blocking arc last met on the cycle (strongly
        // feasible rule), flow decreasing on up arcs of the source side and
        // on down arcs of the target side.
        let mut delta = f64::INFINITY;
        let mut u_out = None;
        let mut u = source;
        while u != join {
            if u < self.n && self.flow[u] < delta {
                delta = self.flow[u];
                u_out = Some((u, false));
            }
            u = self.parent[u] as usize;
        }
        u = target;
        while u != join {
            if u >= self.n && self.flow[u] <= delta {
                delta = self.flow[u];
                u_out = Some((u, true));
            }
            u = self.parent[u] as usize;
        }
        let Some((u_out, on_target_side)) = u_out else {
            return Err(Error::new(
                ErrorKind::Internal,
                "emd",
                "network simplex found an unbounded cycle",
            ));
        };
        let (u_in, v_in) = if on_target_side {
            (target, source)
        } else {
            (source, target)
        };
        let mut in_flow = 0.0;
        if delta > 0.0 {
            in_flow = delta;
            let mut u = source;
            while u != join {
                self.flow[u] -= self.dir(u) * delta;
                u = self.parent[u] as usize;
            }
            u = target;
            while u != join {
                self.flow[u] += self.dir(u) * delta;
                u = self.parent[u] as usize;
            }
        }
        self.update_tree(u_in, v_in, u_out, join, in_flow);
        // Potentials of the moved subtree: the entering arc's reduced cost
        // becomes zero.
        let sigma = self.pi[v_in] - self.pi[u_in] - self.dir(u_in) * c;
        let end = self.thread[self.last_succ[u_in] as usize] as usize;
        let mut u = u_in;
        while u != end {
            self.pi[u] += sigma;
            u = self.thread[u] as usize;
        }
        Ok(())
    }

    /// The lowest common ancestor of `u` and `v`.
    fn join(&self, mut u: usize, mut v: usize) -> usize {
        while u != v {
            if self.succ_num[u] < self.succ_num[v] {
                u = self.parent[u] as usize;
            } else {
                v = self.parent[v] as usize;
            }
        }
        u
    }

    /// Replaces `u_out`'s tree arc by the entering arc `u_in — v_in`
    /// (carrying `in_flow`): reverses the stem from `u_in` to `u_out` and
    /// re-hangs it under `v_in` (LEMON's `updateTreeStructure`).
    fn update_tree(&mut self, u_in: usize, v_in: usize, u_out: usize, join: usize, in_flow: f64) {
        let old_rev_thread = self.rev_thread[u_out] as usize;
        let old_succ_num = self.succ_num[u_out];
        let old_last_succ = self.last_succ[u_out] as usize;
        let v_out = self.parent[u_out] as usize;
        if u_in == u_out {
            self.parent[u_in] = v_in as u32;
            self.flow[u_in] = in_flow;
            if self.thread[v_in] as usize != u_out {
                let after = self.thread[old_last_succ];
                self.thread[old_rev_thread] = after;
                self.rev_thread[after as usize] = old_rev_thread as u32;
                let after = self.thread[v_in];
                self.thread[v_in] = u_out as u32;
                self.rev_thread[u_out] = v_in as u32;
                self.thread[old_last_succ] = after;
                self.rev_thread[after as usize] = old_last_succ as u32;
            }
        } else {
            // When old_rev_thread is v_in, join and v_out coincide.
            let thread_continue = if old_rev_thread == v_in {
                self.thread[old_last_succ]
            } else {
                self.thread[v_in]
            } as usize;
            let mut stem = u_in;
            let mut par_stem = v_in;
            let mut last = self.last_succ[u_in] as usize;
            let mut after = self.thread[last] as usize;
            self.thread[v_in] = u_in as u32;
            let mut dirty_len = 0;
            self.dirty[dirty_len] = v_in as u32;
            dirty_len += 1;
            while stem != u_out {
                let next_stem = self.parent[stem] as usize;
                self.thread[last] = next_stem as u32;
                self.dirty[dirty_len] = last as u32;
                dirty_len += 1;
                let before = self.rev_thread[stem] as usize;
                self.thread[before] = after as u32;
                self.rev_thread[after] = before as u32;
                self.parent[stem] = par_stem as u32;
                par_stem = stem;
                stem = next_stem;
                last = if self.last_succ[stem] == self.last_succ[par_stem] {
                    self.rev_thread[par_stem]
                } else {
                    self.last_succ[stem]
                } as usize;
                after = self.thread[last] as usize;
            }
            self.parent[u_out] = par_stem as u32;
            self.thread[last] = thread_continue as u32;
            self.rev_thread[thread_continue] = last as u32;
            self.last_succ[u_out] = last as u32;
            if old_rev_thread != v_in {
                self.thread[old_rev_thread] = after as u32;
                self.rev_thread[after] = old_rev_thread as u32;
            }
            for k in 0..dirty_len {
                let u = self.dirty[k] as usize;
                self.rev_thread[self.thread[u] as usize] = u as u32;
            }
            // Tree arcs, flows, subtree sizes and last successors along the
            // reversed stem, from u_out down to u_in.
            let mut tmp_sc = 0u32;
            let tmp_ls = self.last_succ[u_out];
            let mut u = u_out;
            while u != u_in {
                let p = self.parent[u] as usize;
                self.flow[u] = self.flow[p];
                tmp_sc = tmp_sc
                    .wrapping_add(self.succ_num[u])
                    .wrapping_sub(self.succ_num[p]);
                self.succ_num[u] = tmp_sc;
                self.last_succ[p] = tmp_ls;
                u = p;
            }
            self.flow[u_in] = in_flow;
            self.succ_num[u_in] = old_succ_num;
        }
        let up_limit_out = if self.last_succ[join] as usize == v_in {
            join as u32
        } else {
            NONE
        };
        let last_succ_out = self.last_succ[u_out];
        let mut u = v_in as u32;
        while u != NONE && self.last_succ[u as usize] as usize == v_in {
            self.last_succ[u as usize] = last_succ_out;
            u = self.parent[u as usize];
        }
        let new_last = if join != old_rev_thread && v_in != old_rev_thread {
            Some(old_rev_thread as u32)
        } else if last_succ_out as usize != old_last_succ {
            Some(last_succ_out)
        } else {
            None
        };
        if let Some(new_last) = new_last {
            let mut u = v_out as u32;
            while u != up_limit_out && self.last_succ[u as usize] as usize == old_last_succ {
                self.last_succ[u as usize] = new_last;
                u = self.parent[u as usize];
            }
        }
        let mut u = v_in;
        while u != join {
            self.succ_num[u] += old_succ_num;
            u = self.parent[u] as usize;
        }
        let mut u = v_out;
        while u != join {
            self.succ_num[u] -= old_succ_num;
            u = self.parent[u] as usize;
        }
    }

    /// The cost of the tree's flow and its coupling; checks that the
    /// artificial arcs hold (almost) nothing.
    fn finish<F: Float>(
        &self,
        costs: &Costs<'_, F>,
        mut plan: Option<&mut [PlanEntry]>,
    ) -> Result<Emd> {
        let mut cost = 0.0f64;
        let mut artificial = 0.0f64;
        let mut plan_len = 0;
        for u in 0..self.root {
            let p = self.parent[u] as usize;
            if p == self.root {
                artificial += self.flow[u].abs();
                continue;
            }
            let mass = self.flow[u];
            if mass <= 0.0 {
                continue;
            }
            let (i, j) = if u < self.n {
                (u, p - self.n)
            } else {
                (p, u - self.n)
            };
            cost += mass * costs.raw(i, j);
            if let Some(plan) = plan.as_deref_mut() {
                plan[plan_len] = PlanEntry {
                    source: i as u32,
                    target: j as u32,
                    mass,
                };
            }
            plan_len += 1;
        }
        if artificial > ARTIFICIAL_MASS_TOLERANCE {
            return Err(Error::new(
                ErrorKind::NumericalFailure,
                "emd",
                "mass left on the artificial arcs: no feasible coupling found",
            )
            .with(Detail::Value(artificial)));
        }
        Ok(Emd {
            cost,
            pivots: self.pivots,
            plan_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn solve(x: &[f64], a: Option<&[f64]>, y: &[f64], b: Option<&[f64]>, d: usize) -> Emd {
        let (n, m) = (x.len() / d, y.len() / d);
        let len = emd_workspace_len(n, m);
        let mut floats = vec![0.0; len.floats];
        let mut indices = vec![0u32; len.indices];
        let mut plan = vec![PlanEntry::default(); n + m - 1];
        let out = emd(
            x,
            a,
            y,
            b,
            d,
            GroundCost::Euclidean,
            Some(&mut plan),
            &mut floats,
            &mut indices,
        )
        .unwrap();
        // The plan's marginals are the weights and its cost the optimum.
        let mut rows = vec![0.0; n];
        let mut cols = vec![0.0; m];
        let mut cost = 0.0;
        for e in &plan[..out.plan_len] {
            let (i, j) = (e.source as usize, e.target as usize);
            rows[i] += e.mass;
            cols[j] += e.mass;
            let dist: f64 = (0..d).map(|k| (x[i * d + k] - y[j * d + k]).powi(2)).sum();
            cost += e.mass * dist.sqrt();
        }
        for (i, r) in rows.iter().enumerate() {
            let want = a.map_or(1.0 / n as f64, |a| a[i]);
            assert!((r - want).abs() < 1e-12, "row {i}: {r} vs {want}");
        }
        for (j, c) in cols.iter().enumerate() {
            let want = b.map_or(1.0 / m as f64, |b| b[j]);
            assert!((c - want).abs() < 1e-12, "col {j}: {c} vs {want}");
        }
        assert!((cost - out.cost).abs() < 1e-12);
        out
    }

    #[test]
    fn a_permutation_costs_the_matching() {
        // Points on a line, matched in order.
        let x = [0.0, 1.0, 2.0, 3.0];
        let y = [3.5, 0.5, 2.5, 1.5];
        let out = solve(&x, None, &y, None, 1);
        assert!((out.cost - 0.5).abs() < 1e-12, "{}", out.cost);
        assert_eq!(out.plan_len, 4);
    }

    #[test]
    fn identical_clouds_cost_nothing_and_one_point_moves_whole() {
        let x = [0.0, 0.0, 1.0, 2.0, -1.0, 3.0];
        assert!(solve(&x, None, &x, None, 2).cost.abs() < 1e-15);
        let y = [4.0, 6.0];
        let w = [0.2, 0.3, 0.5];
        let out = solve(&x, Some(&w), &y, None, 2);
        let want = 0.2 * 52f64.sqrt() + 0.3 * 25f64.sqrt() + 0.5 * 34f64.sqrt();
        assert!((out.cost - want).abs() < 1e-12);
    }

    #[test]
    fn bad_input_names_the_argument() {
        let len = emd_workspace_len(2, 2);
        let (mut f, mut i) = (vec![0.0; len.floats], vec![0u32; len.indices]);
        let x = [0.0, 1.0];
        let e = wasserstein1(&x, Some(&[0.5, 0.6]), &x, None, 1, &mut f, &mut i).unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BadConfig, "a"));
        let e = wasserstein1(&x, None, &x, Some(&[1.5, -0.5]), 1, &mut f, &mut i).unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BadConfig, "b"));
        let e = wasserstein1(&x, None, &[0.0, f64::NAN], None, 1, &mut f, &mut i).unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::NonFinite, "y"));
        let e = wasserstein1(&x, None, &x, None, 1, &mut f[..3], &mut i).unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BufferTooSmall, "floats"));
        let big = vec![0.0f64; EMD_MAX_POINTS + 1];
        let e = wasserstein1(&big, None, &x, None, 1, &mut f, &mut i).unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BadDimension, "x"));
    }
}
