//! # morphosde-core
//!
//! The `no_std`, allocation-free numerical core of morphosde: it learns the
//! stochastic dynamics `dz = f(z,t) dt + L(z,t) dW` (Itô; `D = L Lᵀ` is the
//! covariance rate per unit time) of points in a low-dimensional morphology
//! space from snapshots at discrete times, and simulates them.
//!
//! ## Conventions every module follows
//! - Arrays are row-major slices with explicit dimensions: a cloud of `n`
//!   points in `d` dimensions is `&[F]` of length `n * d`, point `i` at
//!   `[i*d .. (i+1)*d]`. Names: `n` source points, `m` target points, `d`
//!   state dimension, `q` noise rank, `h` frame gap (time units).
//! - Nothing allocates. Scratch memory comes from a caller workspace whose
//!   length a `*_workspace_len` function reports; its contents are garbage
//!   before and after a call.
//! - Inputs are checked where they enter (lengths, finiteness, ranges); a
//!   failure is an [`Error`] naming the argument, never a panic. Outputs are
//!   written only on success unless a routine documents otherwise.
//! - Randomness comes from [`rng::Rng`] streams of one `u64` seed.
//!
//! ## Layers (arrows point down only)
//! `float`, `error`, `size`, `dynamics` (the drift traits the model implements) →
//! `rng`, `linalg`, `optim` → `uot`, `cluster`, `model`, `metrics` →
//! `sampler`, `targets`, `integrate`, `propagated`, `codec` → `loss`,
//! `synthetic` → `train`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]

// Tests use `std` (`Vec`, threads, formatting) also when the library is
// built without it: `cargo test --no-default-features` runs the sequential
// paths (`par`'s fallbacks) that the `std` build replaces.
#[cfg(test)]
extern crate std;

pub mod cluster;
pub mod codec;
pub mod cpu;
pub mod dynamics;
pub mod error;
pub mod fastmath;
pub mod float;
pub mod integrate;
pub mod linalg;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod par;
pub mod propagated;
pub mod rng;
pub mod sampler;
pub mod size;
pub mod synthetic;
pub mod targets;
pub mod train;
pub mod uot;

pub use error::{Error, ErrorKind, Result};

/// Largest state dimension `d` the core supports (fixed-size scratch, the
/// eigen-analysis of `D`).
pub const MAX_DIM: usize = 64;
pub use float::Float;
