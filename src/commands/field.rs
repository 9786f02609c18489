//! `morphosde field`: the learned drift `f(z,t)` and diffusion `D = L Lᵀ`
//! at given points and times. Input: a CSV with a time column and the `d`
//! coordinates; output: one row per point, `t, z…, f…, D…` with `D`'s d×d
//! entries row-major (a drift-only model has no `D` columns: it learned no
//! noise). Points at times outside the model's training span are answered
//! by the model at the span's nearest end, and stderr says how many and how
//! far.
//!
//! With `--estimate data.csv` (a snapshot table with track ids) each row
//! also gets three model-assisted estimates of `D` from the tracked pairs
//! near the point, to compare side by side with the learned `D`
//! ([`local_estimates`]).

use super::time_span::outside;
use crate::csvio::{read_table, write_matrix};
use crate::data::{CoordinateColumns, Snapshots};
use clap::Args;
use morphosde_core::codec;
use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::{rk4_flow, rk4_flow_workspace_len};
use morphosde_core::metrics::diffusion_from_factor;
use morphosde_core::model::{Config, Layout, Learned};
use morphosde_core::propagated::{Propagation, propagate, propagate_workspace_len};
use std::collections::HashMap;
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
    /// Snapshot table with track ids (same time and coordinate columns as
    /// --points): adds, per point, D estimated from the --k tracked pairs
    /// (same id in adjacent time bins) whose start is nearest the point, in
    /// the time bin nearest the point's time, three ways: naive (the seed's
    /// E[r rᵀ]/h, r = Δz − f·h), flow (r = Δz − φ_h(z), the model's flow
    /// over the gap) and propagated (the D that solves M_h(D) = E[r rᵀ] for
    /// the flow residual, propagated along the model's flow from the point;
    /// it stands for D at the gap's midpoint state). Columns `pairs`, `h`,
    /// then naive_Dab…, flow_Dab…, propagated_Dab… (row-major).
    #[arg(long)]
    pub estimate: Option<PathBuf>,
    /// Track-id column of --estimate (negative or NaN = untracked).
    #[arg(long, default_value = "id", requires = "estimate")]
    pub id_column: String,
    /// Tracked pairs per point for --estimate (fewer if the bin has fewer).
    #[arg(long, default_value_t = 64, requires = "estimate")]
    pub k: usize,
    /// RK4 substeps of the flow and the propagated map for --estimate
    /// (default: the model's own).
    #[arg(long, requires = "estimate")]
    pub substeps: Option<usize>,
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
    if let Some(o) = outside(&config, &params, &pts.t) {
        let what = format!("{} of {} points lie", o.count, o.total);
        eprintln!("{}", o.message("field", &what));
    }
    if q == 0 {
        eprintln!("field: the model learned no diffusion (drift only): no D columns");
    }
    let mut f = vec![0.0f32; rows * d];
    let mut dm = vec![0.0f32; if q > 0 { rows * d * d } else { 0 }];
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
    let estimates = match &args.estimate {
        None => None,
        Some(path) => {
            let data = Snapshots::from_table(
                &read_table(path, "--estimate")?,
                &args.time_column,
                Some(&args.id_column),
                &coords,
            )
            .map_err(|e| format!("--estimate: {e}"))?;
            if data.d != d {
                return Err(format!(
                    "--estimate: {} coordinates, the model has d = {d}",
                    data.d
                ));
            }
            let substeps = args.substeps.unwrap_or(config.flow_substeps);
            Some(local_estimates(&model, &data, &pts, args.k, substeps)?)
        }
    };
    let dd = d * d;
    let mut header = vec!["t".to_string()];
    header.extend(pts.names.iter().cloned());
    header.extend((0..d).map(|k| format!("f{k}")));
    let entries =
        |prefix: &'static str| (0..dd).map(move |k| format!("{prefix}D{}{}", k / d, k % d));
    if q > 0 {
        header.extend(entries(""));
    }
    if estimates.is_some() {
        header.extend(["pairs".to_string(), "h".to_string()]);
        for prefix in ["naive_", "flow_", "propagated_"] {
            header.extend(entries(prefix));
        }
    }
    let mut table = Vec::with_capacity(rows * header.len());
    for r in 0..rows {
        table.push(pts.t[r]);
        table.extend_from_slice(&pts.z[r * d..(r + 1) * d]);
        table.extend_from_slice(&f[r * d..(r + 1) * d]);
        if q > 0 {
            table.extend_from_slice(&dm[r * dd..(r + 1) * dd]);
        }
        if let Some(e) = &estimates {
            table.extend([e.pairs[r] as f32, e.h[r]]);
            for m in [&e.naive, &e.flow, &e.propagated] {
                table.extend_from_slice(&m[r * dd..(r + 1) * dd]);
            }
        }
    }
    write_matrix(&args.out, Some(&header), &table, header.len())
}

