//! Diffusion heads: the raw head outputs of one state (`p` numbers) become
//! the factor `L` (`d×q`, row-major) with `D = L Lᵀ`, and back.
//!
//! - Full: `p = d(d+1)/2` lower-triangle entries in row order
//!   (`raw[i(i+1)/2 + j]` is `L_ij`, `j ≤ i`); `L_ii = softplus(raw) + ε`.
//!   `q = d`; every SPD `D` is reachable (Cholesky).
//! - Low rank: `p = d·q`, `L` dense `d×q` taken as is (no positivity
//!   constraint is needed: `L Lᵀ` is PSD for any `L`). This pays off when
//!   `q ≪ d`: the head has `d·q` outputs instead of `d(d+1)/2`, forming
//!   `L Lᵀ` and drawing noise cost `O(d q)` per state and step instead of
//!   `O(d²)`, and the noise `Z ∈ R^q` lives in a `q`-dimensional subspace —
//!   the right model when the variability of a morphology embedding is
//!   carried by a few modes (e.g. a 32-d embedding whose noise is a
//!   handful of shape modes). For `d ≲ 8` or genuinely full-rank noise use
//!   the full head.
//! - Diagonal: `p = d`, `L = diag(softplus(raw) + ε)` (ablation: it cannot
//!   represent correlated noise).
//!
//! Optional trace cap: when `c > 0` and `tr D = ‖L‖²_F > c`, `L` is scaled
//! to `L·√(c / ‖L‖²_F)` (projection onto the sphere), differentiably.

use super::config::DiffusionHead;
use crate::float::Float;

/// Outputs `p` of a head for dimension `d` and rank `q`.
pub fn head_outputs(head: DiffusionHead, d: usize, q: usize) -> usize {
    match head {
        DiffusionHead::Full => d * (d + 1) / 2,
        DiffusionHead::LowRank { .. } => d * q,
        DiffusionHead::Diagonal => d,
    }
}

/// Shape of one head: kind, `d`, `q` (columns of `L`), `ε_diff` and the
/// trace cap (0 = off).
#[derive(Clone, Copy, Debug)]
pub struct HeadShape<F> {
    pub head: DiffusionHead,
    pub d: usize,
    pub q: usize,
    pub epsilon: F,
    pub clip_trace: F,
}

impl<F: Float> HeadShape<F> {
    /// `L` (`d×q`) of one state from its raw outputs (`p`).
    pub fn factor(&self, raw: &[F], l: &mut [F]) {
        self.factor_unclipped(raw, l);
        if let Some(s) = self.clip_scale(l) {
            for v in l.iter_mut() {
                *v *= s;
            }
        }
    }

    fn factor_unclipped(&self, raw: &[F], l: &mut [F]) {
        let d = self.d;
        match self.head {
            DiffusionHead::Full => {
                l.fill(F::ZERO);
                let mut k = 0;
                for i in 0..d {
                    for j in 0..i {
                        l[i * d + j] = raw[k];
                        k += 1;
                    }
                    l[i * d + i] = raw[k].softplus() + self.epsilon;
                    k += 1;
                }
            }
            DiffusionHead::LowRank { .. } => l.copy_from_slice(raw),
            DiffusionHead::Diagonal => {
                l.fill(F::ZERO);
                for i in 0..d {
                    l[i * d + i] = raw[i].softplus() + self.epsilon;
                }
            }
        }
    }

    /// The cap's scale `√(c/‖L‖²)` when it is active.
    fn clip_scale(&self, l: &[F]) -> Option<F> {
        if self.clip_trace > F::ZERO {
            let n2: F = l.iter().map(|&v| v * v).sum();
            if n2 > self.clip_trace {
                return Some((self.clip_trace / n2).sqrt());
            }
        }
        None
    }

    /// Gradient with respect to the raw outputs: `draw = ∂/∂raw` given
    /// `dl = ∂/∂L` of one state. `scratch` holds `d·q` elements.
    pub fn backward(&self, raw: &[F], dl: &[F], draw: &mut [F], scratch: &mut [F]) {
        let d = self.d;
        // Through the cap: dL0 = s (G − ⟨G, L0⟩/‖L0‖² L0).
        let l0 = scratch;
        self.factor_unclipped(raw, l0);
        let clip = self.clip_scale(l0);
        let n2: F = l0.iter().map(|&v| v * v).sum();
        let proj: F = l0.iter().zip(dl).map(|(&a, &b)| a * b).sum();
        let g = |idx: usize| match clip {
            None => dl[idx],
            Some(s) => s * (dl[idx] - proj / n2 * l0[idx]),
        };
        match self.head {
            DiffusionHead::Full => {
                let mut k = 0;
                for i in 0..d {
                    for j in 0..i {
                        draw[k] = g(i * d + j);
                        k += 1;
                    }
                    draw[k] = g(i * d + i) * raw[k].sigmoid();
                    k += 1;
                }
            }
            DiffusionHead::LowRank { .. } => {
                for (idx, o) in draw.iter_mut().enumerate() {
                    *o = g(idx);
                }
            }
            DiffusionHead::Diagonal => {
                for i in 0..d {
                    draw[i] = g(i * d + i) * raw[i].sigmoid();
                }
            }
        }
    }
}
