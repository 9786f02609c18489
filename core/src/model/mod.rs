//! The learned dynamics: a time-aware encoder and two heads.
//!
//! For a state `z ∈ R^d` at time `t` the input is
//! `u = [z, sin(2^0 s t), cos(2^0 s t), …, sin(2^{K−1} s t), cos(2^{K−1} s t)]`
//! (`2K = time_features`, `s = time_scale` in 1/(time unit), so the lowest
//! pair has period `2π/s` in the data's time), the encoder is `depth` layers
//! `a_l = silu(a_{l−1} W_l + b_l)` of `width` units (`silu(s) = s σ(s)`),
//! `h = a_depth` (or `u` when `depth = 0`), the drift head is
//! `f = h W_f + b_f ∈ R^d`, and, with a diffusion head, the diffusion
//! head maps `raw = h W_L + b_L` to the factor `L` (`d×q`, see [`heads`]).
//!
//! The network works in standardised coordinates: the model in the user's
//! units is `f(z, t) = s ⊙ g((z − μ)/s, t)`, `L(z, t) = diag(s) L_g(…)`,
//! with `μ`, `s` and the time span `[t_min, t_max]` that `t` is clamped to
//! before the features stored beside the parameters (see [`inputs`]).
//! [`Layout::forward_train`] and [`Layout::backward`] are the network's
//! (training sees standardised batches); [`Layout::forward_infer`],
//! [`Layout::drift_jacobian`] and [`Learned`] take and return user units
//! ([`Learned::standardised`] is the network's view, for training).
//!
//! All parameters live in one flat slice described by a [`Layout`]
//! (the non-trainable input block, then encoder, drift head, drift
//! log-variance for the NLL loss, diffusion head, in that order: a model
//! without diffusion is exactly the prefix). Gradients and Adam moments use
//! the same layout. Weight matrices are `n_in×n_out` row-major
//! (`y = x W + b`).
//!
//! Batched evaluation: [`Layout::forward_train`] keeps what the manual
//! [`Layout::backward`] needs in a caller cache; [`Learned`] evaluates
//! without cache and implements [`Dynamics`] for the integrators.

pub mod config;
pub mod heads;
pub mod inputs;
mod jacobian;
#[cfg(test)]
mod tests;

pub use config::{
    Config, DEFAULT_RANK, DiffusionHead, DriftLoss, DriftTeacher, MassWeighting, Residual,
    TargetMode,
};
use heads::{HeadShape, head_outputs};
pub use inputs::{Inputs, UNBOUNDED_TIME};

use crate::dynamics::Dynamics;
use crate::error::{Arena, Result, check_finite, check_len, check_room, checked_mul};
use crate::float::Float;
use crate::linalg::gemm::{linear_backward_input, linear_backward_weight, linear_forward};
use crate::rng::{Family, Rng};
use crate::size::Size;
use config::MAX_DEPTH;

/// One tensor of the flat parameter slice: `rows×cols` row-major at
/// `offset` (a bias or vector has `rows = 1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tensor {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
    fn of<'a, F>(&self, params: &'a [F]) -> &'a [F] {
        &params[self.range()]
    }
}

/// Where every tensor lives, derived from a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub d: usize,
    pub time_features: usize,
    /// Scale `s` of the time features (see [`Config::time_scale`]).
    pub time_scale: f64,
    /// Input width `d + time_features`.
    pub n_in: usize,
    /// The non-trainable input block `[μ (d), s (d), t_min, t_max]` at the
    /// front of the slice (see [`inputs`]).
    pub input_block: Tensor,
    pub depth: usize,
    pub width: usize,
    /// Hidden layer `l`: weight `W_l` (`n_in_l × width`) and bias.
    pub hidden_w: [Tensor; MAX_DEPTH],
    pub hidden_b: [Tensor; MAX_DEPTH],
    pub drift_w: Tensor,
    pub drift_b: Tensor,
    /// Drift log-variance `s` (`d`), only with [`DriftLoss::Nll`].
    pub log_var: Option<Tensor>,
    /// Diffusion head and its weights (empty without one).
    pub head: Option<DiffusionHead>,
    pub diff_w: Tensor,
    pub diff_b: Tensor,
    /// Raw outputs `p` of the diffusion head (0 without one).
    pub head_outputs: usize,
    /// Columns `q` of `L` (0 without a diffusion head).
    pub q: usize,
    /// `ε_diff` and the trace cap (0 = off).
    pub diffusion_epsilon: f64,
    pub clip_trace: f64,
    /// Total parameter count.
    pub len: usize,
}

