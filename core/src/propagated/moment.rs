//! The propagated moment map of a batch of rows, read from
//! [`super::propagate`]'s propagators: `D ↦ M_h(D) = Σ_k w_k P_k D_k P_kᵀ`
//! and its adjoint `R ↦ M_hᵀ(R)`, with `D` along the path or held constant
//! over the gap ([`DiffusionAt`]).

use super::quadrature::{check_gaps, check_substeps, quadrature_weight};
use crate::error::{Error, Result, check_finite, check_len, check_room, checked_mul};
use crate::float::Float;
use crate::linalg::gemm::matmul_acc;

/// Where the diffusion rate `D` of the propagated map is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffusionAt {
    /// At every node state `z_{s_k}` (and time `t + s_k`):
    /// `rows×(N+1)×d×d`, the layout of [`propagate`](super::propagate)'s `states` with each
    /// state replaced by its `d×d` matrix.
    Path,
    /// One `D` per row held constant over the gap: `rows×d×d`. One
    /// evaluation of `D` per row; exact when `D` is constant. Evaluated at
    /// the gap's midpoint state (node `N/2` for even `N`) it stands for the
    /// varying `D` to `O(h²)`, at the start state `z_t` (already at hand in
    /// a training step) to `O(h)` (see [`Propagation::explicit_diffusion`]).
    Constant,
}

/// The linear maps `D ↦ M_h(D)` and `R ↦ M_hᵀ(R)` of a batch of rows, read
/// from [`propagate`](super::propagate)'s propagators (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Propagation<'a, F> {
    pub(super) d: usize,
    pub(super) substeps: usize,
    pub(super) h: &'a [F],
    pub(super) propagators: &'a [F],
}

