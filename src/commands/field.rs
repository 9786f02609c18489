//! `morphosde field`: the learned drift `f(z,t)` and diffusion `D = L Lᵀ`
//! at given points and times. Input: a CSV with a time column and the `d`
//! coordinates; output: one row per point, `t, z…, f…, D…` with `D`'s d×d
//! entries row-major (all zero for a drift-only model).

use crate::csvio::{read_table, write_matrix};
use crate::data::{CoordinateColumns, Snapshots};
use clap::Args;
use morphosde_core::codec;
use morphosde_core::integrate::Dynamics;
use morphosde_core::metrics::diffusion_from_factor;
use morphosde_core::model::{Config, Layout, Learned};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct FieldArgs {
    /// Model file (from `train` or `demo`).
    #[arg(long)]
    pub model: PathBuf,
    /// Points: CSV with a header, a time column and the coordinates.
    #[arg(long)]
    pub points: PathBuf,
    /// Time column (name or 0-based number).
    #[arg(long, default_value = "t")]
    pub time_column: String,
    /// Coordinate columns (default: every column except the time column).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Output CSV.
    #[arg(long, default_value = "field.csv")]
    pub out: PathBuf,
}

/// Reads a model file: its config and `f32` parameters.
pub fn load_model(path: &Path) -> Result<(Config, Vec<f32>), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("--model: cannot read '{}': {e}", path.display()))?;
    let what = |e| format!("--model ('{}'): {e}", path.display());
    let config = codec::load_config::<f32>(&bytes).map_err(what)?;
    let len = Layout::new(&config).map_err(what)?.len;
    let mut params = vec![0.0f32; len];
    codec::load(&bytes, &mut params).map_err(what)?;
    Ok((config, params))
}

pub fn run(args: &FieldArgs) -> Result<(), String> {
    let (config, params) = load_model(&args.model)?;
    let model = Learned::new(&config, &params).map_err(|e| e.to_string())?;
    let coords = args
        .columns
        .clone()
        .map_or(CoordinateColumns::Rest, CoordinateColumns::Named);
    let table = read_table(&args.points, "--points")?;
    let pts = Snapshots::from_table(&table, &args.time_column, None, &coords)
        .map_err(|e| format!("--points: {e}"))?;
    let (d, q, rows) = (model.dim(), model.noise_dim(), pts.len());
    if pts.d != d {
        return Err(format!(
            "--points: {} coordinates, the model has d = {d}",
            pts.d
        ));
    }
    let mut f = vec![0.0f32; rows * d];
    let mut dm = vec![0.0f32; rows * d * d];
    let mut ws = vec![0.0f32; model.workspace_len(rows)];
    if q > 0 {
        let mut l = vec![0.0f32; rows * d * q];
        model.drift_and_factor(&pts.z, &pts.t, &mut f, &mut l, &mut ws);
        for r in 0..rows {
            diffusion_from_factor(
                &l[r * d * q..][..d * q],
                d,
                q,
                &mut dm[r * d * d..][..d * d],
            )
            .map_err(|e| format!("point {}: {e}", r + 1))?;
        }
    } else {
        model.drift(&pts.z, &pts.t, &mut f, &mut ws);
    }
    let mut header = vec!["t".to_string()];
    header.extend(pts.names.iter().cloned());
    header.extend((0..d).map(|k| format!("f{k}")));
    header.extend((0..d * d).map(|k| format!("D{}{}", k / d, k % d)));
    let mut table = Vec::with_capacity(rows * header.len());
    for r in 0..rows {
        table.push(pts.t[r]);
        table.extend_from_slice(&pts.z[r * d..(r + 1) * d]);
        table.extend_from_slice(&f[r * d..(r + 1) * d]);
        table.extend_from_slice(&dm[r * d * d..(r + 1) * d * d]);
    }
    write_matrix(&args.out, Some(&header), &table, header.len())
}
