//! Diagnostics of simulated against observed clouds, and of the learned
//! diffusion:
//! - [`energy_distance`]: `2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖`, V-statistic (as
//!   `dcor.energy_distance`'s default), not its square root;
//! - [`sliced_wasserstein`]: `(mean_θ W₂²(θ#μ, θ#ν))^½` over unit directions
//!   (as POT's `ot.sliced_wasserstein_distance`);
//! - [`wasserstein1`] and [`emd`]: exact optimal transport (network
//!   simplex) between weighted clouds, `W₁` and the optimal coupling;
//! - [`calibration_summary`]: quantiles of `‖D_pred − D̂‖_F` and of its
//!   relative size over minibatches;
//! - [`diffusion_from_factor`] and [`diffusion_spectrum`]: `D = L Lᵀ` and its
//!   eigen-decomposition (directions in which trajectories diverge).
//!
//! Clouds are row-major `n×d` and `m×d` slices with uniform weights (the
//! exact transport also takes weights).

mod calibration;
mod emd;
mod energy;
mod sliced;
mod spectrum;

pub use calibration::{
    CalibrationSummary, calibration_summary, calibration_workspace_len, quantile_sorted,
};
pub use emd::{
    EMD_MAX_POINTS, EMD_PRICE_TOLERANCE, EMD_WEIGHT_SUM_TOLERANCE, Emd, EmdLen, GroundCost,
    PlanEntry, emd, emd_max_pivots, emd_workspace_len, wasserstein1,
};
pub use energy::{energy_distance, energy_distance_gradient};
pub use sliced::{
    random_directions, sliced_wasserstein, sliced_wasserstein_with,
    sliced_wasserstein_workspace_len,
};
pub use spectrum::{MAX_SPECTRUM_DIM, diffusion_from_factor, diffusion_spectrum};

use crate::error::{Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;

/// Checks a cloud of `rows×d` finite values named `arg` with `rows ≥ 1`,
/// and returns `rows`.
pub(crate) fn check_cloud<F: Float>(cloud: &[F], d: usize, arg: &'static str) -> Result<usize> {
    if d == 0 {
        return Err(Error::bad_dim("d", "dimension is zero"));
    }
    let rows = cloud.len() / d;
    if rows == 0 {
        return Err(Error::bad_dim(arg, "empty cloud"));
    }
    check_len(cloud, checked_mul(rows, d, arg)?, arg)?;
    check_finite(cloud, arg)?;
    Ok(rows)
}