impl Layout {
    /// The layout of a valid config (validated here).
    pub fn new(config: &Config) -> Result<Self> {
        config.validate()?;
        let d = config.d;
        let n_in = d + config.time_features;
        let mut next = 0;
        let mut take = |rows: usize, cols: usize| {
            let t = Tensor {
                offset: next,
                rows,
                cols,
            };
            next += rows * cols;
            t
        };
        let input_block = take(1, 2 * d + 2);
        let mut hidden_w = [Tensor::default(); MAX_DEPTH];
        let mut hidden_b = [Tensor::default(); MAX_DEPTH];
        let mut fan_in = n_in;
        for l in 0..config.depth {
            hidden_w[l] = take(fan_in, config.width);
            hidden_b[l] = take(1, config.width);
            fan_in = config.width;
        }
        let drift_w = take(fan_in, d);
        let drift_b = take(1, d);
        let log_var = (config.drift_loss == DriftLoss::Nll).then(|| take(1, d));
        let head = config.head;
        let q = config.noise_dim();
        let p = head.map_or(0, |h| head_outputs(h, d, q));
        let diff_w = take(fan_in, p);
        let diff_b = take(1, p);
        Ok(Layout {
            d,
            time_features: config.time_features,
            time_scale: config.time_scale,
            n_in,
            input_block,
            depth: config.depth,
            width: config.width,
            hidden_w,
            hidden_b,
            drift_w,
            drift_b,
            log_var,
            head,
            diff_w,
            diff_b,
            head_outputs: p,
            q,
            diffusion_epsilon: config.diffusion_epsilon,
            clip_trace: config.clip_trace,
            len: next,
        })
    }

    /// Width of the encoder output `h`.
    pub fn h_dim(&self) -> usize {
        if self.depth > 0 {
            self.width
        } else {
            self.n_in
        }
    }

    /// Every trainable tensor in slice order (empty diffusion tensors
    /// omitted; the input block is not one).
    pub fn tensors(&self) -> heapless::Vec<Tensor, { 2 * MAX_DEPTH + 5 }> {
        let mut v = heapless::Vec::new();
        for l in 0..self.depth {
            let _ = v.push(self.hidden_w[l]);
            let _ = v.push(self.hidden_b[l]);
        }
        let _ = v.push(self.drift_w);
        let _ = v.push(self.drift_b);
        if let Some(t) = self.log_var {
            let _ = v.push(t);
        }
        if self.head.is_some() {
            let _ = v.push(self.diff_w);
            let _ = v.push(self.diff_b);
        }
        v
    }

    fn head_shape<F: Float>(&self) -> Option<HeadShape<F>> {
        self.head.map(|head| HeadShape {
            head,
            d: self.d,
            q: self.q,
            epsilon: F::from_f64(self.diffusion_epsilon),
            clip_trace: F::from_f64(self.clip_trace),
        })
    }

