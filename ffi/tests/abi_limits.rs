//! The C ABI at its limits: size queries fed address-space-scale
//! dimensions answer MSDE_ERR_TOO_LARGE instead of a wrapped size;
//! msde_trainer_step checks every length before it reads an element (the
//! arrays end at an unreadable page, so a read past a length faults);
//! msde_model_load leaves the caller's memory alone until it has accepted
//! the bytes.
#![allow(unsafe_code, reason = "calls the C ABI with raw pointers")]

mod common;
use common::guarded::Guarded;
use common::small_model as model;
use morphosde::*;
use std::ptr::{null, null_mut};

/// Dimensions whose implied sizes overflow `size_t` or exceed `PTRDIFF_MAX`
/// bytes, chosen so that a wrapping product lands at different small
/// values.
const HUGE: [usize; 6] = [
    usize::MAX,
    usize::MAX / 2,
    usize::MAX / 3,
    1 << (usize::BITS - 3),
    (isize::MAX as usize) / 4 + 1,
    (usize::MAX / 8) * 3 + 5,
];

const SENTINEL: usize = 0xdead_beef;

/// Runs a size query, asserting it answers TOO_LARGE and leaves its output
/// alone.
fn assert_too_large(what: &str, query: impl FnOnce(*mut usize) -> msde_status) {
    let mut out = SENTINEL;
    let s = query(&mut out);
    assert_eq!(s, msde_status::MSDE_ERR_TOO_LARGE, "{what}");
    assert_eq!(out, SENTINEL, "{what} wrote its output on failure");
}

#[test]
fn size_queries_answer_too_large_instead_of_wrapping() {
    let plain = model(false, MSDE_TARGET_PAIRWISE);
    let diffusion = model(true, MSDE_TARGET_PLAN_WEIGHTED);
    let mut sample_cfg = unsafe { std::mem::zeroed::<msde_sample_config>() };
    let mut uot_cfg = unsafe { std::mem::zeroed::<msde_uot_config>() };
    let mut fit_cfg = unsafe { std::mem::zeroed::<msde_fit_config>() };
    let mut cluster_cfg = unsafe { std::mem::zeroed::<msde_cluster_config>() };
    unsafe {
        msde_sample_config_default(MSDE_SAMPLE_RK4, &mut sample_cfg, null_mut());
        msde_uot_config_default(0.1, &mut uot_cfg, null_mut());
        msde_fit_config_default(&mut fit_cfg, null_mut());
        msde_cluster_config_default(2, 1.0, &mut cluster_cfg, null_mut());
    }
    for &big in &HUGE {
        for m in [plain, diffusion] {
            assert_too_large("msde_model_eval_workspace_len", |o| unsafe {
                msde_model_eval_workspace_len(m, big, o, null_mut())
            });
            assert_too_large(
                "msde_model_propagated_diffusion_workspace_len",
                |o| unsafe {
                    msde_model_propagated_diffusion_workspace_len(m, big, 4, o, null_mut())
                },
            );
            // The audit's case: n_max = SIZE_MAX gave 2092 bytes.
            assert_too_large("msde_trainer_state_len(n_max)", |o| unsafe {
                msde_trainer_state_len(m, big, 8, o, null_mut())
            });
            assert_too_large("msde_trainer_state_len(m_max)", |o| unsafe {
                msde_trainer_state_len(m, 8, big, o, null_mut())
            });
            for (n, n_times) in [(big, 1), (1, big), (big, big)] {
                for workers in [1, 2] {
                    assert_too_large("msde_sample_workspace_len", |o| unsafe {
                        msde_sample_workspace_len(
                            m,
                            &sample_cfg,
                            n,
                            n_times,
                            workers,
                            o,
                            null_mut(),
                        )
                    });
                }
            }
            assert_too_large("msde_sample_workspace_len(workers)", |o| unsafe {
                msde_sample_workspace_len(m, &sample_cfg, 4, 2, big, o, null_mut())
            });
            let (mut floats, mut indices) = (SENTINEL, SENTINEL);
            let s = unsafe {
                msde_fit_workspace_len(m, big, &fit_cfg, &mut floats, &mut indices, null_mut())
            };
            assert_eq!(s, msde_status::MSDE_ERR_TOO_LARGE, "msde_fit_workspace_len");
            assert_eq!((floats, indices), (SENTINEL, SENTINEL));
        }
        assert_too_large("msde_model_diffusion_spectrum_workspace_len", |o| unsafe {
            msde_model_diffusion_spectrum_workspace_len(diffusion, big, o, null_mut())
        });
        for with_plan in [0, 1] {
            for (n, m, d) in [(big, 4, 2), (4, big, 2), (4, 4, big), (big, big, big)] {
                assert_too_large("msde_uot_workspace_len", |o| unsafe {
                    msde_uot_workspace_len(n, m, d, &uot_cfg, with_plan, o, null_mut())
                });
            }
        }
        for (n, m, d, p) in [
            (big, 1, 1, 1),
            (1, big, 1, 1),
            (1, 1, big, 2),
            (1, 1, 2, big),
        ] {
            assert_too_large("msde_sliced_wasserstein_workspace_len", |o| unsafe {
                msde_sliced_wasserstein_workspace_len(n, m, d, p, o, null_mut())
            });
        }
        let (mut floats, mut indices) = (SENTINEL, SENTINEL);
        let s = unsafe {
            msde_cluster_workspace_len(big, 2, &cluster_cfg, &mut floats, &mut indices, null_mut())
        };
        assert_eq!(
            s,
            msde_status::MSDE_ERR_TOO_LARGE,
            "msde_cluster_workspace_len"
        );
        assert_eq!((floats, indices), (SENTINEL, SENTINEL));
        // Bounded by construction: the median samples at most
        // MSDE_MEDIAN_SAMPLE pairs; the eigen solver refuses d > 64.
        let mut out = SENTINEL;
        let s = unsafe { msde_median_sq_distance_workspace_len(big, big, &mut out, null_mut()) };
        assert_eq!((s, out), (msde_status::MSDE_OK, MSDE_MEDIAN_SAMPLE));
        let s = unsafe { msde_eigen_sym_workspace_len(big, &mut out, null_mut()) };
        assert_eq!(s, msde_status::MSDE_ERR_BAD_DIMENSION);
        // Object creation refuses what the size query refuses.
        let mut trainer = null_mut();
        let s = unsafe { msde_trainer_new(plain, big, 8, &mut trainer, null_mut()) };
        assert_eq!(s, msde_status::MSDE_ERR_TOO_LARGE);
        assert!(trainer.is_null());
    }
    // Sizes that fit are still answered, and grow with the dimension.
    let (mut a, mut b) = (0, 0);
    unsafe {
        msde_trainer_state_len(plain, 8, 8, &mut a, null_mut());
        msde_trainer_state_len(plain, 16, 8, &mut b, null_mut());
    }
    assert!(a > 0 && b > a);
    unsafe {
        msde_model_free(plain);
        msde_model_free(diffusion);
    }
}

