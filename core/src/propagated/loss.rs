//! The propagated moment-matching loss of the diffusion against flow
//! residual moments, and its gradient through the adjoint.

use super::moment::{DiffusionAt, Propagation};
use crate::error::{Error, ErrorKind, Result, check_finite, check_len, check_room};
use crate::float::Float;

impl<F: Float> Propagation<'_, F> {
    /// The propagated moment-matching loss
    ///
    /// ```text
    /// L = (1/rows) Σ_r ‖M_h(D)_r / h_r − D̂_r‖²_F
    ///   = (1/rows) Σ_r ‖M_h(D)_r − Σ̂_r‖²_F / h_r²,   Σ̂_r = h_r D̂_r,
    /// ```
    ///
    /// with `target` the per-unit-time moments `D̂_r` (`rows×d×d`) of flow
    /// residuals (the second moment `Σ̂` over the gap divided by `h`). Writes
    /// `grad = ∂L/∂D` in the layout of `diffusion` (general, unsymmetrised
    /// matrices: for `D = L Lᵀ` chain with `∂L/∂L = (G + Gᵀ) L`) and returns
    /// `L`. Needs at least one row; a non-finite loss is
    /// [`ErrorKind::NumericalFailure`].
    pub fn moment_loss(
        &self,
        at: DiffusionAt,
        diffusion: &[F],
        target: &[F],
        grad: &mut [F],
        workspace: &mut [F],
    ) -> Result<F> {
        let rows = self.rows();
        if rows == 0 {
            return Err(Error::bad_dim("h", "the loss needs at least one row"));
        }
        let dd = self.d * self.d;
        let per = self.matrices_per_row(at) * dd;
        check_len(diffusion, rows * per, "diffusion")?;
        check_finite(diffusion, "diffusion")?;
        check_len(target, rows * dd, "target")?;
        check_finite(target, "target")?;
        check_len(grad, rows * per, "grad")?;
        check_room(workspace, self.workspace_len(), "workspace")?;
        let (residual, rest) = workspace.split_at_mut(dd);
        let tmp = &mut rest[..dd];
        let inv_rows = F::ONE / F::from_usize(rows);
        let mut loss = F::ZERO;
        for r in 0..rows {
            self.map_row(r, at, &diffusion[r * per..(r + 1) * per], residual, tmp);
            let inv_h = F::ONE / self.h[r];
            let mut sq = F::ZERO;
            for (e, &target) in residual.iter_mut().zip(&target[r * dd..(r + 1) * dd]) {
                *e = *e * inv_h - target;
                sq += *e * *e;
            }
            loss += sq;
            // ∂L/∂M_r = 2 E_r / (rows h_r); pulled back through the adjoint.
            let scale = F::TWO * inv_rows * inv_h;
            for e in residual.iter_mut() {
                *e *= scale;
            }
            self.adjoint_row(r, at, residual, &mut grad[r * per..(r + 1) * per], tmp);
        }
        let loss = loss * inv_rows;
        if !loss.is_finite() {
            return Err(Error::new(
                ErrorKind::NumericalFailure,
                "diffusion",
                "the propagated moment loss is not finite",
            ));
        }
        Ok(loss)
    }
}
