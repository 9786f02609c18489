//! Time-weighted spectral clustering over the C ABI (caller buffers only:
//! usable without std).

use crate::buffers::{flag, input, optional_out, output, size_answer, value_in, value_out};
use crate::status::{guard, msde_error, msde_status};
use morphosde_core::Result;
use morphosde_core::cluster::{
    ClusterConfig, MAX_CLUSTERS, MAX_NEIGHBOURS, Mode, SpatialScale, cluster, workspace_len,
};
use morphosde_core::error::{Detail, Error, check_room};

/// Largest number of clusters msde_cluster accepts (msde_cluster_config.k).
pub const MSDE_CLUSTER_MAX_K: usize = 32;
/// Largest neighbour count (kNN graph, self-tuning scale).
pub const MSDE_CLUSTER_MAX_NEIGHBOURS: usize = 64;
/// Capacity of msde_cluster_summary.eigenvalues (MSDE_CLUSTER_MAX_K + 1).
pub const MSDE_CLUSTER_EIGENVALUES: usize = 33;
const _: () = assert!(MSDE_CLUSTER_MAX_K == MAX_CLUSTERS);
const _: () = assert!(MSDE_CLUSTER_MAX_NEIGHBOURS == MAX_NEIGHBOURS);
const _: () = assert!(MSDE_CLUSTER_EIGENVALUES == MAX_CLUSTERS + 1);

/// msde_cluster_config.sigma_z_mode: sigma_z is given (field sigma_z).
pub const MSDE_SIGMA_Z_GIVEN: u32 = 0;
/// msde_cluster_config.sigma_z_mode: sigma_z = median pairwise distance.
pub const MSDE_SIGMA_Z_MEDIAN: u32 = 1;
/// msde_cluster_config.sigma_z_mode: self-tuning local scales sigma_i =
/// distance to the sigma_z_neighbour-th nearest other point.
pub const MSDE_SIGMA_Z_SELF_TUNING: u32 = 2;

/// Configuration of msde_cluster. Fill it with msde_cluster_config_default,
/// then change fields. The affinity of points i, j is
/// exp(-|z_i - z_j|^2 / (2 sigma_z^2)) * exp(-(t_i - t_j)^2 / (2 sigma_t^2)).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_cluster_config {
    /// Number of clusters, 1..=min(n, MSDE_CLUSTER_MAX_K); with choose_k the
    /// largest number considered.
    pub k: usize,
    /// 1: choose the number of clusters in 1..=k by the largest eigengap
    /// (needs k < n); 0: use k.
    pub choose_k: u32,
    /// MSDE_SIGMA_Z_GIVEN, MSDE_SIGMA_Z_MEDIAN or MSDE_SIGMA_Z_SELF_TUNING.
    pub sigma_z_mode: u32,
    /// Spatial bandwidth in the units of z (finite, > 0); read only with
    /// MSDE_SIGMA_Z_GIVEN.
    pub sigma_z: f32,
    /// Time bandwidth in time units (> 0; +INFINITY ignores time).
    pub sigma_t: f32,
    /// Neighbour rank of the self-tuning scale (1..=64, < n); read only with
    /// MSDE_SIGMA_Z_SELF_TUNING.
    pub sigma_z_neighbour: usize,
    /// 0: dense affinity (n*n floats of workspace); otherwise the kNN graph
    /// with this many neighbours per point (1..=64, < n).
    pub knn_neighbours: usize,
    /// k-means++ restarts (1..=1000); the lowest inertia wins.
    pub restarts: usize,
    /// Lloyd iterations per restart (>= 1).
    pub kmeans_max_iter: usize,
    /// Outer iterations of the eigensolver (>= 1).
    pub eigen_max_iter: usize,
    /// Seed of every random choice (median sample, eigensolver start,
    /// k-means++).
    pub seed: u64,
    /// Largest workspace in bytes the size query accepts
    /// (MSDE_ERR_BAD_CONFIG beyond it).
    pub memory_limit_bytes: usize,
}

/// What msde_cluster found besides the labels.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct msde_cluster_summary {
    /// Number of clusters used (config k, or the eigengap's choice).
    pub k: usize,
    /// k-means inertia of the winning restart (spectral embedding units).
    pub inertia: f32,
    /// The spatial scale used (given, median, or median local scale), in
    /// the units of z.
    pub sigma_z: f32,
    /// Valid entries of eigenvalues.
    pub eigen_count: usize,
    /// Leading eigenvalues of the normalised affinity, descending.
    pub eigenvalues: [f32; MSDE_CLUSTER_EIGENVALUES],
}

pub(crate) fn to_core(c: &msde_cluster_config) -> Result<ClusterConfig<f32>> {
    let sigma_z = match c.sigma_z_mode {
        MSDE_SIGMA_Z_GIVEN => SpatialScale::Given(c.sigma_z),
        MSDE_SIGMA_Z_MEDIAN => SpatialScale::Median,
        MSDE_SIGMA_Z_SELF_TUNING => SpatialScale::SelfTuning {
            neighbour: c.sigma_z_neighbour,
        },
        m => {
            return Err(Error::bad_config(
                "sigma_z_mode",
                "must be MSDE_SIGMA_Z_GIVEN, _MEDIAN or _SELF_TUNING",
            )
            .with(Detail::Index(m as usize)));
        }
    };
    Ok(ClusterConfig {
        k: c.k,
        choose_k: flag(c.choose_k, "choose_k")?,
        sigma_z,
        sigma_t: c.sigma_t,
        restarts: c.restarts,
        kmeans_max_iter: c.kmeans_max_iter,
        eigen_max_iter: c.eigen_max_iter,
        seed: c.seed,
        mode: match c.knn_neighbours {
            0 => Mode::Dense,
            neighbours => Mode::Knn { neighbours },
        },
        memory_limit_bytes: c.memory_limit_bytes,
    })
}