/// Local estimates of `D` at query points from tracked pairs (see
/// [`local_estimates`]); matrices are `points×d×d`, row-major.
#[derive(Debug)]
pub struct LocalEstimates {
    /// Pairs used per point, and the frame gap `h` they span.
    pub pairs: Vec<usize>,
    pub h: Vec<f32>,
    /// `E[r rᵀ]/h` with `r = y − x − f(x)·h` (the seed's target).
    pub naive: Vec<f32>,
    /// `E[r rᵀ]/h` with `r = y − φ_h(x)`.
    pub flow: Vec<f32>,
    /// The symmetric PSD `D` with `M_h(D) = E[r rᵀ]` (flow residuals),
    /// `M_h` propagated along the model's flow from the point.
    pub propagated: Vec<f32>,
}

/// For each query point `(z_q, t_q)`: the source bin `b` (a distinct time
/// of `data` with tracked partners in the next bin) nearest `t_q` (ties:
/// the earlier), the `k` tracked pairs `(x, y)` of that bin whose `x` is
/// nearest `z_q` (ties: the earlier row), their gap `h = t_{b+1} − t_b`, and
/// from them the three estimates of [`LocalEstimates`] under `model`'s
/// drift. The flow and the propagated map start at `(z_q, t_b)` and take
/// `substeps` RK4 steps. The moments are uncentred, as the training
/// targets' are.
pub fn local_estimates(
    model: &Learned<'_, f32>,
    data: &Snapshots,
    pts: &Snapshots,
    k: usize,
    substeps: usize,
) -> Result<LocalEstimates, String> {
    let d = model.dim();
    let dd = d * d;
    if k == 0 {
        return Err("--k must be at least 1".into());
    }
    if substeps == 0 {
        return Err("--substeps must be at least 1".into());
    }
    // Distinct times, and each tracked observation's (id, bin) → row.
    let mut times = data.t.clone();
    times.sort_by(f32::total_cmp);
    times.dedup();
    let bin_of = |t: f32| times.partition_point(|&s| s < t);
    let mut row_of = HashMap::new();
    for (r, id) in data.track.iter().enumerate() {
        if let Some(id) = id
            && row_of.insert((*id, bin_of(data.t[r])), r).is_some()
        {
            return Err(format!(
                "--estimate: track {id} has two rows at time {}",
                data.t[r]
            ));
        }
    }
    // Tracked pairs by source bin.
    let mut pairs_in: Vec<Vec<(usize, usize)>> = vec![Vec::new(); times.len()];
    for (&(id, b), &x) in &row_of {
        if let Some(&y) = row_of.get(&(id, b + 1)) {
            pairs_in[b].push((x, y));
        }
    }
    for p in &mut pairs_in {
        p.sort_unstable();
    }
    let sources: Vec<usize> = (0..times.len())
        .filter(|&b| !pairs_in[b].is_empty())
        .collect();
    if sources.is_empty() {
        return Err("--estimate: no tracked pairs (the same id in adjacent time bins)".into());
    }
    // Per point: its bin and nearest pairs, gathered into one block of rows.
    let points = pts.len();
    let (mut x, mut y, mut t, mut h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut count, mut start_t, mut gap) = (Vec::new(), Vec::new(), Vec::new());
    for q in 0..points {
        let zq = &pts.z[q * d..(q + 1) * d];
        let b = *sources
            .iter()
            .min_by(|&&a, &&b| {
                (times[a] - pts.t[q])
                    .abs()
                    .total_cmp(&(times[b] - pts.t[q]).abs())
            })
            .expect("at least one source bin");
        let mut near: Vec<(f32, usize, usize)> = pairs_in[b]
            .iter()
            .map(|&(xr, yr)| {
                let dist = zq
                    .iter()
                    .zip(&data.z[xr * d..(xr + 1) * d])
                    .map(|(a, c)| (a - c) * (a - c))
                    .sum::<f32>();
                (dist, xr, yr)
            })
            .collect();
        near.sort_by(|a, c| a.0.total_cmp(&c.0).then(a.1.cmp(&c.1)));
        near.truncate(k);
        let hb = times[b + 1] - times[b];
        for &(_, xr, yr) in &near {
            x.extend_from_slice(&data.z[xr * d..(xr + 1) * d]);
            y.extend_from_slice(&data.z[yr * d..(yr + 1) * d]);
            t.push(times[b]);
            h.push(hb);
        }
        count.push(near.len());
        start_t.push(times[b]);
        gap.push(hb);
    }
    // The model's drift and flow at every pair's start.
    let rows = t.len();
    let mut f = vec![0.0f32; rows * d];
    let mut ws = vec![0.0f32; model.workspace_len(rows)];
    model.drift(&x, &t, &mut f, &mut ws);
    let mut flow = vec![0.0f32; rows * d];
    let mut ws = vec![0.0f32; rk4_flow_workspace_len(model, rows)];
    rk4_flow(model, &x, &t, &h, substeps, &mut flow, &mut ws)
        .map_err(|e| format!("flow of the model's drift: {e}"))?;
    if let Some(i) = f.iter().chain(&flow).position(|v| !v.is_finite()) {
        return Err(format!(
            "the model's drift or flow is not finite at tracked pair {}",
            i % rows + 1
        ));
    }
    // Uncentred second moments per unit time, accumulated in f64.
    let mut naive = vec![0.0f32; points * dd];
    let mut flow_moment = vec![0.0f32; points * dd];
    let mut first = 0;
    for q in 0..points {
        let block = first..first + count[q];
        first += count[q];
        let scale = 1.0 / (count[q] as f64 * f64::from(gap[q]));
        let mut moments = [vec![0.0f64; dd], vec![0.0f64; dd]];
        let mut r = [vec![0.0f64; d], vec![0.0f64; d]];
        for j in block {
            for a in 0..d {
                let (xa, ya) = (f64::from(x[j * d + a]), f64::from(y[j * d + a]));
                r[0][a] = ya - xa - f64::from(f[j * d + a]) * f64::from(h[j]);
                r[1][a] = ya - f64::from(flow[j * d + a]);
            }
            for (m, r) in moments.iter_mut().zip(&r) {
                for a in 0..d {
                    for c in 0..d {
                        m[a * d + c] += r[a] * r[c] * scale;
                    }
                }
            }
        }
        for (out, m) in [&mut naive, &mut flow_moment].into_iter().zip(&moments) {
            for (o, &v) in out[q * dd..(q + 1) * dd].iter_mut().zip(m) {
                *o = v as f32;
            }
        }
    }
    // The propagated estimate: M_h along the flow from (z_q, t_b).
    let nodes = substeps + 1;
    let mut states = vec![0.0f32; points * nodes * d];
    let mut props = vec![0.0f32; points * nodes * dd];
    let mut ws = vec![0.0f32; propagate_workspace_len(model, points)];
    propagate(
        model,
        &pts.z,
        &start_t,
        &gap,
        substeps,
        &mut states,
        &mut props,
        &mut ws,
    )
    .map_err(|e| format!("propagating along the model's flow: {e}"))?;
    let map = Propagation::new(d, substeps, &gap, &props).map_err(|e| e.to_string())?;
    let mut propagated = vec![0.0f32; points * dd];
    let mut ws = vec![0.0f32; map.explicit_diffusion_workspace_len()];
    map.explicit_diffusion(&flow_moment, &mut propagated, &mut ws)
        .map_err(|e| format!("propagated estimate: {e}"))?;
    Ok(LocalEstimates {
        pairs: count,
        h: gap,
        naive,
        flow: flow_moment,
        propagated,
    })
}
