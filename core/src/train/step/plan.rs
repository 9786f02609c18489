//! The plan of a training step, built once from a configuration (RustFFT's
//! planner idea): [`StepPlan::new`] checks the configuration and derives the
//! model's [`Layout`], and every step then runs on the plan without checking
//! the configuration again. Also here: how a step's workspace is sized and
//! carved (the loss workspace: forward cache, the propagated target's
//! scratch, the backward's buffers; the step's scratch beyond it: flow,
//! targets, flow teacher), and where the propagated target evaluates `D_θ`
//! ([`DiffusionPoints`]).

use crate::error::{Arena, Detail, Error, Result};
use crate::integrate::rk4_stages_len;
use crate::model::{Config, DriftTeacher, Layout, Residual};
use crate::propagated::{DiffusionAt, PROPAGATE_BLOCK_ROWS, propagate_workspace_len_for};
use crate::size::Size;

/// A checked training-step configuration with the model's layout: what
/// [`train_step`](super::train_step), [`batch_loss`](super::batch_loss) and
/// [`loss_and_gradient`](super::loss_and_gradient) take. Building it is the
/// only place the configuration is checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepPlan {
    pub(super) config: Config,
    pub(super) layout: Layout,
}

impl StepPlan {
    /// The plan of `config` (checked here: [`crate::ErrorKind::BadConfig`]
    /// naming the field).
    pub fn new(config: &Config) -> Result<Self> {
        Ok(StepPlan {
            config: *config,
            layout: Layout::new(config)?,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The model's parameter layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Workspace elements of [`train_step`](super::train_step) and
    /// [`batch_loss`](super::batch_loss) for batches of at most `n` sources
    /// (the targets' count `m` does not change it: the transport plan is the
    /// caller's); `usize::MAX` when it would not fit. `O(1)`.
    pub fn workspace_len(&self, n: usize) -> usize {
        let (config, layout) = (&self.config, &self.layout);
        (layout.len + loss_workspace_len(config, layout, n) + step_scratch_len(config, layout, n))
            .get()
    }

    /// The same plan with the learning rate `learning_rate` (finite, > 0):
    /// the training loop's schedule.
    pub fn with_learning_rate(&self, learning_rate: f64) -> Result<Self> {
        if !(learning_rate > 0.0 && learning_rate.is_finite()) {
            return Err(Error::bad_config("learning_rate", "must be finite and > 0")
                .with(Detail::Value(learning_rate)));
        }
        let mut plan = *self;
        plan.config.learning_rate = learning_rate;
        Ok(plan)
    }
}

/// Elements of [`loss_and_gradient`]'s workspace.
pub(super) fn loss_workspace_len(config: &Config, layout: &Layout, n: usize) -> Size {
    let (d, q) = (layout.d, layout.q);
    Size(layout.cache_len(n))
        + layout.backward_workspace_len(n)
        + Size(n) * (1 + d + d * q)
        + d
        + (d * d + d)
        + propagated_len(config, layout, n)
}

/// Whether the step runs the propagated target: a diffusion head and
/// [`Residual::Propagated`] or [`Residual::PropagatedFrozen`].
pub(super) fn is_propagated(config: &Config, layout: &Layout) -> bool {
    layout.head.is_some()
        && matches!(
            config.residual,
            Residual::Propagated | Residual::PropagatedFrozen
        )
}

/// Where the propagated step evaluates `D_θ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DiffusionPoints {
    /// At every node of the exact path ([`Residual::Propagated`] with
    /// [`DiffusionAt::Path`]): node 0 from the step's own forward pass,
    /// nodes `1..=N` from a second pass.
    Nodes,
    /// Once per source at the gap's midpoint state
    /// ([`Residual::PropagatedFrozen`] with [`DiffusionAt::Path`]), by a
    /// second pass over `n` states.
    Midpoint,
    /// Once per source at `z_t` ([`DiffusionAt::Constant`]): the step's own
    /// pass, no second one.
    Start,
}

impl DiffusionPoints {
    pub(super) fn new(config: &Config, at: DiffusionAt) -> Self {
        match (at, config.residual) {
            (DiffusionAt::Constant, _) => DiffusionPoints::Start,
            (DiffusionAt::Path, Residual::PropagatedFrozen) => DiffusionPoints::Midpoint,
            (DiffusionAt::Path, _) => DiffusionPoints::Nodes,
        }
    }

    /// How the map reads the `D` matrices.
    pub(super) fn map_at(self) -> DiffusionAt {
        match self {
            DiffusionPoints::Nodes => DiffusionAt::Path,
            _ => DiffusionAt::Constant,
        }
    }

    /// `D` matrices per source.
    pub(super) fn per_source(self, substeps: usize) -> usize {
        match self {
            DiffusionPoints::Nodes => substeps + 1,
            _ => 1,
        }
    }

    /// States per source of the second pass.
    pub(super) fn second_pass_per_source(self, substeps: usize) -> usize {
        match self {
            DiffusionPoints::Nodes => substeps,
            DiffusionPoints::Midpoint => 1,
            DiffusionPoints::Start => 0,
        }
    }

    /// Index among the second pass's states of source `r`'s `D` matrix `k`,
    /// or `None` for the step's own pass (the state `z_t`).
    pub(super) fn second_pass_index(self, substeps: usize, r: usize, k: usize) -> Option<usize> {
        match self {
            DiffusionPoints::Nodes if k > 0 => Some(r * substeps + k - 1),
            DiffusionPoints::Midpoint => Some(r),
            _ => None,
        }
    }
}

/// Elements of the propagated target's scratch (0 unless
/// [`is_propagated`]): the flow's node states and propagators (filled by
/// [`propagate_batch`]), then [`propagated_diffusion_loss`]'s buffers (sized
/// for [`DiffusionAt::Path`], the larger).
pub(super) fn propagated_len(config: &Config, layout: &Layout, n: usize) -> Size {
    if !is_propagated(config, layout) {
        return Size(0);
    }
    let (d, q) = (layout.d, layout.q);
    let substeps = config.flow_substeps;
    let nodes = Size(n) * (substeps + 1);
    let points = DiffusionPoints::new(config, DiffusionAt::Path);
    let matrices = Size(n) * points.per_source(substeps);
    let second = Size(n) * points.second_pass_per_source(substeps);
    // Node states and propagators; propagate's scratch and the model's
    // Jacobian pass; states and times of the second pass and its cache; D
    // and ∂L/∂D at every point; ∂L/∂L and a zero drift gradient of the
    // second pass, its parameter gradient and backward workspace; Lᵀ and
    // the map's scratch.
    nodes * (d + d * d)
        + propagate_flow_len(layout, n)
        + second * (2 * d + 1 + d * q)
        + layout.cache_len(second.get())
        + matrices * (2 * d * d)
        + layout.len
        + layout.backward_workspace_len(second.get())
        + d * q
        + 2 * d * d
}

/// [`propagate`]'s (and [`propagate_frozen`]'s) workspace for the learned
/// model and `n` sources.
pub(super) fn propagate_flow_len(layout: &Layout, n: usize) -> usize {
    let block = n.min(PROPAGATE_BLOCK_ROWS);
    propagate_workspace_len_for(
        layout.d,
        n,
        layout
            .jacobian_workspace_len(block)
            .max(layout.infer_workspace_len(block)),
    )
}

/// Splits [`propagated_len`]'s scratch into the node states, the
/// propagators and the rest.
pub(super) fn split_propagated<'a, F>(
    config: &Config,
    layout: &Layout,
    n: usize,
    scratch: &'a mut [F],
) -> Result<(&'a mut [F], &'a mut [F], &'a mut [F])> {
    let nodes = n * (config.flow_substeps + 1);
    let mut arena = Arena::new(scratch);
    let states = arena.take(nodes * layout.d)?;
    let props = arena.take(nodes * layout.d * layout.d)?;
    Ok((states, props, arena.rest()))
}

/// Splits a loss workspace ([`loss_workspace_len`]) into the forward cache,
/// the propagated target's scratch and the rest.
#[allow(clippy::type_complexity)]
pub(super) fn split_loss_workspace<'a, F>(
    config: &Config,
    layout: &Layout,
    n: usize,
    workspace: &'a mut [F],
) -> Result<(&'a mut [F], &'a mut [F], &'a mut [F])> {
    let mut arena = Arena::new(workspace);
    let cache = arena.take(layout.cache_len(n))?;
    let propagated = arena.take(propagated_len(config, layout, n).get())?;
    Ok((cache, propagated, arena.rest()))
}

