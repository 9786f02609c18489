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
                DriftLoss::Mse | DriftLoss::Gls => {
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

/// Ridge of [`drift_loss_gls`]'s noise covariances, relative to their mean
/// eigenvalue: keeps low-rank factors invertible.
const GLS_RIDGE: f64 = 1e-3;

/// Generalised least-squares drift loss
/// `Σ w_i e_iᵀ (D̄ P_i) e_i / Σ w_i`, `e_i = f_i − v̂_i`, where `P_i` is the
/// precision of row `i`'s teacher noise, `(L_i L_iᵀ + δ_i I)⁻¹` with
/// `δ_i = 10⁻³·tr(L_i L_iᵀ)/d`, from the model's factor `factor` (`n×d×q`)
/// held fixed (no gradient reaches `L`), and `D̄ = mean_i tr(D_i)/d` keeps
/// the scale of the MSE (the two agree when every `D_i` is `σ²I`). A
/// tracked pair's teacher is the displacement over the gap, whose noise
/// has covariance `∝ D`: weighting by its inverse is the likelihood's
/// (Gaussian) weighting, so noisy directions and rows count less. Writes
/// `df = ∂loss/∂f`. `scratch` holds `d·d + d` elements. Cost `O(n d²(d + q))`.
#[allow(clippy::too_many_arguments)]
pub fn drift_loss_gls<F: Float>(
    f: &[F],
    v: &[F],
    w: &[F],
    factor: &[F],
    d: usize,
    q: usize,
    df: &mut [F],
    scratch: &mut [F],
) -> Result<F> {
    let n = w.len();
    let len = checked_mul(n, d, "f")?;
    check_len(f, len, "f")?;
    check_len(v, len, "v")?;
    check_len(df, len, "df")?;
    let dq = checked_mul(d, q, "q")?;
    check_len(factor, checked_mul(n, dq, "factor")?, "factor")?;
    if scratch.len() < d * d + d {
        return Err(Error::too_small("scratch", d * d + d, scratch.len()));
    }
    df.fill(F::ZERO);
    let total: F = w.iter().copied().sum();
    if total <= F::ZERO || n == 0 || d == 0 {
        return Ok(F::ZERO);
    }
    let (a, x) = scratch.split_at_mut(d * d);
    let x = &mut x[..d];
    let mean_var = factor.iter().map(|&l| l * l).sum::<F>() / F::from_usize(n * d);
    let inv = F::ONE / total;
    let mut loss = F::ZERO;
    for (i, &wi) in w.iter().enumerate() {
        let li = &factor[i * dq..(i + 1) * dq];
        let e = |k: usize| f[i * d + k] - v[i * d + k];
        for r in 0..d {
            for c in 0..=r {
                a[r * d + c] = crate::linalg::dot(&li[r * q..(r + 1) * q], &li[c * q..(c + 1) * q]);
            }
        }
        let trace: F = (0..d).map(|r| a[r * d + r]).sum();
        let ridge = F::from_f64(GLS_RIDGE) * trace / F::from_usize(d);
        for r in 0..d {
            a[r * d + r] += ridge;
        }
        for (k, xk) in x.iter_mut().enumerate() {
            *xk = e(k);
        }
        if trace > F::ZERO && crate::linalg::cholesky_in_place(a, d).is_ok() {
            // x ← G⁻ᵀ G⁻¹ e, then scaled by D̄.
            for r in 0..d {
                let s = (0..r).fold(x[r], |s, k| s - a[r * d + k] * x[k]);
                x[r] = s / a[r * d + r];
            }
            for r in (0..d).rev() {
                let s = (r + 1..d).fold(x[r], |s, k| s - a[k * d + r] * x[k]);
                x[r] = s / a[r * d + r];
            }
            for xk in x.iter_mut() {
                *xk *= mean_var;
            }
        }
        let wn = wi * inv;
        for (k, &xk) in x.iter().enumerate() {
            loss += wn * e(k) * xk;
            df[i * d + k] = F::TWO * wn * xk;
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

    /// The GLS loss against a direct evaluation with an explicitly inverted
    /// covariance (2×2, closed form), its gradient against central
    /// differences, and equal to the MSE when every `D_i = σ²I`.
    #[test]
    fn gls_is_the_whitened_mse() {
        let (d, q) = (2, 2);
        let f: [f64; 4] = [0.3, -1.0, 1.2, 0.1];
        let v: [f64; 4] = [0.1, -0.5, 1.0, -0.3];
        let w = [0.5, 1.5];
        // Row 0: L = [[1, 0], [0.5, 2]]; row 1: L = [[0.3, 0], [-0.2, 0.4]].
        let l: [f64; 8] = [1.0, 0.0, 0.5, 2.0, 0.3, 0.0, -0.2, 0.4];
        let mut df = [0.0; 4];
        let mut scratch = [0.0; 6];
        let loss = drift_loss_gls(&f, &v, &w, &l, d, q, &mut df, &mut scratch).unwrap();
        let mean_var = l.iter().map(|x| x * x).sum::<f64>() / 4.0;
        let mut direct = 0.0;
        for i in 0..2 {
            let li = &l[i * 4..(i + 1) * 4];
            let (a, b, c) = (
                li[0] * li[0] + li[1] * li[1],
                li[0] * li[2] + li[1] * li[3],
                li[2] * li[2] + li[3] * li[3],
            );
            let ridge = 1e-3 * (a + c) / 2.0;
            let (a, c) = (a + ridge, c + ridge);
            let det = a * c - b * b;
            let (e0, e1) = (f[2 * i] - v[2 * i], f[2 * i + 1] - v[2 * i + 1]);
            let quad = (c * e0 * e0 - 2.0 * b * e0 * e1 + a * e1 * e1) / det;
            direct += w[i] / 2.0 * mean_var * quad;
        }
        assert!((loss - direct).abs() < 1e-12 * direct, "{loss} vs {direct}");
        let mut fp = f;
        for k in 0..4 {
            let h = 1e-6;
            fp[k] = f[k] + h;
            let up = drift_loss_gls(&fp, &v, &w, &l, d, q, &mut [0.0; 4], &mut scratch).unwrap();
            fp[k] = f[k] - h;
            let down = drift_loss_gls(&fp, &v, &w, &l, d, q, &mut [0.0; 4], &mut scratch).unwrap();
            fp[k] = f[k];
            assert!(
                (df[k] - (up - down) / (2.0 * h)).abs() < 1e-8,
                "coordinate {k}"
            );
        }
        let iso: [f64; 8] = [0.7, 0.0, 0.0, 0.7, 0.7, 0.0, 0.0, 0.7];
        let gls = drift_loss_gls(&f, &v, &w, &iso, d, q, &mut df, &mut scratch).unwrap();
        let mse = drift_loss(DriftLoss::Mse, &f, &v, &w, &[], d, &mut [0.0; 4], &mut []).unwrap();
        assert!((gls - mse / (1.0 + 1e-3)).abs() < 1e-12, "{gls} vs {mse}");
    }

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
