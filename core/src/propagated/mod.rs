//! Jacobian-propagated diffusion: how a diffusion rate `D` acting along the
//! drift's flow shows up in the second moment of the increment over a
//! finite frame gap `h`.
//!
//! From a state `z_t` at time `t`, to leading order in the noise, the
//! increment's second moment about the drift's flow `φ_h(z_t)` is
//!
//! ```text
//! Σ_h = M_h(D) = ∫₀ʰ Φ(h,s) D(z_s, t+s) Φ(h,s)ᵀ ds,
//! ```
//!
//! with `z_s` the flow of the drift from `z_t` and `Φ(h,s) = ∂z_h/∂z_s` its
//! Jacobian, the solution of the variational equation `dΦ/ds = J_f Φ`
//! (`J_f[a][b] = ∂f_a/∂z_b`). As `h → 0`, `M_h(D) = h D + O(h²)`, which is
//! what the naive target `E[r rᵀ]/h` assumes; at real frame gaps the drift
//! rotates and contracts the noise over the gap and `M_h(D)/h` differs from
//! `D` by tens of percent (DESIGN.md).
//!
//! [`propagate`] integrates the flow and the variational equation together
//! by `N` classic RK4 substeps and stores, at the nodes `s_k = k h/N`
//! (`k = 0..=N`), the node state `z_{s_k}` and the propagator
//! `P_k = Φ(h, s_k)`. [`propagate_frozen`] fills the same outputs at a
//! fraction of the cost: the same flow, but one drift Jacobian per row, at
//! the gap's midpoint, held constant over the gap (exact for a linear
//! drift). [`Propagation`] then applies, per row,
//!
//! ```text
//! M_h(D)   = Σ_k w_k P_k D_k P_kᵀ          (D at the nodes, or one D per row)
//! M_hᵀ(R)_k = w_k P_kᵀ R P_k               (its adjoint in ⟨A,B⟩ = tr AᵀB)
//! ```
//!
//! with the weights `w_k` of [`quadrature_weight`] (composite Simpson,
//! fourth order), the propagated moment-matching loss and its gradient, and
//! the explicit estimator that solves `M_h(D) = h D̂` for a symmetric PSD `D`.
//!
//! ## Files
//!
//! - `quadrature`: the nodes of a gap, their weights, the gap's midpoint.
//! - `variational`: [`propagate`] and [`propagate_frozen`], the RK4
//!   engine of the flow and its variational equation.
//! - `moment`: [`Propagation`], the map `M_h` and its adjoint.
//! - `loss`: the propagated moment-matching loss and its gradient.
//! - `estimator`: the explicit estimator (`M_h(D) = h D̂` solved for `D`).

mod estimator;
mod loss;
mod moment;
mod quadrature;
mod variational;

pub use moment::{DiffusionAt, Propagation};
pub use quadrature::{gap_midpoints, node_times, quadrature_weight};
pub use variational::{
    PROPAGATE_BLOCK_ROWS, propagate, propagate_frozen, propagate_workspace_len,
    propagate_workspace_len_for,
};

#[cfg(test)]
mod tests;