    /// Seeded initialisation: weights `N(0, gain²/fan_in)` from stream
    /// `(seed, Init, tensor index)` (gain 1, diffusion head 0.1), biases and
    /// log-variance 0, the identity [`Inputs`]. A model without diffusion is
    /// the prefix of the same config with diffusion.
    pub fn init<F: Float>(&self, seed: u64, params: &mut [F]) -> Result<()> {
        check_len(params, self.len, "params")?;
        params.fill(F::ZERO);
        self.set_inputs(params, &Inputs::identity(self.d))?;
        let weights = self.hidden_w[..self.depth]
            .iter()
            .map(|&t| (t, 1.0))
            .chain([(self.drift_w, 1.0)])
            .chain(self.head.map(|_| (self.diff_w, 0.1)));
        for (index, (t, gain)) in weights.enumerate() {
            let mut rng = Rng::stream(seed, Family::Init, index as u64);
            let scale = gain / libm::sqrt(t.rows.max(1) as f64);
            for w in &mut params[t.range()] {
                *w = F::from_f64(rng.normal() * scale);
            }
        }
        Ok(())
    }

    /// Input features `u` (`rows × n_in`) of (standardised) states `z` at
    /// times `t`: the one place the time features `sin(2^k s t), cos(2^k s
    /// t)` are computed, from `t` clamped to the stored time span (`s t`
    /// rounded once, then exact powers of two).
    fn input_features<F: Float>(&self, params: &[F], z: &[F], t: &[F], u: &mut [F]) {
        let (d, n_in) = (self.d, self.n_in);
        let scale = F::from_f64(self.time_scale);
        let (lo, hi) = self.time_span(params);
        for (r, &tr) in t.iter().enumerate() {
            let row = &mut u[r * n_in..(r + 1) * n_in];
            row[..d].copy_from_slice(&z[r * d..(r + 1) * d]);
            let scaled = scale * tr.max(lo).min(hi);
            let mut freq = F::ONE;
            for pair in row[d..].chunks_exact_mut(2) {
                pair[0] = (freq * scaled).sin();
                pair[1] = (freq * scaled).cos();
                freq *= F::TWO;
            }
        }
    }

    /// Elements of the training cache for `rows` states.
    pub fn cache_len(&self, rows: usize) -> usize {
        (Size(rows)
            * (self.n_in
                + 3 * self.depth * self.width
                + self.d
                + self.head_outputs
                + self.d * self.q))
            .get()
    }

