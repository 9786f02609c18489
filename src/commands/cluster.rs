//! `morphosde cluster`: time-weighted spectral clustering of a snapshot
//! table (see `morphosde_core::cluster`).
//!
//! Output: `--out` gets one line per input row, `row,t,label`; stdout gets
//! a one-line JSON summary (clusters, scale used, eigenvalues, inertia,
//! workspace bytes and the clustering time in seconds).

use crate::csvio::write_atomic;
use crate::data::{CoordinateColumns, Snapshots};
use clap::Args;
use morphosde_core::cluster::{ClusterConfig, Mode, SpatialScale, cluster, workspace_len};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Snapshot table (CSV with a header; every column other than the time
    /// and id columns is a coordinate).
    #[arg(long)]
    pub data: PathBuf,
    /// Time column (header name or 0-based number).
    #[arg(long)]
    pub time_column: String,
    /// Track-id column to leave out of the coordinates (name or number).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Number of clusters (with --choose-k: the largest considered).
    #[arg(long)]
    pub k: usize,
    /// Choose the number of clusters up to --k by the largest eigengap.
    #[arg(long)]
    pub choose_k: bool,
    /// Spatial bandwidth σ_z: a value in coordinate units, or "median" for
    /// the median pairwise distance (default: self-tuning local scales).
    #[arg(long, conflicts_with = "self_tuning", allow_negative_numbers = true, value_parser = parse_sigma_z)]
    pub sigma_z: Option<SpatialScale<f32>>,
    /// Self-tuning local scales (the default, Zelnik-Manor & Perona):
    /// σ_i = distance to the K_NN-th nearest other point, σ_z² → σ_i σ_j.
    /// Default K_NN: the core's `DEFAULT_SCALE_NEIGHBOUR`.
    #[arg(long, value_name = "K_NN")]
    pub self_tuning: Option<usize>,
    /// Time bandwidth σ_t in time units ("inf" ignores time).
    #[arg(long, allow_negative_numbers = true)]
    pub sigma_t: f32,
    /// Neighbours of the sparse k-nearest-neighbour affinity graph (the
    /// default graph; default count: the core's `DEFAULT_GRAPH_NEIGHBOURS`;
    /// O(n·NEIGHBOURS) memory, needs more points than neighbours).
    #[arg(long, value_name = "NEIGHBOURS", conflicts_with = "dense")]
    pub knn: Option<usize>,
    /// Dense affinity over all pairs instead of the kNN graph (n² floats).
    #[arg(long)]
    pub dense: bool,
    /// k-means++ restarts.
    #[arg(long, default_value_t = 10)]
    pub restarts: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest workspace allowed, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_limit_mib: usize,
    /// Output labels CSV (`row,t,label`).
    #[arg(long)]
    pub out: PathBuf,
}

/// `--sigma-z`: a positive number or `median`.
fn parse_sigma_z(text: &str) -> Result<SpatialScale<f32>, String> {
    if text.eq_ignore_ascii_case("median") {
        return Ok(SpatialScale::Median);
    }
    text.parse()
        .map(SpatialScale::Given)
        .map_err(|_| format!("'{text}' is neither a number nor 'median'"))
}

pub fn run(args: &ClusterArgs) -> Result<(), String> {
    let snaps = Snapshots::read(
        &args.data,
        &args.time_column,
        args.id_column.as_deref(),
        &CoordinateColumns::Rest,
    )?;
    let (n, d) = (snaps.len(), snaps.d);
    let mut cfg = ClusterConfig::new(args.k, args.sigma_t);
    cfg.choose_k = args.choose_k;
    if let Some(scale) = args.sigma_z {
        cfg.sigma_z = scale;
    }
    if let Some(neighbour) = args.self_tuning {
        cfg.sigma_z = SpatialScale::SelfTuning { neighbour };
    }
    cfg.restarts = args.restarts;
    cfg.seed = args.seed;
    cfg.memory_limit_bytes = args.memory_limit_mib.saturating_mul(1 << 20);
    if let Some(neighbours) = args.knn {
        cfg.mode = Mode::Knn { neighbours };
    }
    if args.dense {
        cfg.mode = Mode::Dense;
    }
    let len = workspace_len(n, d, &cfg).map_err(|e| format!("cluster: {e}"))?;
    let bytes = len.bytes::<f32>().unwrap_or(usize::MAX);
    let mut fw = vec![0.0f32; len.floats];
    let mut iw = vec![0u32; len.indices];
    let mut labels = vec![0u32; n];
    let start = Instant::now();
    let summary = cluster(
        &snaps.z,
        &snaps.t,
        n,
        d,
        &cfg,
        &mut labels,
        &mut fw,
        &mut iw,
    )
    .map_err(|e| format!("cluster: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    write_atomic(&args.out, |w| {
        writeln!(w, "row,t,label")?;
        for (i, (&t, &l)) in snaps.t.iter().zip(&labels).enumerate() {
            writeln!(w, "{i},{t},{l}")?;
        }
        Ok(())
    })
    .map_err(|e| format!("--out: {e}"))?;
    let eig: Vec<String> = summary.eigenvalues[..summary.eigen_count]
        .iter()
        .map(|e| e.to_string())
        .collect();
    println!(
        "{{\"n\":{n},\"d\":{d},\"k\":{},\"sigma_z\":{},\"inertia\":{},\"eigenvalues\":[{}],\"workspace_bytes\":{bytes},\"seconds\":{seconds}}}",
        summary.k,
        summary.sigma_z,
        summary.inertia,
        eig.join(",")
    );
    Ok(())
}