/// A batch's arrays, each in its own guarded buffer of its honest length.
struct BatchArrays {
    x: Guarded<f32>,
    t: Guarded<f32>,
    h: Guarded<f32>,
    v_hat: Guarded<f32>,
    mass: Guarded<f32>,
    y: Guarded<f32>,
    plan: Guarded<f32>,
}

impl BatchArrays {
    /// n sources in d = 2, m plan targets (0: pairwise targets, y is n x d).
    fn new(n: usize, m: usize) -> Self {
        let ramp = |len: usize, scale: f32| -> Vec<f32> {
            (0..len).map(|k| scale * (k as f32 * 0.37).sin()).collect()
        };
        let y_rows = if m == 0 { n } else { m };
        BatchArrays {
            x: Guarded::new(&ramp(2 * n, 1.0)),
            t: Guarded::new(&(0..n).map(|k| (k % 2) as f32).collect::<Vec<_>>()),
            h: Guarded::filled(0.5, n),
            v_hat: Guarded::new(&ramp(2 * n, 0.3)),
            mass: Guarded::filled(1.0, n),
            y: Guarded::new(&ramp(2 * y_rows, 1.1)),
            plan: Guarded::filled(1.0 / m.max(1) as f32, n * m),
        }
    }

    /// The batch with every length honest.
    fn batch(&self) -> msde_batch {
        msde_batch {
            x: self.x.ptr(),
            x_len: self.x.len(),
            t: self.t.ptr(),
            t_len: self.t.len(),
            h: self.h.ptr(),
            h_len: self.h.len(),
            v_hat: self.v_hat.ptr(),
            v_hat_len: self.v_hat.len(),
            mass: self.mass.ptr(),
            mass_len: self.mass.len(),
            y: self.y.ptr(),
            y_len: self.y.len(),
            plan: self.plan.ptr(),
            plan_len: self.plan.len(),
        }
    }
}