/// Whether a step needs the flow `φ_h(x)` of the learned drift over each
/// gap: for the flow-based targets `D̂` or for [`DriftTeacher::Flow`].
pub(super) fn needs_flow(config: &Config, layout: &Layout) -> bool {
    config.drift_teacher == DriftTeacher::Flow
        || (layout.head.is_some() && config.residual != Residual::OneStep)
}

/// Elements of a step's scratch beyond the loss workspace: the flow (and
/// [`rk4_flow`]'s workspace unless the propagated target computes it), the
/// targets `D̂` with the one-step prediction, and the flow teacher.
pub(super) fn step_scratch_len(config: &Config, layout: &Layout, n: usize) -> Size {
    let d = layout.d;
    let mut len = Size(0);
    if needs_flow(config, layout) {
        len = len + Size(n) * d;
        if !is_propagated(config, layout) {
            len = len + flow_workspace_len(layout, n);
        }
    }
    if layout.head.is_some() {
        len = len + Size(n) * d * d;
        if config.residual == Residual::OneStep {
            len = len + Size(n) * d;
        }
    }
    if config.drift_teacher == DriftTeacher::Flow {
        len = len + Size(n) * d;
    }
    len
}

/// [`crate::integrate::rk4_flow_workspace_len`] of the learned model for
/// `n` sources, from its layout (no parameters at hand where it is needed).
pub(super) fn flow_workspace_len(layout: &Layout, n: usize) -> usize {
    rk4_stages_len(n, layout.d).saturating_add(layout.infer_workspace_len(n))
}

