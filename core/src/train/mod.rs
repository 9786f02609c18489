//! Training: the only module that knows the pipeline's order. [`step`]
//! turns one prepared minibatch into a parameter update; [`learner`] wraps
//! the model and its optimiser for the loop; `batch` turns sampled rows
//! into a finished minibatch (UOT, teachers) and hands it to the learner;
//! [`fit`](mod@fit) is the epoch loop (split, clustering, validation, early
//! stopping, the divergence [`guard`]); [`matching`] is the optional stage
//! after it that moves the model so its rollouts match the snapshots.

pub mod acceptance;
mod batch;
pub mod fit;
mod fit_config;
pub mod guard;
pub mod learner;
pub mod matching;
pub mod split;
pub mod step;

pub use batch::BRIDGE_EPSILON_FLOOR;
pub use fit::{
    Control, EpochReport, FitReport, FitWorkspaceLen, Observations, fit, fit_workspace_len,
};
pub use fit_config::{FitConfig, MAX_STEPS_PER_EPOCH, MAX_VALIDATION_BATCHES};
pub use learner::{Learner, Losses, Minibatch, ModelLearner, TRACKED_ONLY_MIN};
pub use step::{
    AdamState, Batch, StepLoss, StepPlan, batch_loss, check_batch_shapes, loss_and_gradient,
    train_step, train_step_diffusion_at,
};
