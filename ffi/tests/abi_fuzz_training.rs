//! A seeded fuzz of the C ABI's calls that change a model or a trainer:
//! `msde_trainer_step`, `msde_trainer_fit`, `msde_model_set_params`,
//! `msde_model_set_inputs`, and their readers `msde_model_get_params`,
//! `msde_model_get_inputs` (the machinery, and what a trial breaks, in
//! `common/fuzz.rs`). Every trial asserts the documented status, no crash,
//! every output untouched and, on failure, the parameters of the model or
//! of the trainer's model exactly as they were.
#![allow(unsafe_code, reason = "calls the C ABI with raw pointers")]

mod common;
use common::fuzz::{
    Arg, Case, Role::*, Stream, check, cloud, filled, indices, input, out, out_u32, untouched,
};
use common::small_model;
use morphosde::*;
use msde_status::*;
use std::ptr::{null, null_mut};

/// Trials per call.
const TRIALS: usize = 300;

/// Parameters of `model` (all of them, the input block first).
fn params(model: *const msde_model) -> Vec<f32> {
    let info = filled(|i| unsafe { msde_model_info_get(model, i, null_mut(), null_mut()) });
    let mut p = vec![0.0f32; info.params_len];
    let status = unsafe { msde_model_get_params(model, p.as_mut_ptr(), p.len(), null_mut()) };
    assert_eq!(status, MSDE_OK);
    p
}

/// Parameters of the model `trainer` trains.
fn trainer_params(trainer: *mut msde_trainer) -> Vec<f32> {
    let mut model = null();
    let status = unsafe { msde_trainer_model(trainer, &mut model, null_mut()) };
    assert_eq!(status, MSDE_OK);
    params(model)
}

fn trainer(model: *const msde_model, n_max: usize) -> *mut msde_trainer {
    let mut t = null_mut();
    let status = unsafe { msde_trainer_new(model, n_max, 0, &mut t, null_mut()) };
    assert_eq!(status, MSDE_OK);
    t
}

/// One minibatch of `n = a[1].len` sources from the buffers x, t, h,
/// v_hat, mass, y (pairwise targets: no plan).
fn batch(a: &[Arg]) -> msde_batch {
    msde_batch {
        x: a[0].ptr,
        x_len: a[0].len,
        t: a[1].ptr,
        t_len: a[1].len,
        h: a[2].ptr,
        h_len: a[2].len,
        v_hat: a[3].ptr,
        v_hat_len: a[3].len,
        mass: a[4].ptr,
        mass_len: a[4].len,
        y: a[5].ptr,
        y_len: a[5].len,
        plan: null(),
        plan_len: 0,
    }
}

/// `msde_trainer_step` on a batch of 6 sources in d = 2 (objects: the
/// trainer, the batch).
fn step_case(tr: *mut msde_trainer) -> Case {
    let (n, d) = (6usize, 2usize);
    let x = cloud(n, d, 0.1);
    let y: Vec<f32> = x.iter().map(|v| 0.9 * v + 0.05).collect();
    let v_hat: Vec<f32> = x.iter().zip(&y).map(|(a, b)| (b - a) / 0.1).collect();
    let tr = tr as usize;
    Case::new(
        "msde_trainer_step",
        vec![
            input(x, Input),
            input(vec![0.0, 0.0, 0.2, 0.2, 0.4, 0.4], Input),
            input(vec![0.1; n], Input),
            input(v_hat, Input),
            input(vec![1.0; n], Input),
            input(y, Input),
        ],
        move |k| {
            let b = batch(k.a);
            untouched(|loss| unsafe {
                msde_trainer_step(
                    k.obj_mut(0, tr as *mut msde_trainer),
                    3,
                    k.obj(1, &b),
                    loss,
                    null_mut(),
                )
            })
        },
    )
    .objects(2)
    .state(move || trainer_params(tr as *mut msde_trainer))
}

