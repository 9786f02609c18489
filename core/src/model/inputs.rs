//! What a model knows about its inputs: the per-coordinate standardisation
//! of its states and the time span of its training data.
//!
//! The learned model is `f(z, t) = s ⊙ g((z − μ)/s, t)` and
//! `L(z, t) = diag(s) · L_g((z − μ)/s, t)` (so `D = S D_g S` with
//! `S = diag(s)`, and the drift's Jacobian is `S J_g S⁻¹`), where `g` and
//! `L_g` are the network and its heads ([`super::Layout`]) and `μ`, `s > 0`
//! are per-coordinate constants computed from the training data. Training
//! happens in the standardised coordinates `(z − μ)/s` (the network's);
//! every evaluation of the model outside training takes and returns the
//! user's units. The time features read `t` clamped to the training span
//! `[t_min, t_max]`: past the last observed time the model is the last
//! time's, not a sinusoid wrapped to values it never saw.
//!
//! These `2d + 2` numbers are a non-trainable block at the front of the
//! flat parameter slice (`[μ (d), s (d), t_min, t_max]`): the model file
//! and the C ABI carry them with the parameters, the backward pass gives
//! them a zero gradient and the optimiser skips them
//! ([`super::Layout::trainable`]). [`super::Layout::init`] writes the
//! identity (`μ = 0`, `s = 1`, no span); [`crate::train::fit()`] replaces it
//! with the data's ([`Inputs::from_data`]).

use super::Layout;
use crate::MAX_DIM;
use crate::error::{Arena, Detail, Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;

/// Bound of the time span of a model that has none:
/// `[−UNBOUNDED_TIME, UNBOUNDED_TIME]` clamps no time. The largest finite
/// `f32`, so that it survives an `f32` model file.
pub const UNBOUNDED_TIME: f64 = f32::MAX as f64;

/// The standardisation `z ↦ (z − μ)/s` of a model's states and the time
/// span its time features are clamped to (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inputs<F> {
    /// State dimension `d`.
    pub d: usize,
    /// Per-coordinate mean `μ` (entries `..d`; the rest 0).
    pub mean: [F; MAX_DIM],
    /// Per-coordinate scale `s > 0` (entries `..d`; the rest 1).
    pub scale: [F; MAX_DIM],
    /// `[t_min, t_max]`, `t_min ≤ t_max`, in the data's time unit;
    /// `±`[`UNBOUNDED_TIME`] when there is none.
    pub time_span: [F; 2],
}

impl<F: Float> Inputs<F> {
    /// `μ = 0`, `s = 1`, no time span: the model is the network itself.
    pub fn identity(d: usize) -> Self {
        let big = F::from_f64(UNBOUNDED_TIME);
        Inputs {
            d,
            mean: [F::ZERO; MAX_DIM],
            scale: [F::ONE; MAX_DIM],
            time_span: [-big, big],
        }
    }