/// The C config of a core config (fields that its modes do not read keep
/// the defaults: sigma_z 1, sigma_z_neighbour 7).
pub(crate) fn from_core(c: &ClusterConfig<f32>) -> msde_cluster_config {
    let (sigma_z_mode, sigma_z, sigma_z_neighbour) = match c.sigma_z {
        SpatialScale::Given(s) => (MSDE_SIGMA_Z_GIVEN, s, 7),
        SpatialScale::Median => (MSDE_SIGMA_Z_MEDIAN, 1.0, 7),
        SpatialScale::SelfTuning { neighbour } => (MSDE_SIGMA_Z_SELF_TUNING, 1.0, neighbour),
    };
    msde_cluster_config {
        k: c.k,
        choose_k: c.choose_k as u32,
        sigma_z_mode,
        sigma_z,
        sigma_t: c.sigma_t,
        sigma_z_neighbour,
        knn_neighbours: match c.mode {
            Mode::Dense => 0,
            Mode::Knn { neighbours } => neighbours,
        },
        restarts: c.restarts,
        kmeans_max_iter: c.kmeans_max_iter,
        eigen_max_iter: c.eigen_max_iter,
        seed: c.seed,
        memory_limit_bytes: c.memory_limit_bytes,
    }
}

/// Fills *out with the defaults for k clusters and time bandwidth sigma_t:
/// self-tuning local scales (sigma_z_neighbour 7) on a kNN affinity graph
/// (knn_neighbours 15: needs more points than that and d <= 128), 10
/// restarts of at most 100 Lloyd iterations, 200 eigensolver iterations,
/// seed 0, memory limit 1 GiB.
/// Values are checked by the calls that use the config, not here.
///
/// # Safety
/// `out` must be NULL (refused) or point to a writable msde_cluster_config.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_cluster_config_default(
    k: usize,
    sigma_t: f32,
    out: *mut msde_cluster_config,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let out = unsafe { value_out(out, "out") }?;
        *out = from_core(&ClusterConfig::<f32>::new(k, sigma_t));
        Ok(())
    })
}

/// Workspace msde_cluster needs for n points of dimension d under *config:
/// *float_len floats and *index_len uint32 values. Checks the whole config
/// (the errors msde_cluster would give for it) and its memory limit.
///
/// # Safety
/// `config` must be NULL (refused) or point to a readable config;
/// `float_len` and `index_len` NULL (refused) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_cluster_workspace_len(
    n: usize,
    d: usize,
    config: *const msde_cluster_config,
    float_len: *mut usize,
    index_len: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let float_len = unsafe { value_out(float_len, "float_len") }?;
        let index_len = unsafe { value_out(index_len, "index_len") }?;
        let len = workspace_len(n, d, &cfg)?;
        *float_len = size_answer::<f32>(len.floats, "n")?;
        *index_len = size_answer::<u32>(len.indices, "n")?;
        Ok(())
    })
}

/// Clusters n points observed at times t into labels.
///
/// - `z`: n x d row-major positions, z_len = n*d; `t`: n times, t_len = n.
/// - `labels`: n cluster ids in 0..summary->k, numbered by first appearance
///   (point 0 is in cluster 0).
/// - `float_ws`, `index_ws`: workspaces of at least the lengths
///   msde_cluster_workspace_len reports; garbage before and after.
/// - `summary`: optional (NULL to skip).
///
/// Errors: NULL pointers, lengths that disagree with n and d
/// (MSDE_ERR_BAD_DIMENSION), NaN/Inf in z or t, config values out of range
/// or over the memory limit (MSDE_ERR_BAD_CONFIG), short workspaces, all
/// points coinciding with a data-driven sigma_z (MSDE_ERR_NUMERICAL), the
/// eigensolver not converging (MSDE_ERR_NOT_CONVERGED). Outputs are written
/// only on MSDE_OK.
///
/// # Safety
/// Each pointer must be NULL (refused unless its length is 0) or valid for
/// its stated length; outputs and workspaces must not overlap each other or
/// the inputs.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn msde_cluster(
    z: *const f32,
    z_len: usize,
    t: *const f32,
    t_len: usize,
    n: usize,
    d: usize,
    config: *const msde_cluster_config,
    labels: *mut u32,
    labels_len: usize,
    float_ws: *mut f32,
    float_ws_len: usize,
    index_ws: *mut u32,
    index_ws_len: usize,
    summary: *mut msde_cluster_summary,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let cfg = to_core(unsafe { value_in(config, "config") }?)?;
        let need = workspace_len(n, d, &cfg)?;
        let z = unsafe { input(z, z_len, "z") }?;
        let t = unsafe { input(t, t_len, "t") }?;
        let labels = unsafe { output(labels, labels_len, "labels") }?;
        let fw = unsafe { output(float_ws, float_ws_len, "float_ws") }?;
        let iw = unsafe { output(index_ws, index_ws_len, "index_ws") }?;
        check_room(fw, need.floats, "float_ws")?;
        check_room(iw, need.indices, "index_ws")?;
        let summary = unsafe { optional_out(summary, "summary") }?;
        let s = cluster(z, t, n, d, &cfg, labels, fw, iw)?;
        if let Some(out) = summary {
            let mut eigenvalues = [0.0; MSDE_CLUSTER_EIGENVALUES];
            eigenvalues[..s.eigen_count].copy_from_slice(&s.eigenvalues[..s.eigen_count]);
            *out = msde_cluster_summary {
                k: s.k,
                inertia: s.inertia,
                sigma_z: s.sigma_z,
                eigen_count: s.eigen_count,
                eigenvalues,
            };
        }
        Ok(())
    })
}
