//! Losses of the model and their gradients with respect to the model's
//! outputs (the network's own backward pass takes it from there).
//!
//! - drift MSE: `Σ w_i ‖f_i − v̂_i‖² / Σ w_i`;
//! - drift Gaussian NLL with a learned diagonal log-variance `s ∈ R^d`:
//!   `Σ w_i Σ_k ½[(f_ik − v̂_ik)² e^{−s_k} + s_k] / Σ w_i`;
//! - diffusion: `mean_i ‖L_i L_iᵀ − D̂_i‖²_F` (`D̂` is a target: constant).
//!
//! Weights come from the UOT row masses ([`mass_weights`]). A batch whose
//! weights sum to zero contributes a zero drift loss and gradient.

use crate::error::{Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::model::{DriftLoss, MassWeighting};

/// Drift-loss weights from row masses: `w_i = r_i`
/// ([`MassWeighting::RowMass`]) or `w_i = 1{r_i ≥ η}`
/// ([`MassWeighting::Threshold`]). Masses must be finite and ≥ 0.
pub fn mass_weights<F: Float>(
    weighting: MassWeighting,
    threshold: F,
    mass: &[F],
    weights: &mut [F],
) -> Result<()> {
    check_len(weights, mass.len(), "weights")?;
    check_finite(mass, "mass")?;
    if let Some(i) = mass.iter().position(|&r| r < F::ZERO) {
        return Err(
            Error::bad_dim("mass", "must be non-negative").with(crate::error::Detail::Index(i))
        );
    }
    for (w, &r) in weights.iter_mut().zip(mass) {
        *w = match weighting {
            MassWeighting::RowMass => r,
            MassWeighting::Threshold => {
                if r >= threshold {
                    F::ONE
                } else {
                    F::ZERO
                }
            }
        };
    }
    Ok(())
}

/// Drift loss of predictions `f` against teacher velocities `v` (`n×d`)
/// with weights `w` (`n`). Writes `df = ∂loss/∂f` (`n×d`) and, for
/// [`DriftLoss::Nll`], `d_log_var = ∂loss/∂s` (`d`; `log_var` is `s`).
/// For [`DriftLoss::Mse`] `log_var` and `d_log_var` are empty.
#[allow(clippy::too_many_arguments)]
pub fn drift_loss<F: Float>(
    kind: DriftLoss,
    f: &[F],
    v: &[F],
    w: &[F],
    log_var: &[F],
    d: usize,
    df: &mut [F],
    d_log_var: &mut [F],
) -> Result<F> {
    let n = w.len();
    let len = checked_mul(n, d, "f")?;
    check_len(f, len, "f")?;
    check_len(v, len, "v")?;
    check_len(df, len, "df")?;
    let var_len = if kind == DriftLoss::Nll { d } else { 0 };
    check_len(log_var, var_len, "log_var")?;
    check_len(d_log_var, var_len, "d_log_var")?;
    let total: F = w.iter().copied().sum();
    df.fill(F::ZERO);
    d_log_var.fill(F::ZERO);
    if total <= F::ZERO {
        return Ok(F::ZERO);
    }
    let inv = F::ONE / total;
    let mut loss = F::ZERO;
    for (i, &wr) in w.iter().enumerate() {
        let wi = wr * inv;
        for k in 0..d {
            let c = i * d + k;
            let e = f[c] - v[c];
            match kind {
                DriftLoss::Mse => {
                    loss += wi * e * e;
                    df[c] = F::TWO * wi * e;
                }
                DriftLoss::Nll => {
                    let prec = (-log_var[k]).exp();
                    loss += wi * F::HALF * (e * e * prec + log_var[k]);
                    df[c] = wi * e * prec;
                    d_log_var[k] += wi * F::HALF * (F::ONE - e * e * prec);
                }
            }
        }
    }
    Ok(loss)
}

/// Diffusion loss `mean_i ‖L_i L_iᵀ − D̂_i‖²_F` of factors `l` (`n×d×q`)
/// against targets `d_hat` (`n×d×d`); writes `dl = scale · ∂loss/∂L`
/// (`n×d×q`) and returns the unscaled loss. `scratch` holds `d·d` elements.
#[allow(clippy::too_many_arguments)]
pub fn diffusion_loss<F: Float>(
    l: &[F],
    d_hat: &[F],
    n: usize,
    d: usize,
    q: usize,
    scale: F,
    dl: &mut [F],
    scratch: &mut [F],
) -> Result<F> {
    let dq = checked_mul(d, q, "q")?;
    check_len(l, checked_mul(n, dq, "l")?, "l")?;
    check_len(dl, n * dq, "dl")?;
    check_len(d_hat, checked_mul(n, d * d, "d_hat")?, "d_hat")?;
    if scratch.len() < d * d {
        return Err(Error::too_small("scratch", d * d, scratch.len()));
    }
    let e = &mut scratch[..d * d];
    let inv_n = F::ONE / F::from_usize(n.max(1));
    let g = F::TWO * inv_n * scale;
    let mut loss = F::ZERO;
    for ((li, di), dli) in l
        .chunks_exact(dq)
        .zip(d_hat.chunks_exact(d * d))
        .zip(dl.chunks_exact_mut(dq))
    {
        // E = L Lᵀ − D̂ (rows of L are contiguous: dot products).
        for r in 0..d {
            let lr = &li[r * q..(r + 1) * q];
            for c in 0..=r {
                let lc = &li[c * q..(c + 1) * q];
                let s = crate::linalg::dot(lr, lc);
                e[r * d + c] = s - di[r * d + c];
                e[c * d + r] = s - di[c * d + r];
            }
        }
        loss += e.iter().map(|&v| v * v).sum::<F>();
        // ∂/∂L ‖E‖² = 2 (E + Eᵀ) L (= 4 E L for a symmetric D̂; the
        // general form is kept for any D̂): row r of dL is a sum of rows of
        // L, accumulated as unit-stride axpys.
        dli.fill(F::ZERO);
        for r in 0..d {
            let dlr = &mut dli[r * q..(r + 1) * q];
            for c in 0..d {
                let w = g * (e[r * d + c] + e[c * d + r]);
                for (o, &v) in dlr.iter_mut().zip(&li[c * q..(c + 1) * q]) {
                    *o += w * v;
                }
            }
        }
    }
    Ok(loss * inv_n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences in f64 of both losses.
    #[test]
    fn gradients_match_finite_differences() {
        let (n, d, q) = (3, 3, 2);
        let f: [f64; 9] = [0.3, -1.0, 0.5, 1.2, 0.1, -0.4, 0.0, 0.9, 2.0];
        let v: [f64; 9] = [0.1, -0.5, 0.7, 1.0, -0.3, 0.2, 0.4, 1.1, 1.5];
        let w = [0.5, 1.5, 0.25];
        let s = [0.2, -0.3, 0.7];
        for kind in [DriftLoss::Mse, DriftLoss::Nll] {
            let lv: &[f64] = if kind == DriftLoss::Nll { &s } else { &[] };
            let mut df = [0.0; 9];
            let mut ds = [0.0; 3];
            let ds = &mut ds[..lv.len()];
            drift_loss(kind, &f, &v, &w, lv, d, &mut df, ds).unwrap();
            let eval = |f: &[f64], lv: &[f64]| {
                let mut a = [0.0; 9];
                let mut b = [0.0; 3];
                drift_loss(kind, f, &v, &w, lv, d, &mut a, &mut b[..lv.len()]).unwrap()
            };
            for c in 0..9 {
                let (mut up, mut dn) = (f, f);
                up[c] += 1e-6;
                dn[c] -= 1e-6;
                let fd = (eval(&up, lv) - eval(&dn, lv)) / 2e-6;
                assert!((fd - df[c]).abs() < 1e-8, "{kind:?} df[{c}]");
            }
            for k in 0..lv.len() {
                let (mut up, mut dn) = (s, s);
                up[k] += 1e-6;
                dn[k] -= 1e-6;
                let fd = (eval(&f, &up) - eval(&f, &dn)) / 2e-6;
                assert!((fd - ds[k]).abs() < 1e-8, "ds[{k}]");
            }
        }
        // Diffusion loss, non-symmetric target to exercise the general form.
        let l: [f64; 18] = core::array::from_fn(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0);
        let dh: [f64; 27] = core::array::from_fn(|i| ((i * 5 % 13) as f64 - 6.0) / 5.0);
        let mut dl = [0.0; 18];
        let mut scratch = [0.0; 9];
        diffusion_loss(&l, &dh, n, d, q, 0.7, &mut dl, &mut scratch).unwrap();
        for c in 0..18 {
            let (mut up, mut dn) = (l, l);
            up[c] += 1e-6;
            dn[c] -= 1e-6;
            let mut a = [0.0; 18];
            let lu = diffusion_loss(&up, &dh, n, d, q, 1.0, &mut a, &mut scratch).unwrap();
            let ld = diffusion_loss(&dn, &dh, n, d, q, 1.0, &mut a, &mut scratch).unwrap();
            let fd = 0.7 * (lu - ld) / 2e-6;
            assert!((fd - dl[c]).abs() < 1e-7, "dl[{c}] {fd} {}", dl[c]);
        }
    }

    #[test]
    fn mse_is_the_weighted_mean_and_weights_follow_the_mass_rule() {
        let mut w = [0.0f64; 3];
        mass_weights(MassWeighting::Threshold, 0.5, &[0.2, 0.5, 0.9], &mut w).unwrap();
        assert_eq!(w, [0.0, 1.0, 1.0]);
        mass_weights(MassWeighting::RowMass, 0.5, &[0.2, 0.5, 0.9], &mut w).unwrap();
        assert_eq!(w, [0.2, 0.5, 0.9]);
        let e = mass_weights(MassWeighting::RowMass, 0.5, &[0.2, -0.5, 0.9], &mut w);
        assert_eq!(e.unwrap_err().arg, "mass");
        // ‖(1,0)‖² = 1 with weight 1, ‖(0,3)‖² = 9 with weight 3: 28/4.
        let mut df = [0.0; 4];
        let loss = drift_loss(
            DriftLoss::Mse,
            &[1.0, 0.0, 0.0, 3.0],
            &[0.0; 4],
            &[1.0, 3.0],
            &[],
            2,
            &mut df,
            &mut [],
        )
        .unwrap();
        assert_eq!(loss, 7.0);
        // No weight at all: zero loss and gradient.
        let loss = drift_loss(
            DriftLoss::Mse,
            &[1.0; 4],
            &[0.0; 4],
            &[0.0, 0.0],
            &[],
            2,
            &mut df,
            &mut [],
        )
        .unwrap();
        assert_eq!((loss, df), (0.0, [0.0; 4]));
    }
}
