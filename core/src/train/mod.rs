//! Training: the only module that knows the pipeline's order. [`step`]
//! turns one prepared minibatch into a parameter update; the epoch loop
//! (sampling, UOT, teacher velocities) builds on it.

pub mod acceptance;
pub mod fit;
pub mod guard;
pub mod split;
pub mod step;

pub use step::{
    AdamState, Batch, StepLoss, batch_loss, check_batch_shapes, loss_and_gradient, train_step,
    train_step_diffusion_at, train_step_workspace_len,
};