/// The length fields of a batch, for changing one at a time.
fn length_of(b: &mut msde_batch, k: usize) -> (&'static str, &mut usize) {
    match k {
        0 => ("x", &mut b.x_len),
        1 => ("h", &mut b.h_len),
        2 => ("v_hat", &mut b.v_hat_len),
        3 => ("mass", &mut b.mass_len),
        4 => ("y", &mut b.y_len),
        5 => ("plan", &mut b.plan_len),
        _ => ("t", &mut b.t_len),
    }
}

fn params(m: *const msde_model) -> Vec<f32> {
    let mut info = unsafe { std::mem::zeroed::<msde_model_info>() };
    unsafe { msde_model_info_get(m, &mut info, null_mut(), null_mut()) };
    let mut p = vec![0.0; info.params_len];
    unsafe { msde_model_get_params(m, p.as_mut_ptr(), p.len(), null_mut()) };
    p
}

#[test]
fn trainer_step_checks_every_length_before_reading() {
    let n = 6;
    // (model, plan targets m): drift only (y and plan unread), pairwise
    // diffusion (y n x d), plan-weighted diffusion (y m x d, plan n x m).
    for (diffusion, m) in [(false, 0), (true, 0), (true, 3)] {
        let mode = if m == 0 {
            MSDE_TARGET_PAIRWISE
        } else {
            MSDE_TARGET_PLAN_WEIGHTED
        };
        let base = model(diffusion, mode);
        let mut trainer = null_mut();
        assert_eq!(
            unsafe { msde_trainer_new(base, 8, 8, &mut trainer, null_mut()) },
            msde_status::MSDE_OK
        );
        let mut trained = null();
        unsafe { msde_trainer_model(trainer, &mut trained, null_mut()) };
        let arrays = BatchArrays::new(n, m);
        let before = params(trained);
        for k in 0..7 {
            for delta in [-1isize, 1] {
                let mut b = arrays.batch();
                let (name, len) = length_of(&mut b, k);
                let read = match name {
                    "y" => diffusion,
                    "plan" => diffusion && m > 0,
                    _ => true,
                };
                if !read || (*len == 0 && delta < 0) {
                    continue;
                }
                *len = len.wrapping_add_signed(delta);
                let mut loss = msde_step_loss {
                    steps: 77,
                    ..Default::default()
                };
                let s = unsafe { msde_trainer_step(trainer, 0, &b, &mut loss, null_mut()) };
                assert_eq!(
                    s,
                    msde_status::MSDE_ERR_BAD_DIMENSION,
                    "{name} {delta:+} (diffusion {diffusion}, m {m})"
                );
                assert_eq!(loss.steps, 77, "loss written on failure");
                assert_eq!(params(trained), before, "parameters changed on failure");
            }
        }
        // The honest batch trains (and a NaN gap is refused, not scanned
        // past its length).
        let mut loss = msde_step_loss::default();
        let s = unsafe { msde_trainer_step(trainer, 0, &arrays.batch(), &mut loss, null_mut()) };
        assert_eq!(s, msde_status::MSDE_OK, "diffusion {diffusion}, m {m}");
        assert_eq!(loss.steps, 1);
        unsafe {
            msde_trainer_free(trainer);
            msde_model_free(base);
        }
    }
}

/// Model bytes of a fresh model.
fn saved(m: *const msde_model) -> Vec<u8> {
    let mut len = 0;
    unsafe { msde_model_save_len(m, &mut len, null_mut()) };
    let mut bytes = vec![0u8; len];
    let mut written = 0;
    assert_eq!(
        unsafe { msde_model_save(m, bytes.as_mut_ptr(), len, &mut written, null_mut()) },
        msde_status::MSDE_OK
    );
    bytes
}

