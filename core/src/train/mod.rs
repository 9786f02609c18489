//! Training: the only module that knows the pipeline's order. [`step`]
//! turns one prepared minibatch into a parameter update; the epoch loop
//! (sampling, UOT, teacher velocities) builds on it.

pub mod step;

pub use step::{
    AdamState, Batch, StepLoss, loss_and_gradient, train_step, train_step_workspace_len,
};
