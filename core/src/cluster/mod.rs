//! Time-weighted spectral clustering of snapshot observations.
//!
//! Points `z_i` (`n × d`, row-major) observed at times `t_i` are grouped by
//! the affinity
//!
//! ```text
//! W_ij = exp(−‖z_i − z_j‖² / (2 σ_z²)) · exp(−(t_i − t_j)² / (2 σ_t²))
//! ```
//!
//! (with self-tuning scales, `σ_z²` becomes `σ_i σ_j`; `W_ii = 1`), the
//! top-`k` eigenvectors of the normalised affinity `D^{-1/2} W D^{-1/2}`
//! (`D = diag(W 1)`), their rows scaled to unit length (Ng–Jordan–Weiss), and
//! k-means++ with seeded restarts on those rows, keeping the lowest inertia.
//!
//! Two affinity modes:
//! - [`Mode::Dense`]: all `n²` pairs; `n² + O(n·k)` floats of workspace.
//! - [`Mode::Knn`]: each point keeps its `neighbours` nearest points in
//!   morphology space `z` (a k-d tree); the graph is symmetrised (an edge
//!   when either end lists the other) and weighted by the exact `W_ij`, so
//!   time enters through the weights: neighbours far apart in time get
//!   weights near zero. Workspace `O(n·neighbours)`.
//!
//! The memory a configuration needs is known before any work is done:
//! [`workspace_len`] reports it, and fails with
//! [`ErrorKind::BadConfig`] on
//! `memory_limit_bytes` (detail: bytes needed vs. the limit) when a request
//! is larger than the configured limit.
//!
//! Labels are canonical: cluster ids are numbered by first appearance
//! (point 0 is in cluster 0), so equal partitions give equal label arrays.

mod affinity;
mod embed;
mod kdtree;
mod kmeans;

use crate::error::{Arena, Detail, Error, ErrorKind, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::rng::{Family, Rng};
use crate::size::Size;

pub use affinity::MEDIAN_SAMPLE;

/// Largest number of clusters (and largest `k` an eigengap search may pick).
pub const MAX_CLUSTERS: usize = 32;
/// Largest neighbour count of the kNN mode and of self-tuning scales.
pub const MAX_NEIGHBOURS: usize = 64;
/// Most k-means++ restarts [`ClusterConfig::restarts`] accepts (each is a
/// full k-means run: a larger count would only look like a hang).
pub const MAX_RESTARTS: usize = 1000;

/// How the spatial bandwidth `σ_z` is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpatialScale<F> {
    /// `σ_z` given, in the units of `z` (finite, > 0).
    Given(F),
    /// `σ_z` = median pairwise distance `‖z_i − z_j‖` (lower median) over
    /// at most [`MEDIAN_SAMPLE`] points drawn from the seed's stream (all
    /// points when `n` ≤ [`MEDIAN_SAMPLE`]).
    Median,
    /// Self-tuning local scales (Zelnik-Manor & Perona): `σ_i` = distance
    /// from `z_i` to its `neighbour`-th nearest other point, and
    /// `σ_z²` is replaced by `σ_i σ_j`. Zero scales (duplicates) are raised
    /// to the smallest positive one.
    SelfTuning { neighbour: usize },
}

/// How the affinity matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// All pairs (`n²` floats).
    Dense,
    /// Sparse symmetrised k-nearest-neighbour graph (`1 ≤ neighbours ≤`
    /// [`MAX_NEIGHBOURS`], `neighbours < n`, `d ≤ 128`). Neighbours are
    /// searched in `z` alone: had they been searched in `(z, t)`, each list
    /// would fill up inside its own time bin and the graph would fall apart
    /// into per-bin pieces.
    Knn { neighbours: usize },
}

/// Configuration of [`cluster`]. Build with [`ClusterConfig::new`] and
/// change fields as needed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterConfig<F> {
    /// Number of clusters, `1 ≤ k ≤ min(n,` [`MAX_CLUSTERS`]`)`; with
    /// `choose_k` the largest number considered.
    pub k: usize,
    /// Choose the number of clusters in `1..=k` by the largest eigengap
    /// `λ_j − λ_{j+1}` of the normalised affinity (needs `k < n`).
    pub choose_k: bool,
    pub sigma_z: SpatialScale<F>,
    /// Time bandwidth in time units (> 0; `+∞` ignores time).
    pub sigma_t: F,
    /// k-means++ restarts (`1..=`[`MAX_RESTARTS`]); the lowest inertia
    /// wins, ties to the earliest restart.
    pub restarts: usize,
    /// Lloyd iterations per restart (≥ 1).
    pub kmeans_max_iter: usize,
    /// Outer iterations of the eigensolver (≥ 1).
    pub eigen_max_iter: usize,
    pub seed: u64,
    pub mode: Mode,
    /// Largest workspace, in bytes, [`workspace_len`] accepts.
    pub memory_limit_bytes: usize,
}

