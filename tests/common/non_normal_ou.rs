//! The non-normal Ornstein–Uhlenbeck process of the issue-8 tests,
//! `dz = A z dt + L dW` in 3 dimensions ([`process`], a
//! [`LinearSde`]): a non-normal, rotating, stable `A` (eigenvalues
//! −0.8 ± 1.5i and −1.5, shear 2) and a constant full factor `L`:
//! `h‖A‖₂ ≈ 0.6` at the imaging gap `h = 0.2`, where the naive moment
//! target is off by about 20%. `LinearSde` is generic over the float type
//! (f64 for the estimator checks, f32 for the training pipeline).
//!
//! Use from an integration test binary:
//! `#[path = "common/non_normal_ou.rs"] mod non_normal_ou;`.

use morphosde_core::synthetic::LinearSde;

/// The drift matrix `A` (3×3, row-major).
pub const A: [f64; 9] = [-0.8, 1.5, 2.0, -1.5, -0.8, 0.0, 0.0, 0.0, -1.5];
/// The factor `L` (3×3, row-major).
pub const L: [f64; 9] = [0.3, 0.0, 0.0, 0.1, 0.2, 0.0, -0.05, 0.1, 0.25];

/// The process `dz = A z dt + L dW`.
pub fn process() -> LinearSde<'static> {
    LinearSde::new(3, &A, &[], &L, 3).unwrap()
}

/// The true `D = L Lᵀ` (3×3, row-major), the same at every state.
pub fn diffusion() -> [f64; 9] {
    let mut dm = [0.0; 9];
    process().diffusion(&mut dm);
    dm
}
