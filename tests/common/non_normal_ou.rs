//! Linear SDEs `dz = A z dt + L dW` in 3 dimensions ([`LinearSde`]), and
//! the non-normal Ornstein–Uhlenbeck process of the issue-8 tests
//! ([`NON_NORMAL_OU`]): a non-normal, rotating, stable `A` (eigenvalues
//! −0.8 ± 1.5i and −1.5, shear 2) and a constant full factor `L`:
//! `h‖A‖₂ ≈ 0.6` at the imaging gap `h = 0.2`, where the naive moment
//! target is off by about 20%. Generic over the float type (f64 for the
//! estimator checks, f32 for the training pipeline).
//!
//! Use from an integration test binary:
//! `#[path = "common/non_normal_ou.rs"] mod non_normal_ou;`.

use morphosde_core::Float;
use morphosde_core::dynamics::DriftJacobian;
use morphosde_core::dynamics::Dynamics;

/// `dz = A z dt + L dW`, `A` and `L` 3×3 row-major.
pub struct LinearSde {
    pub a: [f64; 9],
    pub l: [f64; 9],
}

/// The non-normal OU process (see the module docs).
pub const NON_NORMAL_OU: LinearSde = LinearSde {
    a: [-0.8, 1.5, 2.0, -1.5, -0.8, 0.0, 0.0, 0.0, -1.5],
    l: [0.3, 0.0, 0.0, 0.1, 0.2, 0.0, -0.05, 0.1, 0.25],
};

impl LinearSde {
    /// The true `D = L Lᵀ` (3×3, row-major), the same at every state.
    pub fn diffusion(&self) -> [f64; 9] {
        let mut dm = [0.0; 9];
        for (c, x) in dm.iter_mut().enumerate() {
            let (i, j) = (c / 3, c % 3);
            *x = (0..3).map(|k| self.l[i * 3 + k] * self.l[j * 3 + k]).sum();
        }
        dm
    }
}

impl<F: Float> Dynamics<F> for LinearSde {
    fn dim(&self) -> usize {
        3
    }
    fn noise_dim(&self) -> usize {
        3
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[F], t: &[F], f: &mut [F], _ws: &mut [F]) {
        for r in 0..t.len() {
            for i in 0..3 {
                let mut s = F::ZERO;
                for j in 0..3 {
                    s += F::from_f64(self.a[i * 3 + j]) * z[r * 3 + j];
                }
                f[r * 3 + i] = s;
            }
        }
    }
    fn drift_and_factor(&self, z: &[F], t: &[F], f: &mut [F], l: &mut [F], ws: &mut [F]) {
        self.drift(z, t, f, ws);
        for r in 0..t.len() {
            for (x, &v) in l[r * 9..(r + 1) * 9].iter_mut().zip(&self.l) {
                *x = F::from_f64(v);
            }
        }
    }
}

impl<F: Float> DriftJacobian<F> for LinearSde {
    fn jacobian_workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift_jacobian(&self, z: &[F], t: &[F], f: &mut [F], jac: &mut [F], ws: &mut [F]) {
        self.drift(z, t, f, ws);
        for r in 0..t.len() {
            for (x, &v) in jac[r * 9..(r + 1) * 9].iter_mut().zip(&self.a) {
                *x = F::from_f64(v);
            }
        }
    }
}