/// `msde_trainer_fit` on 3 bins of 8 observations in d = 2, half of them
/// tracked, for 2 epochs of 2 steps (objects: the trainer, the config).
fn fit_case(tr: *mut msde_trainer, model: *const msde_model) -> Case {
    let (bins, per_bin) = (3usize, 8usize);
    let n = bins * per_bin;
    let z: Vec<f32> = (0..n)
        .flat_map(|i| {
            let (b, j) = ((i / per_bin) as f32, (i % per_bin) as f32);
            [
                1.0 - 0.3 * b + 0.2 * (j * 0.9).sin(),
                0.5 * b + 0.2 * (j * 1.3).cos(),
            ]
        })
        .collect();
    let t: Vec<f32> = (0..n).map(|i| 0.2 * (i / per_bin) as f32).collect();
    let track: Vec<u32> = (0..n)
        .map(|i| {
            let j = (i % per_bin) as u32;
            if j < 4 { j } else { MSDE_UNTRACKED }
        })
        .collect();
    let mut cfg = filled(|c| unsafe { msde_fit_config_default(c, null_mut()) });
    cfg.epochs = 2;
    cfg.steps_per_epoch = 2;
    cfg.batch = per_bin;
    cfg.validation_fraction = 0.0;
    cfg.cluster.k = 1;
    let (mut floats, mut ints) = (0, 0);
    let status =
        unsafe { msde_fit_workspace_len(model, n, &cfg, &mut floats, &mut ints, null_mut()) };
    assert_eq!(status, MSDE_OK);
    let tr = tr as usize;
    Case::new(
        "msde_trainer_fit",
        vec![
            input(z, Input),
            input(t, Input),
            // Any id is an id: no value is out of range.
            indices(&track, OptionalInput, None),
            out(floats, Workspace),
            out_u32(ints, Workspace),
            out(cfg.epochs * MSDE_FIT_EPOCH_FLOATS, OptionalOutput),
        ],
        move |k| {
            let a = k.a;
            let mut c = cfg;
            match k.bad_config {
                Some(0) => c.epochs = 0,
                Some(1) => c.uot_tol = f32::NAN,
                Some(2) => c.validation_fraction = f32::NAN,
                Some(_) => c.steps_per_epoch = usize::MAX,
                None => {}
            }
            untouched(|report| unsafe {
                msde_trainer_fit(
                    k.obj_mut(0, tr as *mut msde_trainer),
                    k.obj(1, &c),
                    a[0].ptr,
                    a[0].len,
                    a[1].ptr,
                    a[1].len,
                    a[2].u32(),
                    a[2].len,
                    a[3].ptr,
                    a[3].len,
                    a[4].u32(),
                    a[4].len,
                    a[5].ptr,
                    a[5].len,
                    None,
                    null_mut(),
                    report,
                    null_mut(),
                )
            })
        },
    )
    .objects(2)
    .bad_configs(4)
    .state(move || trainer_params(tr as *mut msde_trainer))
}

/// The parameter and input calls of `m` (d = 2; object 0 the model).
fn parameter_cases(m: *mut msde_model) -> Vec<Case> {
    let d = 2usize;
    let len = params(m).len();
    let m = m as usize;
    let model = move || m as *mut msde_model;
    vec![
        Case::new(
            "msde_model_set_params",
            vec![input(params(model()), Input)],
            move |k| unsafe {
                msde_model_set_params(k.obj_mut(0, model()), k.a[0].ptr, k.a[0].len, null_mut())
            },
        )
        .objects(1)
        .state(move || params(model())),
        Case::new(
            "msde_model_get_params",
            vec![out(len, Output)],
            move |k| unsafe {
                msde_model_get_params(k.obj(0, model()), k.a[0].ptr, k.a[0].len, null_mut())
            },
        )
        .objects(1),
        Case::new(
            "msde_model_set_inputs",
            vec![
                input(vec![0.1, -0.2], Input),
                input(vec![1.5, 0.5], Input),
                input(vec![0.0, 2.0], Input),
            ],
            move |k| {
                let a = k.a;
                unsafe {
                    msde_model_set_inputs(
                        k.obj_mut(0, model()),
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        a[2].ptr,
                        a[2].len,
                        null_mut(),
                    )
                }
            },
        )
        .objects(1)
        .state(move || params(model())),
        Case::new(
            "msde_model_get_inputs",
            vec![out(d, Output), out(d, Output), out(2, Output)],
            move |k| {
                let a = k.a;
                unsafe {
                    msde_model_get_inputs(
                        k.obj(0, model()),
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        a[2].ptr,
                        a[2].len,
                        null_mut(),
                    )
                }
            },
        )
        .objects(1),
    ]
}

#[test]
fn broken_training_arguments_get_their_documented_status() {
    let (m, fitted) = (
        small_model(true, MSDE_TARGET_PAIRWISE),
        small_model(true, MSDE_TARGET_PAIRWISE),
    );
    let (stepper, fitter) = (trainer(m, 6), trainer(fitted, 8));
    let mut cases = vec![step_case(stepper), fit_case(fitter, fitted)];
    cases.extend(parameter_cases(m));
    let calls = check(&cases, TRIALS, &mut Stream(0x0A40_9382_2299_F31D));
    unsafe {
        msde_trainer_free(stepper);
        msde_trainer_free(fitter);
        msde_model_free(m);
        msde_model_free(fitted);
    }
    eprintln!(
        "abi fuzz (training): {calls} broken calls over {} functions",
        cases.len()
    );
}