/// Neighbour of the default self-tuning local scales (Zelnik-Manor &
/// Perona's choice).
pub const DEFAULT_SCALE_NEIGHBOUR: usize = 7;
/// Neighbours of the default sparse affinity graph.
pub const DEFAULT_GRAPH_NEIGHBOURS: usize = 15;

impl<F: Float> ClusterConfig<F> {
    /// `k` clusters, the given `σ_t`, self-tuning local scales
    /// ([`DEFAULT_SCALE_NEIGHBOUR`]) on a symmetrised kNN graph
    /// ([`DEFAULT_GRAPH_NEIGHBOURS`] neighbours: needs `n` above that and
    /// `d ≤ 128`), 10 restarts of at most 100 Lloyd iterations, 200
    /// eigensolver iterations, seed 0, memory limit 1 GiB.
    ///
    /// Why these: on planted groups (`tests/cluster_defaults.rs`: 4 groups
    /// over 5 time bins, d = 2…16, separations 3–6 sd, equal and unequal
    /// spreads) the median-distance `σ_z` on the dense graph merges groups
    /// once the between-group distances dominate the median, and dense
    /// self-tuning scales still tie far points together in d ≥ 8; the kNN
    /// graph with local scales matches scikit-learn's nearest-neighbour
    /// spectral clustering there.
    pub fn new(k: usize, sigma_t: F) -> Self {
        ClusterConfig {
            k,
            choose_k: false,
            sigma_z: SpatialScale::SelfTuning {
                neighbour: DEFAULT_SCALE_NEIGHBOUR,
            },
            sigma_t,
            restarts: 10,
            kmeans_max_iter: 100,
            eigen_max_iter: 200,
            seed: 0,
            mode: Mode::Knn {
                neighbours: DEFAULT_GRAPH_NEIGHBOURS,
            },
            memory_limit_bytes: 1 << 30,
        }
    }
}

/// Workspace of [`cluster`]: `floats` elements of `F` and `indices` `u32`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkspaceLen {
    pub floats: usize,
    pub indices: usize,
}

impl WorkspaceLen {
    /// Total bytes for float type `F`.
    pub fn bytes<F: Float>(&self) -> Option<usize> {
        self.floats
            .checked_mul(F::BYTES)?
            .checked_add(self.indices.checked_mul(4)?)
    }
}

/// What [`cluster`] found besides the labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterSummary<F> {
    /// Number of clusters used (`cfg.k`, or the eigengap's choice).
    pub k: usize,
    /// k-means inertia of the winning restart (sum of squared distances of
    /// the unit-length embedding rows to their centroids).
    pub inertia: F,
    /// The spatial scale used: given, median, or the median local scale.
    pub sigma_z: F,
    /// Leading eigenvalues of `D^{-1/2} W D^{-1/2}`, descending; the first
    /// `eigen_count` entries are valid.
    pub eigenvalues: [F; MAX_CLUSTERS + 1],
    pub eigen_count: usize,
}

/// Sizes derived from `(n, d, cfg)`, shared by [`workspace_len`] and
/// [`cluster`] so the two always agree.
#[derive(Clone, Copy)]
struct Plan {
    /// Eigenpairs wanted (`k`, or `k + 1` for the eigengap).
    want: usize,
    /// Eigensolver block width.
    block: usize,
    /// Neighbours found per point by k-d tree queries (kNN graph or
    /// self-tuning), including the point itself; 0 in the dense mode.
    query: usize,
    floats: usize,
    indices: usize,
}

