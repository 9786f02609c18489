//! msde_model_match against the Rust core: the same kept parameters bit for
//! bit, the core's defaults, and a model left alone on every failure.
#![allow(unsafe_code, reason = "calls the C ABI with raw pointers")]

use morphosde::*;
use morphosde_core::model::{Config, DiffusionHead, Layout};
use morphosde_core::rng::{Family, Rng};
use morphosde_core::train::fit::Observations;
use morphosde_core::train::matching::{MatchConfig, match_rollouts, match_workspace_len};
use std::ptr::null_mut;

const OK: msde_status = msde_status::MSDE_OK;

/// The ABI's model config of `core` (d, depth, width, time features and a
/// full diffusion head over the ABI's defaults).
fn new_model(core: &Config) -> *mut msde_model {
    let mut cfg = unsafe { std::mem::zeroed::<msde_model_config>() };
    assert_eq!(
        unsafe { msde_model_config_default(&mut cfg, null_mut()) },
        OK
    );
    cfg.d = core.d;
    cfg.depth = core.depth;
    cfg.width = core.width;
    cfg.time_features = core.time_features;
    cfg.learn_diffusion = core.head.is_some() as u32;
    let mut m = null_mut();
    assert_eq!(unsafe { msde_model_new(&cfg, &mut m, null_mut()) }, OK);
    m
}

/// The parameters of `m`, a model of `core`.
fn params(m: *const msde_model, core: &Config) -> Vec<f32> {
    let len = Layout::new(core).unwrap().len;
    let mut p = vec![0.0f32; len];
    assert_eq!(
        unsafe { msde_model_get_params(m, p.as_mut_ptr(), len, null_mut()) },
        OK
    );
    p
}

/// Three bins of 40 embryos drifting right and spreading.
fn snapshots() -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::stream(4, Family::Data, 0);
    let (mut z, mut t) = (Vec::new(), Vec::new());
    for b in 0..3 {
        for _ in 0..40 {
            z.push(b as f32 + (0.5 + 0.2 * b as f32) * rng.normal() as f32);
            z.push(0.5 * rng.normal() as f32);
            t.push(0.5 * b as f32);
        }
    }
    (z, t)
}

fn abi_config() -> msde_match_config {
    let mut c = unsafe { std::mem::zeroed::<msde_match_config>() };
    assert_eq!(unsafe { msde_match_config_default(&mut c, null_mut()) }, OK);
    c
}

#[test]
fn defaults_are_the_cores() {
    let c = abi_config();
    let d = MatchConfig::default();
    assert_eq!(
        (
            c.steps,
            c.batch,
            c.substeps,
            c.horizon,
            c.check_every,
            c.starts_per_step,
            c.seed
        ),
        (
            d.steps,
            d.batch,
            d.substeps,
            d.horizon,
            d.check_every,
            d.starts_per_step,
            d.seed
        )
    );
    assert_eq!(
        (
            c.learning_rate,
            c.clip_grad_norm,
            c.validation_fraction,
            c.diffusion_anchor
        ),
        (
            d.learning_rate,
            d.clip_grad_norm,
            d.validation_fraction,
            d.diffusion_anchor
        )
    );
}