    /// Splits a cache into `(u, per-layer [s|σ(s)|a] block, f, raw, L)`.
    #[allow(clippy::type_complexity)]
    fn split_cache<'a, F>(
        &self,
        rows: usize,
        cache: &'a [F],
    ) -> (&'a [F], &'a [F], &'a [F], &'a [F], &'a [F]) {
        let (u, rest) = cache.split_at(rows * self.n_in);
        let (layers, rest) = rest.split_at(rows * 3 * self.depth * self.width);
        let (f, rest) = rest.split_at(rows * self.d);
        let (raw, rest) = rest.split_at(rows * self.head_outputs);
        (u, layers, f, raw, &rest[..rows * self.d * self.q])
    }

    /// Drift `f` (`rows×d`) stored in a cache by [`Layout::forward_train`].
    pub fn cached_drift<'a, F>(&self, rows: usize, cache: &'a [F]) -> &'a [F] {
        self.split_cache(rows, cache).2
    }

    /// Factor `L` (`rows×d×q`) stored in a cache (empty without diffusion).
    pub fn cached_factor<'a, F>(&self, rows: usize, cache: &'a [F]) -> &'a [F] {
        self.split_cache(rows, cache).4
    }

    /// Forward pass of the network at `rows` standardised states `z`
    /// (`rows×d`) at times `t` (`rows`), keeping in `cache` (≥ [`Layout::cache_len`]) what the backward pass
    /// needs, and the outputs ([`Layout::cached_drift`],
    /// [`Layout::cached_factor`]). Inputs are checked (lengths, finiteness).
    pub fn forward_train<F: Float>(
        &self,
        params: &[F],
        z: &[F],
        t: &[F],
        cache: &mut [F],
    ) -> Result<()> {
        let rows = t.len();
        check_len(params, self.len, "params")?;
        check_len(z, checked_mul(rows, self.d, "z")?, "z")?;
        check_finite(z, "z")?;
        check_finite(t, "t")?;
        check_room(cache, self.cache_len(rows), "cache")?;
        let (w, n_in) = (self.width, self.n_in);
        let (u, rest) = cache.split_at_mut(rows * n_in);
        self.input_features(params, z, t, u);
        let (mut layers, rest) = rest.split_at_mut(rows * 3 * self.depth * w);
        let mut input: &[F] = u;
        let mut fan_in = n_in;
        for l in 0..self.depth {
            let (block, tail) = layers.split_at_mut(3 * rows * w);
            layers = tail;
            let (s, block) = block.split_at_mut(rows * w);
            let (sig, a) = block.split_at_mut(rows * w);
            self.hidden_forward(params, l, input, rows, fan_in, s, sig, a)?;
            input = a;
            fan_in = w;
        }
        let (f, rest) = rest.split_at_mut(rows * self.d);
        let (raw, rest) = rest.split_at_mut(rows * self.head_outputs);
        let l_out = &mut rest[..rows * self.d * self.q];
        self.heads_forward(params, input, rows, f, raw, l_out)
    }

    /// Hidden layer `l`: `s = input W_l + b_l`, `sig = σ(s)`, `a = s·sig`.
    #[allow(clippy::too_many_arguments)]
    fn hidden_forward<F: Float>(
        &self,
        params: &[F],
        l: usize,
        input: &[F],
        rows: usize,
        fan_in: usize,
        s: &mut [F],
        sig: &mut [F],
        a: &mut [F],
    ) -> Result<()> {
        let (wt, bt) = (self.hidden_w[l], self.hidden_b[l]);
        linear_forward(
            input,
            wt.of(params),
            bt.of(params),
            rows,
            fan_in,
            self.width,
            s,
        )?;
        sigmoid_into(s, sig);
        for ((a, &s), &g) in a.iter_mut().zip(s.iter()).zip(sig.iter()) {
            *a = s * g;
        }
        Ok(())
    }

    /// Drift `f = h W_f + b_f` and, with a diffusion head, `raw` and `L`.
    fn heads_forward<F: Float>(
        &self,
        params: &[F],
        h: &[F],
        rows: usize,
        f: &mut [F],
        raw: &mut [F],
        l_out: &mut [F],
    ) -> Result<()> {
        let hd = self.h_dim();
        let (dw, db) = (self.drift_w, self.drift_b);
        linear_forward(h, dw.of(params), db.of(params), rows, hd, self.d, f)?;
        if let Some(shape) = self.head_shape::<F>() {
            let p = self.head_outputs;
            let (lw, lb) = (self.diff_w, self.diff_b);
            linear_forward(h, lw.of(params), lb.of(params), rows, hd, p, raw)?;
            let dq = self.d * self.q;
            for (raw_r, l_r) in raw.chunks_exact(p).zip(l_out.chunks_exact_mut(dq)) {
                shape.factor(raw_r, l_r);
            }
        }
        Ok(())
    }

    /// Workspace elements of [`Layout::backward`] for `rows` states.
    pub fn backward_workspace_len(&self, rows: usize) -> usize {
        (Size(rows) * (2 * self.h_dim() + self.head_outputs + self.n_in)
            + self.transposed_len()
            + self.d * self.q)
            .get()
    }

    /// Room for the largest transposed weight matrix.
    fn transposed_len(&self) -> usize {
        let hd = self.h_dim();
        (self.n_in * self.width)
            .max(self.width * self.width)
            .max(hd * self.d)
            .max(hd * self.head_outputs)
    }

    /// Manual backward pass: `grad` (layout length) receives `∂loss/∂θ` of
    /// the network for a loss whose gradient with respect to the outputs is
    /// `d_drift` (`rows×d`) and, with a diffusion head, `d_factor`
    /// (`rows×d×q`, ignored otherwise). `cache` is the one
    /// [`Layout::forward_train`] filled with the same `params`. The
    /// log-variance entries of `grad` are set to 0 (the loss owns them), and
    /// so are the input block's (not trainable).
    #[allow(clippy::too_many_arguments)]
    pub fn backward<F: Float>(
        &self,
        params: &[F],
        rows: usize,
        cache: &[F],
        d_drift: &[F],
        d_factor: &[F],
        grad: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        self.backward_to_state(
            params,
            rows,
            cache,
            d_drift,
            d_factor,
            grad,
            &mut [],
            workspace,
        )
    }

    /// [`Layout::backward`] that also returns the gradient with respect to
    /// the (standardised) states: `d_z` (`rows×d`, overwritten) receives
    /// `∂loss/∂z` through the network (the time features do not depend on
    /// `z`); an empty `d_z` skips it. This is the vector–Jacobian product a
    /// rollout's backward pass needs (see [`crate::train::matching`]).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_to_state<F: Float>(
        &self,
        params: &[F],
        rows: usize,
        cache: &[F],
        d_drift: &[F],
        d_factor: &[F],
        grad: &mut [F],
        d_z: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        check_len(params, self.len, "params")?;
        check_len(grad, self.len, "grad")?;
        check_room(cache, self.cache_len(rows), "cache")?;
        check_len(d_drift, rows * self.d, "d_drift")?;
        if self.head.is_some() {
            check_len(d_factor, rows * self.d * self.q, "d_factor")?;
        }
        let want_dz = !d_z.is_empty();
        if want_dz {
            check_len(d_z, rows * self.d, "d_z")?;
        }
        check_room(workspace, self.backward_workspace_len(rows), "workspace")?;
        let hd = self.h_dim();
        let (w, d, p) = (self.width, self.d, self.head_outputs);
        let mut arena = Arena::new(workspace);
        let dh = arena.take(rows * hd)?;
        let dh_prev = arena.take(rows * hd)?;
        let wt_scratch = arena.take(self.transposed_len())?;
        let draw = arena.take(rows * p)?;
        let head_scratch = arena.take(d * self.q)?;
        let du = arena.take(rows * self.n_in)?;
        let (u, layers, _, raw, _) = self.split_cache(rows, cache);
        let a_of = |l: usize| -> &[F] {
            let base = l * 3 * rows * w;
            &layers[base + 2 * rows * w..base + 3 * rows * w]
        };
        let h: &[F] = if self.depth > 0 {
            a_of(self.depth - 1)
        } else {
            u
        };
        grad.fill(F::ZERO);
        let need_dh = self.depth > 0 || want_dz;
        dh.fill(F::ZERO);
        // Heads.
        let (dw_t, db_t) = (self.drift_w, self.drift_b);
        {
            let (gw, gb) = split_two(grad, dw_t, db_t);
            linear_backward_weight(h, d_drift, rows, hd, d, gw, gb)?;
        }
        if need_dh {
            linear_backward_input(d_drift, dw_t.of(params), rows, hd, d, dh, wt_scratch)?;
        }
        if let Some(shape) = self.head_shape::<F>() {
            let dq = d * self.q;
            for r in 0..rows {
                shape.backward(
                    &raw[r * p..(r + 1) * p],
                    &d_factor[r * dq..(r + 1) * dq],
                    &mut draw[r * p..(r + 1) * p],
                    head_scratch,
                );
            }
            let (lw_t, lb_t) = (self.diff_w, self.diff_b);
            let (gw, gb) = split_two(grad, lw_t, lb_t);
            linear_backward_weight(h, draw, rows, hd, p, gw, gb)?;
            if need_dh {
                linear_backward_input(draw, lw_t.of(params), rows, hd, p, dh, wt_scratch)?;
            }
        }
        // Encoder, last layer first. `dh` holds ∂/∂a_l on entry of layer l.
        let (mut dh, mut dh_prev) = (dh, dh_prev);
        for l in (0..self.depth).rev() {
            let base = l * 3 * rows * w;
            let s = &layers[base..base + rows * w];
            let sig = &layers[base + rows * w..base + 2 * rows * w];
            // ∂/∂s = ∂/∂a · silu'(s), silu' = σ + s σ (1 − σ).
            for ((g, &s), &sg) in dh.iter_mut().zip(s).zip(sig) {
                *g *= sg + s * sg * (F::ONE - sg);
            }
            let (input, fan_in) = if l > 0 {
                (a_of(l - 1), w)
            } else {
                (u, self.n_in)
            };
            let (wt, bt) = (self.hidden_w[l], self.hidden_b[l]);
            {
                let (gw, gb) = split_two(grad, wt, bt);
                linear_backward_weight(input, dh, rows, fan_in, w, gw, gb)?;
            }
            if l > 0 {
                dh_prev.fill(F::ZERO);
                linear_backward_input(dh, wt.of(params), rows, w, w, dh_prev, wt_scratch)?;
                core::mem::swap(&mut dh, &mut dh_prev);
            } else if want_dz {
                du.fill(F::ZERO);
                linear_backward_input(dh, wt.of(params), rows, self.n_in, w, du, wt_scratch)?;
            }
        }
        if want_dz {
            // Without hidden layers `dh` is already `∂/∂u`.
            let du: &[F] = if self.depth > 0 { du } else { dh };
            for (dz_r, du_r) in d_z.chunks_exact_mut(d).zip(du.chunks_exact(self.n_in)) {
                dz_r.copy_from_slice(&du_r[..d]);
            }
        }
        Ok(())
    }

    /// Workspace elements of [`Layout::forward_infer`] (and of the
    /// network's own pass) for `rows` states.
    pub fn infer_workspace_len(&self, rows: usize) -> usize {
        (Size(rows) * (self.d + self.n_in + 4 * self.width + self.head_outputs)).get()
    }

    /// The model in the user's units, without cache: drift `f` (`rows×d`)
    /// and, when `l_out` is non-empty and the model has a diffusion head,
    /// `L` (`rows×d×q`) at states `z` (`rows×d`) and times `t` (`rows`):
    /// the states standardised with the stored [`Inputs`], the network, its
    /// outputs scaled back (`s ⊙ f`, `diag(s) L`).
    pub fn forward_infer<F: Float>(
        &self,
        params: &[F],
        z: &[F],
        t: &[F],
        f: &mut [F],
        l_out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let (standardised, rest) = self.standardised(params, z, t.len(), workspace)?;
        self.network_infer(params, standardised, t, f, l_out, rest)?;
        let l_written = if self.head.is_some() { l_out } else { &mut [] };
        self.outputs_to_user_units(params, f, l_written, &mut []);
        Ok(())
    }

    /// The network's forward pass without cache at standardised states `z`
    /// (as [`Layout::forward_infer`], no change of units).
    fn network_infer<F: Float>(
        &self,
        params: &[F],
        z: &[F],
        t: &[F],
        f: &mut [F],
        l_out: &mut [F],
        workspace: &mut [F],
    ) -> Result<()> {
        let rows = t.len();
        check_len(params, self.len, "params")?;
        check_len(z, checked_mul(rows, self.d, "z")?, "z")?;
        check_len(f, rows * self.d, "f")?;
        let mut arena = Arena::new(workspace);
        let u = arena.take(rows * self.n_in)?;
        let s = arena.take(rows * self.width)?;
        let sig = arena.take(rows * self.width)?;
        let mut a = arena.take(rows * self.width)?;
        let mut a_next = arena.take(rows * self.width)?;
        let raw = arena.take(rows * self.head_outputs)?;
        self.input_features(params, z, t, u);
        let mut fan_in = self.n_in;
        for l in 0..self.depth {
            let input: &[F] = if l == 0 { u } else { a };
            self.hidden_forward(params, l, input, rows, fan_in, s, sig, a_next)?;
            core::mem::swap(&mut a, &mut a_next);
            fan_in = self.width;
        }
        let h: &[F] = if self.depth > 0 { a } else { u };
        if self.head.is_some() && !l_out.is_empty() {
            check_len(l_out, rows * self.d * self.q, "l_out")?;
            self.heads_forward(params, h, rows, f, raw, l_out)
        } else {
            let (dw, db) = (self.drift_w, self.drift_b);
            linear_forward(
                h,
                dw.of(params),
                db.of(params),
                rows,
                self.h_dim(),
                self.d,
                f,
            )
        }
    }
}