fn plan<F: Float>(n: usize, d: usize, cfg: &ClusterConfig<F>) -> Result<Plan> {
    if n == 0 || d == 0 {
        return Err(Error::bad_dim(
            "n",
            "need at least one point of dimension ≥ 1",
        ));
    }
    if n > u32::MAX as usize / 2 {
        return Err(Error::too_large("n", "too many points for 32-bit indices"));
    }
    if cfg.k == 0 || cfg.k > MAX_CLUSTERS {
        return Err(Error::bad_config("k", "must be in 1..=32").with(Detail::Value(cfg.k as f64)));
    }
    if cfg.k > n {
        return Err(
            Error::bad_config("k", "more clusters than points").with(Detail::Len {
                expected: n,
                got: cfg.k,
            }),
        );
    }
    if cfg.choose_k && cfg.k >= n {
        return Err(Error::bad_config(
            "k",
            "the eigengap choice needs fewer clusters than points",
        ));
    }
    if cfg.sigma_t.is_nan() || cfg.sigma_t <= F::ZERO {
        return Err(
            Error::bad_config("sigma_t", "must be > 0 (or +inf to ignore time)")
                .with(Detail::Value(cfg.sigma_t.to_f64())),
        );
    }
    if cfg.restarts > MAX_RESTARTS {
        return Err(Error::bad_config("restarts", "must be at most 1000")
            .with(Detail::Value(cfg.restarts as f64)));
    }
    if cfg.restarts == 0 || cfg.kmeans_max_iter == 0 || cfg.eigen_max_iter == 0 {
        return Err(Error::bad_config(
            "restarts",
            "restarts, kmeans_max_iter and eigen_max_iter must be ≥ 1",
        ));
    }
    let self_tuning = match cfg.sigma_z {
        SpatialScale::Given(s) => {
            if !(s.is_finite() && s > F::ZERO) {
                return Err(Error::bad_config("sigma_z", "must be finite and > 0")
                    .with(Detail::Value(s.to_f64())));
            }
            0
        }
        SpatialScale::Median => {
            if n < 2 {
                return Err(Error::bad_dim("n", "the median heuristic needs two points"));
            }
            0
        }
        SpatialScale::SelfTuning { neighbour } => {
            if neighbour == 0 || neighbour > MAX_NEIGHBOURS || neighbour >= n {
                return Err(Error::bad_config(
                    "sigma_z",
                    "self-tuning neighbour must be in 1..=64 and < n",
                )
                .with(Detail::Value(neighbour as f64)));
            }
            neighbour
        }
    };
    let want = if cfg.choose_k { cfg.k + 1 } else { cfg.k };
    let block = embed::block_width(n, want);
    // Floats and indices every mode needs: eigensolver blocks, embedding,
    // k-means, local scales, median sample.
    let eig = embed::workspace_floats(n, block)?;
    let emb = checked_mul(n, cfg.k, "n")?;
    let km = kmeans::workspace_floats(n, cfg.k);
    let median = if matches!(cfg.sigma_z, SpatialScale::Given(_)) {
        0
    } else {
        affinity::median_workspace_floats(n)
    };
    // + n: local scales / degrees
    let mut floats = (Size(eig) + emb + km + median + n).get();
    let mut indices = n; // k-means labels, median sample
    let mut query = 0;
    match cfg.mode {
        Mode::Dense => {
            floats = (Size(floats) + checked_mul(n, n, "n")? + block).get();
        }
        Mode::Knn { neighbours } => {
            if neighbours == 0 || neighbours > MAX_NEIGHBOURS || neighbours >= n {
                return Err(
                    Error::bad_config("mode", "kNN neighbours must be in 1..=64 and < n")
                        .with(Detail::Value(neighbours as f64)),
                );
            }
            if d > kdtree::MAX_DIM {
                return Err(Error::bad_dim("d", "the kNN mode supports d ≤ 128")
                    .with(Detail::Value(d as f64)));
            }
            query = neighbours.max(self_tuning) + 1;
            let g = affinity::KnnSizes::new(n, query, neighbours)?;
            floats = (Size(floats) + g.floats).get();
            indices = (Size(indices) + g.indices).get();
        }
    }
    let p = Plan {
        want,
        block,
        query,
        floats,
        indices,
    };
    let bytes = WorkspaceLen { floats, indices }
        .bytes::<F>()
        .ok_or(Error::too_large(
            "n",
            "dimensions overflow the address space",
        ))?;
    if bytes > cfg.memory_limit_bytes {
        return Err(Error::new(
            ErrorKind::BadConfig,
            "memory_limit_bytes",
            "the request needs more memory than the limit (bytes needed, limit); \
             use the kNN mode or raise the limit",
        )
        .with(Detail::Len {
            expected: bytes,
            got: cfg.memory_limit_bytes,
        }));
    }
    Ok(p)
}

/// Workspace [`cluster`] needs for `n` points of dimension `d`. Checks the
/// configuration (the same errors [`cluster`] gives) and the memory limit.
pub fn workspace_len<F: Float>(n: usize, d: usize, cfg: &ClusterConfig<F>) -> Result<WorkspaceLen> {
    let p = plan(n, d, cfg)?;
    Ok(WorkspaceLen {
        floats: p.floats,
        indices: p.indices,
    })
}

