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
//! ## A run through the library
//! A snapshot dataset is three slices: states `z` (`n × d`), times `t`
//! (`n`) and track ids (`n`, [`minibatch::UNTRACKED`] for embryos seen once).
//! Training takes a model configuration ([`model::Config`]; its
//! [`model::Layout`] says how many parameters to allocate and initialises
//! them), a loop configuration ([`train::FitConfig`]) and caller
//! memory sized by [`train::fit_workspace_len`]; [`train::fit()`]
//! runs the epochs. The trained parameters, viewed as a
//! [`model::Learned`], are a [`dynamics::Dynamics`] that
//! [`integrate::rollout`] simulates; [`metrics`] compares simulated with
//! observed clouds, and [`codec`] stores the model as bytes. The workspace's
//! `examples/train_from_csv.rs` does all of this from a CSV file.
//!
//! ## Layers
//! Each module uses only modules on its own floor or below (no circles),
//! so a newcomer can read the crate from the bottom up. From the top:
//!
//! - [`train`]: the only module that knows the pipeline's order. One
//!   optimiser step on a prepared minibatch ([`train::step`]), the learner
//!   the loop trains ([`train::learner`]), the epoch loop with validation,
//!   early stopping and the divergence guard ([`mod@train::fit`],
//!   [`train::guard`], [`train::split`]), and the range
//!   check of a trained model's rollouts ([`train::acceptance`]).
//! - [`loss`] (drift and diffusion losses with their gradients) and
//!   [`synthetic`] (processes with known drift and `D`, and the snapshot
//!   sampler that observes them like embryo imaging).
//! - The pipeline's stages: [`minibatch`] (minibatches from bin `k` to bin
//!   `k + 1` within a cluster), [`targets`] (the covariance targets `D̂`),
//!   [`integrate`] (ODE and SDE integrators, rollouts), [`propagated`] (how
//!   `D` acting along the drift's flow shows in a finite-gap increment) and
//!   [`codec`] (model bytes).
//! - The building blocks: [`uot`] (unbalanced optimal transport, the drift's
//!   teacher), [`cluster`] (time-weighted spectral clustering), [`model`]
//!   (the network: encoder, drift and diffusion heads, their gradients) and
//!   [`metrics`] (distances between clouds, the spectrum of `D`).
//! - Numerics: [`rng`] (seeded streams), [`linalg`] (small dense linear
//!   algebra and the GEMM), [`optim`] (Adam, clipping); beside them the
//!   kernels the hot loops share: [`fastmath`] (vectorised `exp`), [`cpu`]
//!   (which instruction set they may use) and [`par`] (index-split loops).
//! - Ground floor: [`float`] (the [`Float`] trait every routine is written
//!   over), [`error`] (errors and the input checks), [`size`] (workspace
//!   lengths that cannot wrap) and [`dynamics`] (the traits a drift
//!   implements to be integrated and propagated).
//!
//! ## Features
//! - no features (the default): `#![no_std]` with no allocator. Everything
//!   runs, single-threaded, on targets with only `core` (the CI builds it
//!   for `thumbv7em-none-eabihf`); the dependencies (`libm`, `rand_core`,
//!   `rand_xoshiro`, `heapless`) are `no_std` too.
//! - `std`: the batched loops of [`par`], rollouts and clustering run on
//!   rayon's thread pool, and [`Error`] implements `std::error::Error`.
//!   Work is split by index, never by timing, so the numbers are
//!   bit-identical to the build without `std` and across thread counts.
//!   The command-line tool and the C library's default build enable it.
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
pub mod minibatch;
pub mod model;
pub mod optim;
pub mod par;
pub mod propagated;
pub mod rng;
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
