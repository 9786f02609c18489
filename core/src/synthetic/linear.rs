//! The linear SDE `dz = (A z + b) dt + L dW` with constant `A`, `b` and
//! `L`: [`LinearSde`], the process whose moments, flow and propagated
//! covariance are known in closed form (`e^{At}`, the Lyapunov equation),
//! which is why the tests of the integrators, the targets and the
//! propagated map use it. Borrowed coefficients: any `d`, no allocation.

use crate::dynamics::{DriftJacobian, Dynamics};
use crate::error::{Error, Result, check_len};
use crate::float::Float;

/// `dz = (A z + b) dt + L dW` (Itô). `a` is `d×d` row-major; `b` has `d`
/// entries or none (`b = 0`); `l` is `d×q` row-major (`D = L Lᵀ`, the same
/// at every state), `q = 0` for an ODE.
#[derive(Clone, Copy, Debug)]
pub struct LinearSde<'a> {
    d: usize,
    q: usize,
    a: &'a [f64],
    b: &'a [f64],
    l: &'a [f64],
}

impl<'a> LinearSde<'a> {
    /// The process with drift matrix `a` (`d×d`), offset `b` (`d` or
    /// empty) and factor `l` (`d×q`, empty for no noise). Errors when a
    /// length does not fit `d` and `q`, or `d = 0`.
    pub fn new(d: usize, a: &'a [f64], b: &'a [f64], l: &'a [f64], q: usize) -> Result<Self> {
        if d == 0 {
            return Err(Error::bad_dim("d", "the dimension is zero"));
        }
        check_len(a, d * d, "a")?;
        if !b.is_empty() {
            check_len(b, d, "b")?;
        }
        check_len(l, d * q, "l")?;
        Ok(LinearSde { d, q, a, b, l })
    }

    /// The drift matrix `A` (`d×d`, row-major).
    pub fn drift_matrix(&self) -> &'a [f64] {
        self.a
    }

    /// The factor `L` (`d×q`, row-major).
    pub fn factor(&self) -> &'a [f64] {
        self.l
    }

    /// `D = L Lᵀ` (`d×d`, row-major) into `out` (at least `d²` long).
    pub fn diffusion(&self, out: &mut [f64]) {
        let (d, q) = (self.d, self.q);
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = (0..q).map(|k| self.l[i * q + k] * self.l[j * q + k]).sum();
            }
        }
    }
}

impl<F: Float> Dynamics<F> for LinearSde<'_> {
    fn dim(&self) -> usize {
        self.d
    }

    fn noise_dim(&self) -> usize {
        self.q
    }

    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }

    fn drift(&self, z: &[F], t: &[F], f: &mut [F], _workspace: &mut [F]) {
        let d = self.d;
        for r in 0..t.len() {
            let (zr, fr) = (&z[r * d..][..d], &mut f[r * d..][..d]);
            for (i, fi) in fr.iter_mut().enumerate() {
                let mut s = self.b.get(i).map_or(F::ZERO, |&b| F::from_f64(b));
                for (&aij, &zj) in self.a[i * d..][..d].iter().zip(zr) {
                    s += F::from_f64(aij) * zj;
                }
                *fi = s;
            }
        }
    }

    fn drift_and_factor(&self, z: &[F], t: &[F], f: &mut [F], l: &mut [F], workspace: &mut [F]) {
        self.drift(z, t, f, workspace);
        let dq = self.d * self.q;
        for r in 0..t.len() {
            for (x, &v) in l[r * dq..][..dq].iter_mut().zip(self.l) {
                *x = F::from_f64(v);
            }
        }
    }
}

impl<F: Float> DriftJacobian<F> for LinearSde<'_> {
    fn jacobian_workspace_len(&self, _rows: usize) -> usize {
        0
    }

    fn drift_jacobian(&self, z: &[F], t: &[F], f: &mut [F], jac: &mut [F], workspace: &mut [F]) {
        self.drift(z, t, f, workspace);
        let dd = self.d * self.d;
        for r in 0..t.len() {
            for (x, &v) in jac[r * dd..][..dd].iter_mut().zip(self.a) {
                *x = F::from_f64(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_factor_and_jacobian_are_the_coefficients() {
        let (a, b, l) = (
            [1.0, 2.0, -0.5, 0.25],
            [0.1, -0.2],
            [0.3, 0.0, 0.1, 0.2, 0.0, 0.4],
        );
        let sde = LinearSde::new(2, &a, &b, &l, 3).unwrap();
        let (z, t) = ([1.0f64, -2.0, 0.5, 4.0], [0.0, 3.0]);
        let (mut f, mut lf, mut jac) = ([0.0; 4], [0.0; 12], [0.0; 8]);
        sde.drift_and_factor(&z, &t, &mut f, &mut lf, &mut []);
        // Row r: A z_r + b.
        let want = [-2.9, -1.2, 8.6, 0.55];
        for (x, w) in f.iter().zip(want) {
            assert!((x - w).abs() < 1e-15, "{f:?}");
        }
        assert_eq!(lf[..6], l);
        assert_eq!(lf[6..], l);
        let mut f2 = [0.0; 4];
        sde.drift_jacobian(&z, &t, &mut f2, &mut jac, &mut []);
        assert_eq!((f2, &jac[..4], &jac[4..]), (f, &a[..], &a[..]));
        let mut dm = [0.0; 4];
        sde.diffusion(&mut dm);
        for (x, w) in dm.iter().zip([0.10, 0.10, 0.10, 0.20]) {
            assert!((x - w).abs() < 1e-15, "{dm:?}");
        }
    }

    #[test]
    fn lengths_that_do_not_fit_are_refused() {
        let a = [0.0; 4];
        assert!(LinearSde::new(2, &a[..3], &[], &[], 0).is_err());
        assert!(LinearSde::new(2, &a, &[1.0], &[], 0).is_err());
        assert!(LinearSde::new(2, &a, &[], &[1.0; 3], 2).is_err());
        assert!(LinearSde::new(0, &[], &[], &[], 0).is_err());
        assert_eq!(
            Dynamics::<f64>::noise_dim(&LinearSde::new(2, &a, &[], &[], 0).unwrap()),
            0
        );
    }
}
