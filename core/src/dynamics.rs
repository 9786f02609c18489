//! The traits a drift implements to be integrated and propagated:
//! [`Dynamics`] (drift and diffusion factor on a block of states, what the
//! integrators and the snapshot sampler need) and [`DriftJacobian`] (the
//! drift with its Jacobian, what the propagated map needs). The learned
//! model and the ground-truth processes implement them; `integrate`,
//! `propagated` and `synthetic` use them. Ground floor: only the float
//! trait below.

use crate::float::Float;

/// A drift `f(z, t)` and, when it has one, a diffusion factor `L(z, t)`
/// (`d×q`, so `D = L Lᵀ` is the covariance rate per unit time, Itô),
/// evaluated on a block of `rows` states at once.
///
/// Shapes (row-major): `z` and `f` are `rows×d`; `t` holds one time per row;
/// `l` is `rows×d×q` (row `r`'s factor is the `d×q` block at `r*d*q`).
/// Callers guarantee these lengths and a workspace of at least
/// [`Dynamics::workspace_len`]`(rows)`; implementations may then assume
/// them (they are the integrators' inner loop, checked once outside).
pub trait Dynamics<F: Float> {
    /// State dimension `d`.
    fn dim(&self) -> usize;
    /// Noise dimension `q` of the factor (`d` for full and diagonal heads,
    /// the rank for low-rank heads); 0 when there is no diffusion.
    fn noise_dim(&self) -> usize;
    /// Workspace elements needed to evaluate `rows` states at once.
    fn workspace_len(&self, rows: usize) -> usize;
    /// Drift `f` at each row's state and time.
    fn drift(&self, z: &[F], t: &[F], f: &mut [F], workspace: &mut [F]);
    /// Drift `f` and factor `l` at each row's state and time. Only called
    /// when [`Dynamics::noise_dim`] is positive.
    fn drift_and_factor(&self, z: &[F], t: &[F], f: &mut [F], l: &mut [F], workspace: &mut [F]);
}

/// A drift whose Jacobian can be evaluated with it: what
/// [`crate::propagated::propagate`] needs. Same shape conventions as [`Dynamics`]; callers guarantee the
/// lengths and a workspace of at least
/// [`DriftJacobian::jacobian_workspace_len`]`(rows)`.
pub trait DriftJacobian<F: Float>: Dynamics<F> {
    /// Workspace elements [`DriftJacobian::drift_jacobian`] needs for `rows`
    /// states at once.
    fn jacobian_workspace_len(&self, rows: usize) -> usize;
    /// Drift `f` (`rows×d`) and its Jacobian `jac` (`rows×d×d`, row `r`'s
    /// block row-major with `jac[a][b] = ∂f_a/∂z_b`) at each row's state and
    /// time.
    fn drift_jacobian(&self, z: &[F], t: &[F], f: &mut [F], jac: &mut [F], workspace: &mut [F]);
}
