//! The explicit propagated estimator: per row, the symmetric `D` held
//! constant over the gap that solves `M_h(D) = h D̂`, projected to PSD.

use super::moment::Propagation;
use super::quadrature::quadrature_weight;
use crate::error::{Detail, Result, check_finite, check_len, check_room};
use crate::float::Float;
use crate::linalg::{nearest_psd_in_place, solve_in_place};

impl<F: Float> Propagation<'_, F> {
    /// Workspace elements of [`Propagation::explicit_diffusion`].
    pub fn explicit_diffusion_workspace_len(&self) -> usize {
        let m = self.d * (self.d + 1) / 2;
        m * m + m + self.d * self.d + self.d
    }

    /// The explicit propagated estimator: for each row, the symmetric `D`
    /// (held constant over the gap, [`DiffusionAt::Constant`](super::DiffusionAt::Constant)) that solves
    /// `M_h(D) = h_r D̂_r` — `d(d+1)/2` unknowns, a dense pivoted solve —
    /// projected to the nearest positive semi-definite matrix (eigenvalues
    /// clipped at 0). `target` is `D̂` per unit time as in
    /// [`Propagation::moment_loss`] (its symmetric part is used); `out` is
    /// `rows×d×d`. A singular system is [`ErrorKind::NumericalFailure`](crate::ErrorKind::NumericalFailure)
    /// with the row index.
    ///
    /// Which `D` this is: when the true `D` varies along the path, the
    /// constant that reproduces `M_h` is `D` at the gap's midpoint state
    /// `φ_{h/2}(z_t)` (node `N/2` of [`propagate`](super::propagate)'s states for even `N`) up
    /// to `O(h²)`: expanding `D(z_s)` about `s = h/2`, the linear term
    /// integrates to `−h³/12 (J D′ + D′Jᵀ)`, against `h D` for the constant.
    /// Read as `D(z_t)` it carries an `O(h)` lag.
    pub fn explicit_diffusion(
        &self,
        target: &[F],
        out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let d = self.d;
        let dd = d * d;
        let m = d * (d + 1) / 2;
        let rows = self.rows();
        check_len(target, rows * dd, "target")?;
        check_finite(target, "target")?;
        check_len(out, rows * dd, "out")?;
        check_room(
            workspace,
            self.explicit_diffusion_workspace_len(),
            "workspace",
        )?;
        let (system, rest) = workspace.split_at_mut(m * m);
        let (rhs, rest) = rest.split_at_mut(m);
        let (vectors, rest) = rest.split_at_mut(dd);
        let values = &mut rest[..d];
        let nodes = self.substeps + 1;
        for r in 0..rows {
            let hr = self.h[r];
            let props = &self.propagators[r * nodes * dd..(r + 1) * nodes * dd];
            // Unknowns and equations are the upper triangles (a ≤ b), in
            // row-major order; column (a,b) is M_h(E_ab + E_ba) (E_aa once).
            system.fill(F::ZERO);
            for k in 0..nodes {
                let w = hr * quadrature_weight::<F>(k, self.substeps);
                let p = &props[k * dd..(k + 1) * dd];
                let mut eq = 0;
                for c in 0..d {
                    for e in c..d {
                        let mut col = 0;
                        for a in 0..d {
                            for b in a..d {
                                let mut v = p[c * d + a] * p[e * d + b];
                                if a != b {
                                    v += p[c * d + b] * p[e * d + a];
                                }
                                system[eq * m + col] += w * v;
                                col += 1;
                            }
                        }
                        eq += 1;
                    }
                }
            }
            let target_r = &target[r * dd..(r + 1) * dd];
            let mut eq = 0;
            for c in 0..d {
                for e in c..d {
                    rhs[eq] = hr * (target_r[c * d + e] + target_r[e * d + c]) * F::HALF;
                    eq += 1;
                }
            }
            solve_in_place(system, m, rhs).map_err(|e| e.with(Detail::Index(r)))?;
            let out_r = &mut out[r * dd..(r + 1) * dd];
            let mut col = 0;
            for a in 0..d {
                for b in a..d {
                    out_r[a * d + b] = rhs[col];
                    out_r[b * d + a] = rhs[col];
                    col += 1;
                }
            }
            nearest_psd_in_place(out_r, d, values, vectors)
                .map_err(|e| e.with(Detail::Index(r)))?;
        }
        Ok(())
    }
}
