//! Optimiser: Adam (with optional decoupled weight decay, AdamW) over a flat
//! parameter slice, and global gradient-norm clipping. Moments live in
//! caller slices laid out like the parameters.

use crate::error::{Result, check_len};
use crate::float::Float;

/// Adam constants (the step size included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam<F> {
    pub learning_rate: F,
    pub beta1: F,
    pub beta2: F,
    pub epsilon: F,
    /// Decoupled weight decay `λ_wd`: `θ ← θ − lr·λ_wd·θ` before the Adam
    /// update (0 = plain Adam).
    pub weight_decay: F,
}

impl<F: Float> Adam<F> {
    /// Step number `step` (1-based) of Adam: `m ← β₁m + (1−β₁)g`,
    /// `v ← β₂v + (1−β₂)g²`, `θ ← θ − lr·m̂/(√v̂ + ε)` with the bias
    /// corrections `m̂ = m/(1−β₁^step)`, `v̂ = v/(1−β₂^step)`.
    pub fn update(
        &self,
        step: u64,
        params: &mut [F],
        grad: &[F],
        m: &mut [F],
        v: &mut [F],
    ) -> Result<()> {
        let n = params.len();
        check_len(grad, n, "grad")?;
        check_len(m, n, "adam_m")?;
        check_len(v, n, "adam_v")?;
        let exponent = step.min(i32::MAX as u64) as i32;
        let c1 = F::ONE - self.beta1.powi(exponent);
        let c2 = F::ONE - self.beta2.powi(exponent);
        let lr_t = self.learning_rate * c2.sqrt() / c1;
        let eps_t = self.epsilon * c2.sqrt();
        let decay = F::ONE - self.learning_rate * self.weight_decay;
        let (b1, b2) = (self.beta1, self.beta2);
        for (((p, &g), mi), vi) in params
            .iter_mut()
            .zip(grad)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            *mi = b1 * *mi + (F::ONE - b1) * g;
            *vi = b2 * *vi + (F::ONE - b2) * g * g;
            *p = *p * decay - lr_t * *mi / (vi.sqrt() + eps_t);
        }
        Ok(())
    }
}

/// Euclidean norm of `grad`, accumulated in f64 order-independently of the
/// float type's range (no overflow for f32 gradients up to its maximum).
pub fn grad_norm<F: Float>(grad: &[F]) -> F {
    F::from_f64(libm::sqrt(
        grad.iter().map(|g| g.to_f64() * g.to_f64()).sum::<f64>(),
    ))
}

/// Scales `grad` so its norm is at most `max_norm` (no-op when
/// `max_norm ≤ 0`, "off"); returns the norm before clipping.
pub fn clip_grad_norm<F: Float>(grad: &mut [F], max_norm: F) -> F {
    let norm = grad_norm(grad);
    if max_norm > F::ZERO && norm > max_norm {
        let s = max_norm / norm;
        for g in grad.iter_mut() {
            *g *= s;
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps against the textbook formulas written out by hand.
    #[test]
    fn adam_matches_the_textbook_update() {
        let adam = Adam {
            learning_rate: 0.1f64,
            beta1: 0.9,
            beta2: 0.99,
            epsilon: 1e-8,
            weight_decay: 0.0,
        };
        let mut p = [1.0, -2.0];
        let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
        let g1 = [0.5, -1.0];
        adam.update(1, &mut p, &g1, &mut m, &mut v).unwrap();
        // First step: m̂ = g, v̂ = g², so θ moves by lr·sign(g) (up to ε).
        assert!((p[0] - 0.9).abs() < 1e-7 && (p[1] + 1.9).abs() < 1e-7);
        let g2 = [0.25, 2.0];
        adam.update(2, &mut p, &g2, &mut m, &mut v).unwrap();
        for i in 0..2 {
            let m2 = 0.9 * 0.1 * g1[i] + 0.1 * g2[i];
            let v2 = 0.99 * 0.01 * g1[i] * g1[i] + 0.01 * g2[i] * g2[i];
            let (mh, vh) = (m2 / (1.0 - 0.81), v2 / (1.0 - 0.9801));
            let before = if i == 0 { 0.9 } else { -1.9 };
            let want = before - 0.1 * mh / (libm::sqrt(vh) + 1e-8);
            assert!((p[i] - want).abs() < 1e-7, "{i}: {} vs {want}", p[i]);
        }
        // Weight decay shrinks towards zero with a zero gradient.
        let wd = Adam {
            weight_decay: 0.5,
            ..adam
        };
        let mut q = [2.0];
        wd.update(1, &mut q, &[0.0], &mut [0.0], &mut [0.0])
            .unwrap();
        assert!((q[0] - 2.0 * (1.0 - 0.05)).abs() < 1e-12);
    }

    #[test]
    fn clipping_caps_the_norm_and_reports_it() {
        let mut g = [3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((grad_norm(&g) - 1.0).abs() < 1e-6);
        let mut g = [3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 0.0), 5.0);
        assert_eq!(g, [3.0, 4.0]);
        // f32 values whose squares overflow f32 still give a finite norm.
        assert!(grad_norm(&[3e30f32, 4e30]).is_finite());
    }
}