/// Clusters `n` points `z` (`n × d`) observed at times `t` (`n`) into
/// `labels` (`n`, values `0..summary.k`, canonical order).
///
/// `float_ws` and `index_ws` are at least [`workspace_len`]'s `floats` and
/// `indices` long. Errors: bad configuration, mismatched lengths, non-finite
/// `z` or `t`, all points coinciding with a data-driven `σ_z`, a short
/// workspace, or the eigensolver not converging in `eigen_max_iter`.
#[allow(clippy::too_many_arguments)]
pub fn cluster<F: Float>(
    z: &[F],
    t: &[F],
    n: usize,
    d: usize,
    cfg: &ClusterConfig<F>,
    labels: &mut [u32],
    float_ws: &mut [F],
    index_ws: &mut [u32],
) -> Result<ClusterSummary<F>> {
    let plan = plan(n, d, cfg)?;
    check_len(z, checked_mul(n, d, "n")?, "z")?;
    check_len(t, n, "t")?;
    check_len(labels, n, "labels")?;
    check_finite(z, "z")?;
    check_finite(t, "t")?;
    if float_ws.len() < plan.floats {
        return Err(Error::too_small("float_ws", plan.floats, float_ws.len()));
    }
    if index_ws.len() < plan.indices {
        return Err(Error::too_small("index_ws", plan.indices, index_ws.len()));
    }
    let mut fa = Arena::new(float_ws);
    let mut ia = Arena::new(index_ws);
    let scratch_idx = ia.take(n)?;
    let scales = fa.take(n)?;
    let sample = match cfg.sigma_z {
        SpatialScale::Given(_) => &mut [][..],
        _ => fa.take(affinity::median_workspace_floats(n))?,
    };
    let eig_ws = fa.take(embed::workspace_floats(n, plan.block)?)?;
    let emb = fa.take(n * cfg.k)?;
    let km_ws = fa.take(kmeans::workspace_floats(n, cfg.k))?;
    let mut eig_rng = Rng::stream(cfg.seed, Family::Cluster, 0);

    let kernel = affinity::Kernel::new(cfg.sigma_t);
    let (sigma_z, result) = match cfg.mode {
        Mode::Dense => {
            let m = fa.take(n * n)?;
            let sigma_z = affinity::spatial_scale_dense(
                z,
                n,
                d,
                &cfg.sigma_z,
                cfg.seed,
                scratch_idx,
                sample,
                scales,
                m,
            )?;
            affinity::dense_normalised(z, t, n, d, &kernel, sigma_z, &cfg.sigma_z, scales, m);
            let zeros = fa.take(plan.block)?;
            zeros.fill(F::ZERO);
            let op = embed::DenseOp { m, n, zeros };
            let r = embed::top_eigen(
                &op,
                plan.want,
                plan.block,
                cfg.eigen_max_iter,
                &mut eig_rng,
                eig_ws,
            );
            (sigma_z, r)
        }
        Mode::Knn { neighbours } => {
            let sizes = affinity::KnnSizes::new(n, plan.query, neighbours)?;
            let g = affinity::KnnGraph::build(
                z,
                t,
                n,
                d,
                &kernel,
                &cfg.sigma_z,
                neighbours,
                cfg.seed,
                &sizes,
                scratch_idx,
                sample,
                scales,
                &mut fa,
                &mut ia,
            )?;
            let op = g.operator();
            let r = embed::top_eigen(
                &op,
                plan.want,
                plan.block,
                cfg.eigen_max_iter,
                &mut eig_rng,
                eig_ws,
            );
            (g.sigma_z, r)
        }
    };
    let eigen = result?;
    let mut summary = ClusterSummary {
        k: cfg.k,
        inertia: F::ZERO,
        sigma_z,
        eigenvalues: [F::ZERO; MAX_CLUSTERS + 1],
        eigen_count: plan.want,
    };
    summary.eigenvalues[..plan.want].copy_from_slice(&eigen.values[..plan.want]);
    if cfg.choose_k {
        summary.k = embed::eigengap_choice(&summary.eigenvalues[..plan.want]);
    }
    let k = summary.k;
    let emb = &mut emb[..n * k];
    embed::normalised_rows(eigen.vectors, plan.block, k, emb);
    summary.inertia = kmeans::best_of_restarts(
        emb,
        n,
        k,
        cfg.restarts,
        cfg.kmeans_max_iter,
        cfg.seed,
        labels,
        scratch_idx,
        km_ws,
    );
    kmeans::canonical_labels(labels, k);
    Ok(summary)
}

/// Calls `f(i, row)` for each `row_len`-long row of `out` (in parallel with
/// the `std` feature). Each row depends only on `i`, so the results are the
/// same for any thread count.
fn for_each_row<T: Send, G: Fn(usize, &mut [T]) + Sync + Send>(
    out: &mut [T],
    row_len: usize,
    f: G,
) {
    if row_len == 0 {
        return;
    }
    #[cfg(feature = "std")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(row_len)
            .with_min_len(16)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
    #[cfg(not(feature = "std"))]
    out.chunks_mut(row_len)
        .enumerate()
        .for_each(|(i, r)| f(i, r));
}

#[cfg(test)]
mod tests;