    /// The mean and standard deviation (over all rows, divided by `n`) of
    /// each coordinate of `z` (`n×d`, `n = t.len() ≥ 1`, finite) and the
    /// span of `t`. A coordinate without spread gets `s = 1`. Accumulated
    /// in f64, two passes: `O(n d)`.
    pub fn from_data(z: &[F], t: &[F], d: usize) -> Result<Self> {
        if d == 0 || d > MAX_DIM {
            return Err(Error::bad_dim("d", "must be in 1..=64").with(Detail::Value(d as f64)));
        }
        let n = t.len();
        if n == 0 {
            return Err(Error::bad_dim("t", "no observations"));
        }
        check_len(z, checked_mul(n, d, "t")?, "z")?;
        check_finite(z, "z")?;
        check_finite(t, "t")?;
        let mut inputs = Self::identity(d);
        for k in 0..d {
            let column = || z.iter().skip(k).step_by(d).map(|v| v.to_f64());
            let mean = column().sum::<f64>() / n as f64;
            let var = column().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            let scale = F::from_f64(libm::sqrt(var));
            inputs.mean[k] = F::from_f64(mean);
            inputs.scale[k] = if scale > F::ZERO && scale.is_finite() {
                scale
            } else {
                F::ONE
            };
        }
        let (lo, hi) = t
            .iter()
            .fold((t[0], t[0]), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        inputs.time_span = [lo, hi];
        Ok(inputs)
    }

    /// `μ` (`d`).
    pub fn mean(&self) -> &[F] {
        &self.mean[..self.d]
    }

    /// `s` (`d`).
    pub fn scale(&self) -> &[F] {
        &self.scale[..self.d]
    }

    /// Whether the model has a time span (else every `t` is fed as it is).
    pub fn has_time_span(&self) -> bool {
        has_span(self.time_span[0], self.time_span[1])
    }

    /// `1 ≤ d ≤ 64`, finite entries, `s > 0`, `t_min ≤ t_max`; errors name
    /// the field (`d`, `mean`, `scale`, `time_span`).
    pub fn validate(&self) -> Result<()> {
        if self.d == 0 || self.d > MAX_DIM {
            return Err(Error::bad_dim("d", "must be in 1..=64").with(Detail::Value(self.d as f64)));
        }
        check_values(
            self.mean(),
            self.scale(),
            self.time_span,
            ["mean", "scale", "time_span"],
        )
    }

    /// `z ← (z − μ)/s` for the rows of `z` (`rows×d`): states.
    pub fn standardise(&self, z: &mut [F]) {
        for row in z.chunks_exact_mut(self.d) {
            for ((v, &m), &s) in row.iter_mut().zip(self.mean()).zip(self.scale()) {
                *v = (*v - m) / s;
            }
        }
    }

    /// `v ← v/s` for the rows of `v` (`rows×d`): velocities and
    /// displacements.
    pub fn standardise_velocities(&self, v: &mut [F]) {
        for row in v.chunks_exact_mut(self.d) {
            for (x, &s) in row.iter_mut().zip(self.scale()) {
                *x /= s;
            }
        }
    }
}

/// Whether `[lo, hi]` is a real span, not the unbounded one.
fn has_span<F: Float>(lo: F, hi: F) -> bool {
    let big = F::from_f64(UNBOUNDED_TIME);
    lo > -big || hi < big
}

/// The checks of [`Inputs::validate`]; errors name `names` (mean, scale,
/// span).
fn check_values<F: Float>(
    mean: &[F],
    scale: &[F],
    span: [F; 2],
    names: [&'static str; 3],
) -> Result<()> {
    check_finite(mean, names[0])?;
    check_finite(scale, names[1])?;
    check_finite(&span, names[2])?;
    if let Some(k) = scale.iter().position(|&s| s <= F::ZERO) {
        return Err(Error::bad_config(names[1], "input scales must be > 0").with(Detail::Index(k)));
    }
    if span[0] > span[1] {
        return Err(
            Error::bad_config(names[2], "time span must have t_min <= t_max")
                .with(Detail::Value(span[0].to_f64())),
        );
    }
    Ok(())
}

impl Layout {
    /// Range of the trainable parameters: everything after the input block.
    pub fn trainable(&self) -> core::ops::Range<usize> {
        self.input_block.len()..self.len
    }

    /// The model's [`Inputs`] stored in `params` (layout length).
    pub fn inputs<F: Float>(&self, params: &[F]) -> Inputs<F> {
        let d = self.d;
        let block = &params[self.input_block.range()];
        let mut inputs = Inputs::identity(d);
        inputs.mean[..d].copy_from_slice(&block[..d]);
        inputs.scale[..d].copy_from_slice(&block[d..2 * d]);
        inputs.time_span = [block[2 * d], block[2 * d + 1]];
        inputs
    }

    /// Stores `inputs` (checked, of this layout's `d`) in `params`.
    pub fn set_inputs<F: Float>(&self, params: &mut [F], inputs: &Inputs<F>) -> Result<()> {
        check_len(params, self.len, "params")?;
        inputs.validate()?;
        if inputs.d != self.d {
            return Err(
                Error::bad_dim("d", "the inputs' dimension differs from the model's").with(
                    Detail::Len {
                        expected: self.d,
                        got: inputs.d,
                    },
                ),
            );
        }
        let d = self.d;
        let block = &mut params[self.input_block.range()];
        block[..d].copy_from_slice(inputs.mean());
        block[d..2 * d].copy_from_slice(inputs.scale());
        block[2 * d..].copy_from_slice(&inputs.time_span);
        Ok(())
    }

    /// The input block of `params` is valid (see [`Inputs::validate`]);
    /// errors name `params`.
    pub fn check_inputs<F: Float>(&self, params: &[F]) -> Result<()> {
        let d = self.d;
        let block = &params[self.input_block.range()];
        check_values(
            &block[..d],
            &block[d..2 * d],
            [block[2 * d], block[2 * d + 1]],
            ["params"; 3],
        )
    }

    /// `[t_min, t_max]` stored in `params`.
    pub(super) fn time_span<F: Float>(&self, params: &[F]) -> (F, F) {
        let at = self.input_block.offset + 2 * self.d;
        (params[at], params[at + 1])
    }

    /// `(z − μ)/s` of the `rows` states `z` (checked with `params`) in the
    /// front of `workspace`, and the rest of the workspace.
    pub(super) fn standardised<'w, F: Float>(
        &self,
        params: &[F],
        z: &[F],
        rows: usize,
        workspace: &'w mut [F],
    ) -> Result<(&'w mut [F], &'w mut [F])> {
        let d = self.d;
        check_len(params, self.len, "params")?;
        check_len(z, checked_mul(rows, d, "z")?, "z")?;
        let mut arena = Arena::new(workspace);
        let out = arena.take(rows * d)?;
        let block = &params[self.input_block.range()];
        let (mean, scale) = (&block[..d], &block[d..2 * d]);
        for (dst, src) in out.chunks_exact_mut(d).zip(z.chunks_exact(d)) {
            for (((o, &v), &m), &s) in dst.iter_mut().zip(src).zip(mean).zip(scale) {
                *o = (v - m) / s;
            }
        }
        Ok((out, arena.rest()))
    }

    /// Network outputs to the user's units: `f ← s ⊙ f` (`rows×d`),
    /// `L ← diag(s) L` (`rows×d×q`, may be empty) and `J ← S J S⁻¹`
    /// (`rows×d×d`, may be empty).
    pub(super) fn outputs_to_user_units<F: Float>(
        &self,
        params: &[F],
        f: &mut [F],
        l: &mut [F],
        jac: &mut [F],
    ) {
        let d = self.d;
        let scale = &params[self.input_block.offset + d..][..d];
        for row in f.chunks_exact_mut(d) {
            for (v, &s) in row.iter_mut().zip(scale) {
                *v *= s;
            }
        }
        // Row i of each d×q factor (empty without a head).
        for (k, row) in l.chunks_exact_mut(self.q.max(1)).enumerate() {
            for v in row {
                *v *= scale[k % d];
            }
        }
        for (k, v) in jac.iter_mut().enumerate() {
            let (a, b) = (k / d % d, k % d);
            *v = *v * scale[a] / scale[b];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;

    #[test]
    fn from_data_gives_mean_deviation_and_span() {
        // Coordinate 0: 1, 3, 5 (mean 3, sd √(8/3)); coordinate 1 constant.
        let z = [1.0f64, 7.0, 3.0, 7.0, 5.0, 7.0];
        let t = [0.5, -1.0, 2.0];
        let inputs = Inputs::from_data(&z, &t, 2).unwrap();
        assert_eq!(inputs.mean(), &[3.0, 7.0]);
        assert!((inputs.scale[0] - libm::sqrt(8.0 / 3.0)).abs() < 1e-15);
        assert_eq!(inputs.scale[1], 1.0, "no spread: unit scale");
        assert_eq!(inputs.time_span, [-1.0, 2.0]);
        assert!(inputs.has_time_span());
        assert!(!Inputs::<f32>::identity(3).has_time_span());
        let mut rows = z;
        inputs.standardise(&mut rows);
        assert_eq!(rows[1], 0.0);
        assert!((rows[0] + libm::sqrt(1.5)).abs() < 1e-15);
        assert_eq!(Inputs::from_data(&z, &[], 2).unwrap_err().arg, "t");
        assert_eq!(Inputs::from_data(&z[..5], &t, 2).unwrap_err().arg, "z");
        assert_eq!(
            Inputs::from_data(&[f64::NAN; 2], &[0.0], 2)
                .unwrap_err()
                .arg,
            "z"
        );
    }

    #[test]
    fn the_block_round_trips_and_bad_values_are_refused() {
        let config = Config {
            d: 3,
            depth: 1,
            width: 4,
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        let mut params = std::vec![0.5f64; layout.len];
        layout.init(1, &mut params).unwrap();
        assert_eq!(layout.inputs(&params), Inputs::identity(3));
        assert_eq!(layout.trainable(), 8..layout.len);
        let mut inputs = Inputs::identity(3);
        inputs.mean[..3].copy_from_slice(&[1.0, -2.0, 3.0]);
        inputs.scale[..3].copy_from_slice(&[0.1, 10.0, 2.0]);
        inputs.time_span = [0.0, 1.4];
        layout.set_inputs(&mut params, &inputs).unwrap();
        assert_eq!(layout.inputs(&params), inputs);
        assert_eq!(&params[..8], &[1.0, -2.0, 3.0, 0.1, 10.0, 2.0, 0.0, 1.4]);
        layout.check_inputs(&params).unwrap();
        let mut bad = inputs;
        bad.scale[1] = 0.0;
        let e = layout.set_inputs(&mut params, &bad).unwrap_err();
        assert_eq!((e.arg, e.detail), ("scale", Detail::Index(1)));
        bad = inputs;
        bad.time_span = [2.0, 1.0];
        assert_eq!(
            layout.set_inputs(&mut params, &bad).unwrap_err().arg,
            "time_span"
        );
        bad = inputs;
        bad.mean[2] = f64::NAN;
        assert_eq!(
            layout.set_inputs(&mut params, &bad).unwrap_err().arg,
            "mean"
        );
        assert_eq!(
            layout
                .set_inputs(&mut params, &Inputs::identity(2))
                .unwrap_err()
                .arg,
            "d"
        );
        assert_eq!(layout.inputs(&params), inputs, "nothing written on failure");
        params[4] = -1.0;
        assert_eq!(layout.check_inputs(&params).unwrap_err().arg, "params");
    }
}