/// The buffers of [`propagated_diffusion_loss`] after the node states and
/// propagators, in [`propagated_len`]'s order.
pub(super) struct PropagatedBuffers<'a, F> {
    pub(super) flow_ws: &'a mut [F],
    pub(super) second_states: &'a mut [F],
    pub(super) second_times: &'a mut [F],
    pub(super) second_cache: &'a mut [F],
    pub(super) diffusion: &'a mut [F],
    pub(super) d_diffusion: &'a mut [F],
    pub(super) d_factor: &'a mut [F],
    pub(super) d_drift: &'a mut [F],
    pub(super) node_grad: &'a mut [F],
    pub(super) backward_ws: &'a mut [F],
    pub(super) factor_t: &'a mut [F],
    pub(super) map_ws: &'a mut [F],
}

impl<'a, F> PropagatedBuffers<'a, F> {
    pub(super) fn carve(
        config: &Config,
        layout: &Layout,
        n: usize,
        rest: &'a mut [F],
    ) -> Result<Self> {
        let (d, q) = (layout.d, layout.q);
        let points = DiffusionPoints::new(config, DiffusionAt::Path);
        let matrices = n * points.per_source(config.flow_substeps);
        let second = n * points.second_pass_per_source(config.flow_substeps);
        let mut arena = Arena::new(rest);
        Ok(PropagatedBuffers {
            flow_ws: arena.take(propagate_flow_len(layout, n))?,
            second_states: arena.take(second * d)?,
            second_times: arena.take(second)?,
            second_cache: arena.take(layout.cache_len(second))?,
            diffusion: arena.take(matrices * d * d)?,
            d_diffusion: arena.take(matrices * d * d)?,
            d_factor: arena.take(second * d * q)?,
            d_drift: arena.take(second * d)?,
            node_grad: arena.take(layout.len)?,
            backward_ws: arena.take(layout.backward_workspace_len(second))?,
            factor_t: arena.take(d * q)?,
            map_ws: arena.take(2 * d * d)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::DiffusionHead;

    #[test]
    fn a_plan_is_built_only_from_a_valid_config_and_keeps_its_rate_valid() {
        let bad = Config {
            k_neighbours: 0,
            ..Config::default()
        };
        let e = StepPlan::new(&bad).unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::BadConfig, "k_neighbours"));
        let config = Config {
            head: Some(DiffusionHead::Full),
            ..Config::default()
        };
        let plan = StepPlan::new(&config).unwrap();
        assert_eq!(*plan.layout(), Layout::new(&config).unwrap());
        // The workspace grows with the batch and never wraps.
        assert!(plan.workspace_len(8) < plan.workspace_len(16));
        assert_eq!(plan.workspace_len(usize::MAX), usize::MAX);
        let slower = plan.with_learning_rate(1e-5).unwrap();
        assert_eq!(slower.config().learning_rate, 1e-5);
        assert_eq!(
            (slower.layout(), slower.config().seed),
            (plan.layout(), config.seed)
        );
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = plan.with_learning_rate(rate).unwrap_err();
            assert_eq!(e.arg, "learning_rate", "{rate}");
        }
    }
}