/// The call keeps what the core's match_rollouts keeps, bit for bit, and
/// reports the same held-out losses.
#[test]
fn equals_the_rust_core_bit_for_bit() {
    let core = Config {
        d: 2,
        depth: 1,
        width: 8,
        time_features: 2,
        head: Some(DiffusionHead::Full),
        ..Config::default()
    };
    let m = new_model(&core);
    let start = params(m, &core);
    let (z, t) = snapshots();
    let mut cfg = abi_config();
    cfg.steps = 12;
    cfg.batch = 16;
    cfg.substeps = 2;
    cfg.horizon = 2;
    cfg.check_every = 3;
    cfg.learning_rate = 1e-2;
    let (mut fl, mut il) = (0, 0);
    assert_eq!(
        unsafe { msde_match_workspace_len(m, t.len(), &cfg, &mut fl, &mut il, null_mut()) },
        OK
    );
    let (mut fw, mut iw) = (vec![0.0f32; fl], vec![0u32; il]);
    let mut report = msde_match_report::default();
    let s = unsafe {
        msde_model_match(
            m,
            &cfg,
            z.as_ptr(),
            z.len(),
            t.as_ptr(),
            t.len(),
            fw.as_mut_ptr(),
            fl,
            iw.as_mut_ptr(),
            il,
            &mut report,
            null_mut(),
        )
    };
    assert_eq!(s, OK);
    let core_cfg = MatchConfig {
        steps: 12,
        batch: 16,
        substeps: 2,
        horizon: 2,
        check_every: 3,
        learning_rate: 1e-2,
        ..MatchConfig::default()
    };
    let need = match_workspace_len(&core, &core_cfg, t.len()).unwrap();
    let mut p = start.clone();
    let obs = Observations {
        z: &z,
        t: &t,
        track: &[],
        d: 2,
    };
    let r = match_rollouts(
        &core,
        &mut p,
        &obs,
        &core_cfg,
        &mut vec![0.0; need.floats],
        &mut vec![0; need.indices],
    )
    .unwrap();
    assert!(r.best_step > 0, "the stage kept its start: {r:?}");
    assert_eq!(params(m, &core), p);
    assert_eq!((report.steps, report.kept_step), (r.steps, r.best_step));
    assert_eq!(
        (report.held_out_initial, report.held_out_kept),
        (r.initial, r.best)
    );
    unsafe { msde_model_free(m) };
}

/// Bad input and short workspaces fail with their status and leave the
/// model's parameters and the report alone.
#[test]
fn failures_leave_the_model_alone() {
    let core = Config {
        d: 2,
        depth: 1,
        width: 4,
        time_features: 0,
        head: None,
        ..Config::default()
    };
    let m = new_model(&core);
    let start = params(m, &core);
    let (z, t) = snapshots();
    let mut cfg = abi_config();
    cfg.steps = 2;
    cfg.batch = 8;
    let (mut fl, mut il) = (0, 0);
    assert_eq!(
        unsafe { msde_match_workspace_len(m, t.len(), &cfg, &mut fl, &mut il, null_mut()) },
        OK
    );
    let one_bin = vec![0.0f32; t.len()];
    let cases: [(&str, &[f32], usize, usize, msde_status); 3] = [
        (
            "one time bin",
            &one_bin,
            fl,
            il,
            msde_status::MSDE_ERR_BAD_DIMENSION,
        ),
        (
            "short floats",
            &t,
            fl - 1,
            il,
            msde_status::MSDE_ERR_BUFFER_TOO_SMALL,
        ),
        (
            "short indices",
            &t,
            fl,
            il - 1,
            msde_status::MSDE_ERR_BUFFER_TOO_SMALL,
        ),
    ];
    for (what, times, fl, il, status) in cases {
        let (mut fw, mut iw) = (vec![0.0f32; fl], vec![0u32; il]);
        let mut report = msde_match_report {
            steps: 77,
            ..Default::default()
        };
        let s = unsafe {
            msde_model_match(
                m,
                &cfg,
                z.as_ptr(),
                z.len(),
                times.as_ptr(),
                times.len(),
                fw.as_mut_ptr(),
                fl,
                iw.as_mut_ptr(),
                il,
                &mut report,
                null_mut(),
            )
        };
        assert_eq!(s, status, "{what}");
        assert_eq!(params(m, &core), start, "{what}: the model changed");
        assert_eq!(report.steps, 77, "{what}: the report was written");
    }
    cfg.batch = 1;
    let s = unsafe { msde_match_workspace_len(m, t.len(), &cfg, &mut fl, &mut il, null_mut()) };
    assert_eq!(s, msde_status::MSDE_ERR_BAD_CONFIG);
    unsafe { msde_model_free(m) };
}