/// Model bytes with stored parameter `k` replaced by `value` and the
/// checksum recomputed (the parameters end right before the 8-byte
/// checksum).
fn with_param(bytes: &[u8], k: usize, value: f32) -> Vec<u8> {
    let n = bytes.len();
    let mut cfg = unsafe { std::mem::zeroed::<msde_model_config>() };
    let mut count = 0;
    unsafe {
        msde_model_bytes_config(bytes.as_ptr(), n, &mut cfg, null_mut());
        msde_model_params_len(&cfg, &mut count, null_mut());
    }
    let mut b = bytes.to_vec();
    let at = n - 8 - 4 * count + 4 * k;
    b[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let sum = morphosde_core::codec::fnv1a64(&b[..n - 8]);
    b[n - 8..].copy_from_slice(&sum.to_le_bytes());
    b
}

#[test]
fn model_load_leaves_memory_alone_until_the_bytes_are_accepted() {
    let a = model(true, MSDE_TARGET_PAIRWISE);
    let good = saved(a);
    let mut need = 0;
    let mut cfg = unsafe { std::mem::zeroed::<msde_model_config>() };
    unsafe {
        msde_model_bytes_config(good.as_ptr(), good.len(), &mut cfg, null_mut());
        msde_model_state_len(&cfg, &mut need, null_mut());
    }
    let mut mem = vec![0u64; need.div_ceil(8)];
    let mut held = null_mut();
    let s = unsafe {
        msde_model_load(
            mem.as_mut_ptr().cast(),
            need,
            good.as_ptr(),
            good.len(),
            &mut held,
            null_mut(),
        )
    };
    assert_eq!(s, msde_status::MSDE_OK);
    let snapshot = mem.clone();
    let held_params = params(held);
    // Bytes that pass every check of msde_model_bytes_config but are
    // refused by the load: a NaN or infinite weight, a scale <= 0 in the
    // input block (the first 2d parameters are mean and scale).
    let d = cfg.d;
    for (k, value) in [
        (2 * d + 5, f32::NAN),
        (2 * d + 9, f32::INFINITY),
        (d, 0.0),
        (d + 1, -1.0),
    ] {
        let bad = with_param(&good, k, value);
        let mut out = null_mut();
        let s = unsafe {
            msde_model_load(
                mem.as_mut_ptr().cast(),
                need,
                bad.as_ptr(),
                bad.len(),
                &mut out,
                null_mut(),
            )
        };
        assert_eq!(
            s,
            msde_status::MSDE_ERR_CORRUPT_MODEL,
            "parameter {k} = {value}"
        );
        assert!(out.is_null());
        assert_eq!(mem, snapshot, "a refused load wrote the caller's memory");
        assert_eq!(params(held), held_params, "the model held there changed");
        let mut heap = null_mut();
        let s = unsafe { msde_model_load_new(bad.as_ptr(), bad.len(), &mut heap, null_mut()) };
        assert_eq!(s, msde_status::MSDE_ERR_CORRUPT_MODEL);
        assert!(heap.is_null());
    }
    unsafe { msde_model_free(a) };
}

#[test]
fn fit_and_cluster_size_queries_check_their_config() {
    let m = model(false, MSDE_TARGET_PAIRWISE);
    let mut base = unsafe { std::mem::zeroed::<msde_fit_config>() };
    unsafe { msde_fit_config_default(&mut base, null_mut()) };
    base.validation_fraction = 0.2;
    type Change = fn(&mut msde_fit_config);
    let cases: [(&str, Change); 7] = [
        ("uot_tol", |c| c.uot_tol = f32::NAN),
        ("uot_tol", |c| c.uot_tol = 0.0),
        ("uot_tol", |c| c.uot_tol = f32::INFINITY),
        ("uot_max_iter", |c| c.uot_max_iter = 0),
        ("steps_per_epoch", |c| c.steps_per_epoch = (1 << 20) + 1),
        ("validation_batches", |c| {
            c.validation_batches = 4_000_000_000
        }),
        ("restarts", |c| {
            c.cluster.k = 3;
            c.cluster.restarts = 1001
        }),
    ];
    for (field, change) in cases {
        let mut cfg = base;
        change(&mut cfg);
        let (mut floats, mut indices) = (SENTINEL, SENTINEL);
        let mut err = unsafe { std::mem::zeroed::<msde_error>() };
        let s =
            unsafe { msde_fit_workspace_len(m, 500, &cfg, &mut floats, &mut indices, &mut err) };
        assert_eq!(s, msde_status::MSDE_ERR_BAD_CONFIG, "{field}");
        let msg = unsafe { std::ffi::CStr::from_ptr(err.message.as_ptr()) };
        assert!(msg.to_str().unwrap().contains(field), "{field}: {msg:?}");
        assert_eq!((floats, indices), (SENTINEL, SENTINEL));
    }
    let mut cluster = unsafe { std::mem::zeroed::<msde_cluster_config>() };
    unsafe { msde_cluster_config_default(3, 1.0, &mut cluster, null_mut()) };
    cluster.restarts = 1001;
    let (mut floats, mut indices) = (SENTINEL, SENTINEL);
    let s = unsafe {
        msde_cluster_workspace_len(100, 2, &cluster, &mut floats, &mut indices, null_mut())
    };
    assert_eq!(s, msde_status::MSDE_ERR_BAD_CONFIG);
    unsafe { msde_model_free(m) };
}