/// Mutable views of two disjoint tensors, `a` before `b` in the slice.
fn split_two<F>(grad: &mut [F], a: Tensor, b: Tensor) -> (&mut [F], &mut [F]) {
    let (lo, hi) = grad.split_at_mut(b.offset);
    (&mut lo[a.range()], &mut hi[..b.len()])
}

/// `sig = σ(s)` elementwise through the shared vectorised exp.
fn sigmoid_into<F: Float>(s: &[F], sig: &mut [F]) {
    for (g, &x) in sig.iter_mut().zip(s) {
        *g = -x;
    }
    crate::fastmath::exp_in_place(sig);
    for g in sig.iter_mut() {
        *g = F::ONE / (F::ONE + *g);
    }
}

/// Which coordinates a [`Learned`] model takes and returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    /// The user's (the data's): the model `s ⊙ g((z − μ)/s, t)`.
    User,
    /// The network's standardised coordinates `(z − μ)/s`: `g` itself, what
    /// training works in.
    Standardised,
}

/// The learned dynamics as a [`Dynamics`]: parameters, their layout and the
/// units it works in.
#[derive(Clone, Copy, Debug)]
pub struct Learned<'a, F> {
    pub layout: Layout,
    params: &'a [F],
    pub units: Units,
}

impl<'a, F: Float> Learned<'a, F> {
    /// The model in the user's units over `params` (checked: layout length,
    /// finite, a valid input block).
    pub fn new(config: &Config, params: &'a [F]) -> Result<Self> {
        Self::with_layout(Layout::new(config)?, params)
    }

