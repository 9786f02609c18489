//! Forward-mode Jacobian of the learned drift, for the propagated diffusion
//! targets (`propagate`): the `d` tangent directions `∂/∂z_b` are pushed
//! through the encoder alongside the forward pass,
//!
//! ```text
//! ṡ_1 = W_1[b, :]              (the z-rows of the first weight; time features do not move)
//! ȧ_l = silu′(s_l) ⊙ ṡ_l,      ṡ_{l+1} = ȧ_l W_{l+1},      ḟ = ȧ_depth W_f,
//! ```
//!
//! all `rows·d` tangents of a layer in one product through the same GEMM as
//! the forward pass, so one call costs about `d + 1` forward passes. In the
//! user's units the Jacobian is `S J_g S⁻¹` (`S = diag(s)`, see
//! [`super::inputs`]).

use super::{Layout, Learned, Units};
use crate::dynamics::DriftJacobian;
use crate::error::{Arena, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::linalg::gemm::{linear_forward, matmul_acc, matmul_scale_rows};
use crate::size::Size;

impl Layout {
    /// Workspace elements of [`Layout::drift_jacobian`] (and of the
    /// network's own) for `rows` states.
    pub fn jacobian_workspace_len(&self, rows: usize) -> usize {
        let (d, w) = (self.d, self.width);
        (Size(rows) * (d + self.n_in + 4 * w + 2 * d * w + d * d)).get()
    }

    /// Drift `f` (`rows×d`, the same values as [`Layout::forward_infer`])
    /// and its Jacobian `jac` (`rows×d×d`, `jac[a][b] = ∂f_a/∂z_b`) at
    /// states `z` (`rows×d`) and times `t` (`rows`), in the user's units.
    pub fn drift_jacobian<F: Float>(
        &self,
        params: &[F],
        z: &[F],
        t: &[F],
        f: &mut [F],
        jac: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let (standardised, rest) = self.standardised(params, z, t.len(), workspace)?;
        self.network_jacobian(params, standardised, t, f, jac, rest)?;
        self.outputs_to_user_units(params, f, &mut [], jac);
        Ok(())
    }

    /// The network's drift and Jacobian at standardised states (as
    /// [`Layout::drift_jacobian`], no change of units).
    fn network_jacobian<F: Float>(
        &self,
        params: &[F],
        z: &[F],
        t: &[F],
        f: &mut [F],
        jac: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let rows = t.len();
        let (d, w) = (self.d, self.width);
        check_len(params, self.len, "params")?;
        check_len(z, checked_mul(rows, d, "z")?, "z")?;
        check_finite(z, "z")?;
        check_finite(t, "t")?;
        check_len(f, rows * d, "f")?;
        check_len(jac, rows * d * d, "jac")?;
        let mut arena = Arena::new(workspace);
        let u = arena.take(rows * self.n_in)?;
        let s = arena.take(rows * w)?;
        let sig = arena.take(rows * w)?;
        let mut a = arena.take(rows * w)?;
        let mut a_next = arena.take(rows * w)?;
        let mut tangent = arena.take(rows * d * w)?;
        let mut tangent_next = arena.take(rows * d * w)?;
        let drift_tangent = arena.take(rows * d * d)?;
        self.input_features(params, z, t, u);
        let mut fan_in = self.n_in;
        for l in 0..self.depth {
            let input: &[F] = if l == 0 { u } else { a };
            self.hidden_forward(params, l, input, rows, fan_in, s, sig, a_next)?;
            // silu′(s) = σ + s σ (1 − σ), the same for every direction: once
            // per unit, in place of σ (not needed after the forward).
            let slope = &mut *sig;
            for (g, &s) in slope.iter_mut().zip(s.iter()) {
                *g += s * *g * (F::ONE - *g);
            }
            let weight = self.hidden_w[l].of(params);
            if l == 0 {
                // Rows 0..d of W_1 are the z inputs' weights: ȧ_1 = silu′ ⊙ W_1[b, :].
                for (block, deriv) in tangent_next
                    .chunks_exact_mut(d * w)
                    .zip(slope.chunks_exact(w))
                {
                    for (direction, w_row) in block.chunks_exact_mut(w).zip(weight.chunks_exact(w))
                    {
                        for ((x, &wv), &g) in direction.iter_mut().zip(w_row).zip(deriv) {
                            *x = wv * g;
                        }
                    }
                }
            } else {
                // ȧ_l = silu′(s_l) ⊙ (ȧ_{l−1} W_l): each state's d rows times
                // its slope row.
                matmul_scale_rows(tangent, weight, rows * d, w, w, slope, d, tangent_next);
            }
            core::mem::swap(&mut a, &mut a_next);
            core::mem::swap(&mut tangent, &mut tangent_next);
            fan_in = w;
        }
        let (dw, db) = (self.drift_w.of(params), self.drift_b.of(params));
        if self.depth > 0 {
            linear_forward(a, dw, db, rows, w, d, f)?;
            drift_tangent.fill(F::ZERO);
            matmul_acc(tangent, false, dw, rows * d, w, d, drift_tangent);
        } else {
            linear_forward(u, dw, db, rows, self.n_in, d, f)?;
            for block in drift_tangent.chunks_exact_mut(d * d) {
                block.copy_from_slice(&dw[..d * d]);
            }
        }
        // drift_tangent[r][b][a] = ∂f_a/∂z_b: transpose each row's block.
        for (src, dst) in drift_tangent
            .chunks_exact(d * d)
            .zip(jac.chunks_exact_mut(d * d))
        {
            for b in 0..d {
                for a in 0..d {
                    dst[a * d + b] = src[b * d + a];
                }
            }
        }
        Ok(())
    }
}

impl<F: Float> DriftJacobian<F> for Learned<'_, F> {
    fn jacobian_workspace_len(&self, rows: usize) -> usize {
        self.layout.jacobian_workspace_len(rows)
    }
    fn drift_jacobian(&self, z: &[F], t: &[F], f: &mut [F], jac: &mut [F], workspace: &mut [F]) {
        let (layout, params) = (&self.layout, self.params);
        let result = match self.units {
            Units::User => layout.drift_jacobian(params, z, t, f, jac, workspace),
            Units::Standardised => layout.network_jacobian(params, z, t, f, jac, workspace),
        };
        if result.is_err() {
            f.fill(F::from_f64(f64::NAN));
            jac.fill(F::from_f64(f64::NAN));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, DiffusionHead, Inputs};
    use super::*;
    use crate::dynamics::Dynamics;
    use crate::rng::{Family, Rng};
    use std::vec;

    #[test]
    fn jacobian_matches_central_differences_of_the_drift() {
        let base = Config {
            d: 3,
            time_features: 4,
            depth: 2,
            width: 7,
            ..Config::default()
        };
        for (ci, config) in [
            base,
            Config { depth: 0, ..base },
            Config {
                depth: 1,
                time_features: 0,
                ..base
            },
            Config {
                d: 4,
                depth: 3,
                width: 5,
                head: Some(DiffusionHead::Full),
                ..base
            },
            // Scaled time features (times in the data's unit stay unscaled).
            Config {
                time_scale: 3.7,
                ..base
            },
        ]
        .into_iter()
        .enumerate()
        {
            let layout = Layout::new(&config).unwrap();
            let mut params = vec![0.0f64; layout.len];
            layout.init(3, &mut params).unwrap();
            // Non-zero biases so every unit sits somewhere on the SiLU curve.
            Rng::stream(5, Family::Data, 0).fill_normal(&mut params[layout.hidden_b[0].range()]);
            // Every other case in user units far from the network's: the
            // Jacobian is S J_g S⁻¹ (and the span clamps t = 0.1 and −0.4).
            if ci % 2 == 1 {
                let mut inputs = Inputs::identity(config.d);
                for k in 0..config.d {
                    inputs.mean[k] = 10.0 * k as f64 - 5.0;
                    inputs.scale[k] = [1e-3, 20.0, 0.5, 3.0][k % 4];
                }
                inputs.time_span = [0.2, 0.6];
                layout.set_inputs(&mut params, &inputs).unwrap();
            }
            let model = Learned::new(&config, &params).unwrap();
            let (d, rows) = (config.d, 3);
            let mut z = vec![0.0; rows * d];
            Rng::stream(5, Family::Data, 1).fill_normal(&mut z);
            // States on the model's own scale.
            let inputs = layout.inputs(&params);
            for (k, v) in z.iter_mut().enumerate() {
                *v = inputs.mean[k % d] + inputs.scale[k % d] * *v;
            }
            let t = [0.1, 0.7, -0.4];
            let mut ws = vec![
                0.0;
                model
                    .jacobian_workspace_len(rows)
                    .max(model.workspace_len(rows))
            ];
            let (mut f, mut jac) = (vec![0.0; rows * d], vec![0.0; rows * d * d]);
            model.drift_jacobian(&z, &t, &mut f, &mut jac, &mut ws);
            let mut f_ref = vec![0.0; rows * d];
            model.drift(&z, &t, &mut f_ref, &mut ws);
            assert_eq!(f, f_ref, "{config:?}");
            let (mut fp, mut fm) = (vec![0.0; rows * d], vec![0.0; rows * d]);
            let mut worst: f64 = 0.0;
            for b in 0..d {
                let eps = 1e-6 * inputs.scale[b];
                let (mut zp, mut zm) = (z.clone(), z.clone());
                for r in 0..rows {
                    zp[r * d + b] += eps;
                    zm[r * d + b] -= eps;
                }
                model.drift(&zp, &t, &mut fp, &mut ws);
                model.drift(&zm, &t, &mut fm, &mut ws);
                for r in 0..rows {
                    for a in 0..d {
                        let fd = (fp[r * d + a] - fm[r * d + a]) / (2.0 * eps);
                        let an = jac[r * d * d + a * d + b];
                        let floor = 1e-2 * inputs.scale[a] / inputs.scale[b];
                        worst = worst.max((fd - an).abs() / an.abs().max(floor));
                    }
                }
            }
            assert!(worst < 1e-7, "{config:?}: {worst:e}");
        }
    }

    #[test]
    fn bad_input_gives_an_error_and_nan_through_the_trait() {
        let config = Config {
            d: 2,
            depth: 1,
            width: 4,
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let params = vec![0.1f32; layout.len];
        let mut ws = vec![0.0f32; layout.jacobian_workspace_len(1)];
        let (mut f, mut jac) = ([0.0f32; 2], [0.0f32; 4]);
        let e = layout
            .drift_jacobian(&params, &[0.0, f32::NAN], &[0.0], &mut f, &mut jac, &mut ws)
            .unwrap_err();
        assert_eq!(e.arg, "z");
        let e = layout
            .drift_jacobian(&params, &[0.0, 0.0], &[0.0], &mut f, &mut jac[..3], &mut ws)
            .unwrap_err();
        assert_eq!(e.arg, "jac");
        let e = layout
            .drift_jacobian(&params, &[0.0, 0.0], &[0.0], &mut f, &mut jac, &mut ws[..3])
            .unwrap_err();
        assert_eq!(e.arg, "workspace");
        let model = Learned::new(&config, &params).unwrap();
        model.drift_jacobian(&[0.0, 0.0], &[0.0], &mut f, &mut jac, &mut ws[..3]);
        assert!(f[0].is_nan() && jac[3].is_nan());
    }
}