impl<'a, F: Float> Propagation<'a, F> {
    /// Wraps [`propagate`](super::propagate)'s output for rows with gaps `h` (`rows`, each
    /// finite and positive); `propagators` is `rows×(substeps+1)×d×d`.
    pub fn new(d: usize, substeps: usize, h: &'a [F], propagators: &'a [F]) -> Result<Self> {
        if d == 0 {
            return Err(Error::bad_dim("d", "state dimension is zero"));
        }
        check_substeps(substeps)?;
        check_gaps(h)?;
        let per_row = checked_mul(checked_mul(d, d, "d")?, substeps + 1, "d")?;
        check_len(
            propagators,
            checked_mul(h.len(), per_row, "propagators")?,
            "propagators",
        )?;
        check_finite(propagators, "propagators")?;
        Ok(Propagation {
            d,
            substeps,
            h,
            propagators,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.h.len()
    }

    /// `d×d` matrices of `D` (and of the adjoint's output) per row.
    pub fn matrices_per_row(&self, at: DiffusionAt) -> usize {
        match at {
            DiffusionAt::Path => self.substeps + 1,
            DiffusionAt::Constant => 1,
        }
    }

    /// Workspace elements of [`Propagation::map`],
    /// [`Propagation::adjoint`] and [`Propagation::moment_loss`].
    pub fn workspace_len(&self) -> usize {
        2 * self.d * self.d
    }

    /// `out_r = M_h(D)_r = Σ_k w_k P_k D_k P_kᵀ` (`rows×d×d`), with
    /// `diffusion` laid out as [`DiffusionAt`] says.
    pub fn map(
        &self,
        at: DiffusionAt,
        diffusion: &[F],
        out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let dd = self.d * self.d;
        check_len(
            diffusion,
            self.rows() * self.matrices_per_row(at) * dd,
            "diffusion",
        )?;
        check_finite(diffusion, "diffusion")?;
        check_len(out, self.rows() * dd, "out")?;
        check_room(workspace, self.workspace_len(), "workspace")?;
        let per = self.matrices_per_row(at) * dd;
        for r in 0..self.rows() {
            self.map_row(
                r,
                at,
                &diffusion[r * per..(r + 1) * per],
                &mut out[r * dd..(r + 1) * dd],
                &mut workspace[..dd],
            );
        }
        Ok(())
    }

    /// The adjoint `out = M_hᵀ(R)`: per row, `w_k P_kᵀ R P_k` for each node
    /// ([`DiffusionAt::Path`], `rows×(N+1)×d×d`) or their sum
    /// ([`DiffusionAt::Constant`], `rows×d×d`), so that
    /// `⟨M_h(D), R⟩ = ⟨D, M_hᵀ(R)⟩` summed over rows. `r` is `rows×d×d`.
    pub fn adjoint(
        &self,
        at: DiffusionAt,
        r: &[F],
        out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let dd = self.d * self.d;
        check_len(r, self.rows() * dd, "r")?;
        check_finite(r, "r")?;
        let per = self.matrices_per_row(at) * dd;
        check_len(out, self.rows() * per, "out")?;
        check_room(workspace, self.workspace_len(), "workspace")?;
        for row in 0..self.rows() {
            self.adjoint_row(
                row,
                at,
                &r[row * dd..(row + 1) * dd],
                &mut out[row * per..(row + 1) * per],
                &mut workspace[..dd],
            );
        }
        Ok(())
    }

    /// Row `r`'s `M_h(D)` into `out` (`d×d`); `tmp` is `d×d` scratch.
    pub(super) fn map_row(
        &self,
        r: usize,
        at: DiffusionAt,
        diffusion: &[F],
        out: &mut [F],
        tmp: &mut [F],
    ) {
        let d = self.d;
        let dd = d * d;
        let nodes = self.substeps + 1;
        let props = &self.propagators[r * nodes * dd..(r + 1) * nodes * dd];
        // The kernel reads a transposed left factor but not a transposed
        // right one, so the sum is built transposed: with tmp = w (P_k D_k)ᵀ,
        // P_k tmp = (w P_k D_k P_kᵀ)ᵀ; `out` is transposed back at the end.
        out.fill(F::ZERO);
        for k in 0..nodes {
            let w = self.h[r] * quadrature_weight::<F>(k, self.substeps);
            let p = &props[k * dd..(k + 1) * dd];
            let dk = match at {
                DiffusionAt::Path => &diffusion[k * dd..(k + 1) * dd],
                DiffusionAt::Constant => diffusion,
            };
            tmp.fill(F::ZERO);
            matmul_acc(p, false, dk, d, d, d, tmp);
            transpose_scaled_in_place(tmp, d, w);
            matmul_acc(p, false, tmp, d, d, d, out);
        }
        transpose_scaled_in_place(out, d, F::ONE);
    }

    /// Row `row`'s adjoint of `r` (`d×d`) into `out` (the row's matrices as
    /// [`DiffusionAt`] lays them out); `tmp` is `d×d` scratch.
    pub(super) fn adjoint_row(
        &self,
        row: usize,
        at: DiffusionAt,
        r: &[F],
        out: &mut [F],
        tmp: &mut [F],
    ) {
        let d = self.d;
        let dd = d * d;
        let nodes = self.substeps + 1;
        let props = &self.propagators[row * nodes * dd..(row + 1) * nodes * dd];
        out.fill(F::ZERO);
        for k in 0..nodes {
            let w = self.h[row] * quadrature_weight::<F>(k, self.substeps);
            let p = &props[k * dd..(k + 1) * dd];
            // tmp = w R P_k, then o += P_kᵀ tmp.
            tmp.fill(F::ZERO);
            matmul_acc(r, false, p, d, d, d, tmp);
            for x in tmp.iter_mut() {
                *x *= w;
            }
            let o = match at {
                DiffusionAt::Path => &mut out[k * dd..(k + 1) * dd],
                DiffusionAt::Constant => &mut *out,
            };
            matmul_acc(p, true, tmp, d, d, d, o);
        }
    }
}

/// `m ← scale · mᵀ` for a `d×d` row-major matrix.
fn transpose_scaled_in_place<F: Float>(m: &mut [F], d: usize, scale: F) {
    for a in 0..d {
        m[a * d + a] *= scale;
        for b in a + 1..d {
            let (x, y) = (m[a * d + b], m[b * d + a]);
            m[a * d + b] = scale * y;
            m[b * d + a] = scale * x;
        }
    }
}