    /// [`Learned::new`] on the layout of an already checked config (the
    /// parameters are checked, the config is not again).
    pub fn with_layout(layout: Layout, params: &'a [F]) -> Result<Self> {
        check_len(params, layout.len, "params")?;
        check_finite(params, "params")?;
        layout.check_inputs(params)?;
        Ok(Learned {
            layout,
            params,
            units: Units::User,
        })
    }

    /// The network in standardised coordinates over `params` (checked as
    /// [`Learned::new`]): the view of a training step, whose batches are
    /// standardised.
    pub fn standardised(config: &Config, params: &'a [F]) -> Result<Self> {
        Self::standardised_with_layout(Layout::new(config)?, params)
    }

    /// [`Learned::standardised`] on the layout of an already checked config.
    pub fn standardised_with_layout(layout: Layout, params: &'a [F]) -> Result<Self> {
        Ok(Learned {
            units: Units::Standardised,
            ..Self::with_layout(layout, params)?
        })
    }

    fn infer(&self, z: &[F], t: &[F], f: &mut [F], l: &mut [F], ws: &mut [F]) -> Result<()> {
        match self.units {
            Units::User => self.layout.forward_infer(self.params, z, t, f, l, ws),
            Units::Standardised => self.layout.network_infer(self.params, z, t, f, l, ws),
        }
    }
}

impl<F: Float> Dynamics<F> for Learned<'_, F> {
    fn dim(&self) -> usize {
        self.layout.d
    }
    fn noise_dim(&self) -> usize {
        self.layout.q
    }
    fn workspace_len(&self, rows: usize) -> usize {
        self.layout.infer_workspace_len(rows)
    }
    fn drift(&self, z: &[F], t: &[F], f: &mut [F], workspace: &mut [F]) {
        if self.infer(z, t, f, &mut [], workspace).is_err() {
            f.fill(F::from_f64(f64::NAN));
        }
    }
    fn drift_and_factor(&self, z: &[F], t: &[F], f: &mut [F], l: &mut [F], workspace: &mut [F]) {
        if self.infer(z, t, f, l, workspace).is_err() {
            f.fill(F::from_f64(f64::NAN));
            l.fill(F::from_f64(f64::NAN));
        }
    }
}
