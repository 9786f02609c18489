//! Paths and a small model shared by the C ABI's integration tests.
#![allow(dead_code)] // Each test binary uses its own subset.
#![allow(unsafe_code, reason = "creates a model through the C ABI")]

use morphosde::*;
use std::path::PathBuf;
use std::ptr::null_mut;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Directory holding the libraries cargo built for this test run: the
/// test binary's own directory (`target/<profile>/deps`).
pub fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

/// A small model in d = 2 (one hidden layer of 8, 2 time features,
/// one-step residuals, targets from 2 neighbours), with a full diffusion
/// head when `diffusion`. Free it with `msde_model_free`.
pub fn small_model(diffusion: bool, target_mode: u32) -> *mut msde_model {
    let mut cfg = fuzz::filled(|c| unsafe { msde_model_config_default(c, null_mut()) });
    cfg.d = 2;
    cfg.depth = 1;
    cfg.width = 8;
    cfg.time_features = 2;
    cfg.learn_diffusion = diffusion as u32;
    cfg.target_mode = target_mode;
    cfg.residual = MSDE_RESIDUAL_ONE_STEP;
    cfg.k_neighbours = 2;
    let mut m = null_mut();
    let status = unsafe { msde_model_new(&cfg, &mut m, null_mut()) };
    assert_eq!(status, msde_status::MSDE_OK);
    m
}

pub mod fuzz;
pub mod guarded;
