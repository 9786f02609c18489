//! A seeded fuzz of the C ABI's evaluation, metric, transport and
//! clustering calls (the machinery, and what a trial breaks, in
//! `common/fuzz.rs`; the training and parameter calls are in
//! `abi_fuzz_training.rs`): every trial asserts the documented status, no
//! crash and every output untouched. The size queries get random
//! dimensions (zero, small, address-space-scale) and NULL outputs; an
//! answer is either refused with its output untouched or a length whose
//! bytes fit PTRDIFF_MAX.
#![allow(unsafe_code, reason = "calls the C ABI with raw pointers")]

mod common;
use common::fuzz::{
    Case, Role::*, Stream, check, cloud, filled, indices, input, out, out_u32, query, untouched,
};
use common::small_model;
use morphosde::*;
use msde_status::*;
use std::ptr::null_mut;

/// Trials per call.
const TRIALS: usize = 400;

/// The model's calls with valid arguments (rows = 3, d = 2; object 0 the
/// model).
fn model_cases(m: *mut msde_model) -> Vec<Case> {
    let (rows, d) = (3usize, 2usize);
    let eval_ws = query(|o| unsafe { msde_model_eval_workspace_len(m, rows, o, null_mut()) });
    let spectrum_ws =
        query(|o| unsafe { msde_model_diffusion_spectrum_workspace_len(m, rows, o, null_mut()) });
    let propagated_ws = query(|o| unsafe {
        msde_model_propagated_diffusion_workspace_len(m, rows, 4, o, null_mut())
    });
    let sample_cfg =
        filled(|c| unsafe { msde_sample_config_default(MSDE_SAMPLE_RK4, c, null_mut()) });
    let sample_ws =
        query(|o| unsafe { msde_sample_workspace_len(m, &sample_cfg, rows, 2, 1, o, null_mut()) });
    let m = m as usize;
    let model = move || m as *mut msde_model;
    vec![
        Case::new(
            "msde_model_drift_factor",
            vec![
                input(cloud(rows, d, 0.1), Input),
                input(vec![0.0, 0.5, 1.0], Input),
                out(rows * d, Output),
                out(rows * d * d, Output),
                out(eval_ws, Workspace),
            ],
            move |k| {
                let a = k.a;
                unsafe {
                    msde_model_drift_factor(
                        k.obj(0, model()),
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        k.dims[0],
                        a[2].ptr,
                        a[2].len,
                        a[3].ptr,
                        a[3].len,
                        a[4].ptr,
                        a[4].len,
                        null_mut(),
                    )
                }
            },
        )
        .dims(&[rows])
        .objects(1),
        Case::new(
            "msde_model_diffusion_spectrum",
            vec![
                input(cloud(rows, d, 0.2), Input),
                input(vec![0.0, 0.5, 1.0], Input),
                out(rows * d, Output),
                out(rows * d * d, OptionalOutput),
                out(rows * d * d, OptionalOutput),
                out(spectrum_ws, Workspace),
            ],
            move |k| {
                let a = k.a;
                unsafe {
                    msde_model_diffusion_spectrum(
                        k.obj(0, model()),
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        k.dims[0],
                        a[2].ptr,
                        a[2].len,
                        a[3].ptr,
                        a[3].len,
                        a[4].ptr,
                        a[4].len,
                        a[5].ptr,
                        a[5].len,
                        null_mut(),
                    )
                }
            },
        )
        .dims(&[rows])
        .objects(1),
        Case::new(
            "msde_model_propagated_diffusion",
            vec![
                input(cloud(rows, d, 0.3), Input),
                input(vec![0.0, 0.5, 1.0], Input),
                input(vec![0.1, 0.2, 0.1], Input),
                input(cloud(rows, d, 0.9), Input),
                out(rows * d * d, Output),
                out(rows * d, OptionalOutput),
                out(propagated_ws, Workspace),
            ],
            move |k| {
                let a = k.a;
                unsafe {
                    msde_model_propagated_diffusion(
                        k.obj(0, model()),
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        a[2].ptr,
                        a[2].len,
                        k.dims[0],
                        null_mut(),
                        0,
                        a[3].ptr,
                        a[3].len,
                        a[4].ptr,
                        a[4].len,
                        a[5].ptr,
                        a[5].len,
                        a[6].ptr,
                        a[6].len,
                        null_mut(),
                    )
                }
            },
        )
        .dims(&[4])
        .objects(1),
        Case::new(
            "msde_sample",
            vec![
                input(cloud(rows, d, 0.4), Input),
                input(vec![0.5, 1.0], Input),
                out(rows * 2 * d, Output),
                out(rows, Output),
                out(sample_ws, Workspace),
            ],
            move |k| {
                let a = k.a;
                let mut cfg = sample_cfg;
                match k.bad_config {
                    Some(0) => cfg.h = f32::NAN,
                    Some(1) => cfg.h = 0.0,
                    Some(_) => cfg.block_rows = 0,
                    None => {}
                }
                untouched(|report| unsafe {
                    msde_sample(
                        k.obj(0, model()),
                        k.obj(1, &cfg),
                        a[0].ptr,
                        a[0].len,
                        0.0,
                        a[1].ptr,
                        a[1].len,
                        a[2].ptr,
                        a[2].len,
                        a[3].ptr,
                        a[3].len,
                        a[4].ptr,
                        a[4].len,
                        report,
                        null_mut(),
                    )
                })
            },
        )
        .objects(2)
        .bad_configs(3),
    ]
}

/// The model-free calls with valid arguments (d = 2).
fn free_cases() -> Vec<Case> {
    let d = 2usize;
    let (n, m) = (4usize, 5usize);
    let eigen_ws = query(|o| unsafe { msde_eigen_sym_workspace_len(d, o, null_mut()) });
    let sliced_ws =
        query(|o| unsafe { msde_sliced_wasserstein_workspace_len(n, m, d, 8, o, null_mut()) });
    let median_ws =
        query(|o| unsafe { msde_median_sq_distance_workspace_len(n, m, o, null_mut()) });
    let uot_cfg = filled(|c| unsafe { msde_uot_config_default(0.5, c, null_mut()) });
    let uot_ws = query(|o| unsafe { msde_uot_workspace_len(n, m, d, &uot_cfg, 1, o, null_mut()) });
    // Twenty points (the default kNN graph needs more than 15) at four
    // times in two groups.
    let rows = 20usize;
    let z: Vec<f32> = (0..rows)
        .flat_map(|i| {
            let centre = if i % 2 == 0 { -2.0 } else { 2.0 };
            [centre + 0.1 * (i as f32).sin(), 0.1 * (i as f32).cos()]
        })
        .collect();
    let t: Vec<f32> = (0..rows).map(|i| (i / 5) as f32).collect();
    let cluster_cfg = filled(|c| unsafe { msde_cluster_config_default(2, 1.0, c, null_mut()) });
    let (mut cluster_fl, mut cluster_il) = (0, 0);
    assert_eq!(
        unsafe {
            msde_cluster_workspace_len(
                rows,
                d,
                &cluster_cfg,
                &mut cluster_fl,
                &mut cluster_il,
                null_mut(),
            )
        },
        MSDE_OK
    );
    vec![
        Case::new(
            "msde_eigen_sym",
            vec![
                input(vec![2.0, 0.5, 0.5, 1.0], Input),
                out(d, Output),
                out(d * d, Output),
                out(eigen_ws, Workspace),
            ],
            |k| {
                let a = k.a;
                unsafe {
                    msde_eigen_sym(
                        a[0].ptr,
                        a[0].len,
                        k.dims[0],
                        a[1].ptr,
                        a[1].len,
                        a[2].ptr,
                        a[2].len,
                        a[3].ptr,
                        a[3].len,
                        null_mut(),
                    )
                }
            },
        )
        .dims(&[d]),
        Case::new(
            "msde_sliced_wasserstein",
            vec![
                input(cloud(n, d, 0.5), Input),
                input(cloud(m, d, 1.5), Input),
                out(sliced_ws, Workspace),
            ],
            |k| {
                let a = k.a;
                untouched(|v| unsafe {
                    msde_sliced_wasserstein(
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        k.dims[0],
                        k.dims[1],
                        7,
                        a[2].ptr,
                        a[2].len,
                        k.obj_mut(0, v),
                        null_mut(),
                    )
                })
            },
        )
        .dims(&[d, 8])
        .objects(1),
        Case::new(
            "msde_median_sq_distance",
            vec![
                input(cloud(n, d, 0.6), Input),
                input(cloud(m, d, 1.6), Input),
                out(median_ws, Workspace),
            ],
            |k| {
                let a = k.a;
                untouched(|v| unsafe {
                    msde_median_sq_distance(
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        k.dims[0],
                        a[2].ptr,
                        a[2].len,
                        k.obj_mut(0, v),
                        null_mut(),
                    )
                })
            },
        )
        .dims(&[d])
        .objects(1),
        Case::new(
            "msde_energy_distance",
            vec![
                input(cloud(n, d, 0.7), Input),
                input(cloud(m, d, 1.7), Input),
            ],
            |k| {
                let a = k.a;
                untouched(|v| unsafe {
                    msde_energy_distance(
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        k.dims[0],
                        k.obj_mut(0, v),
                        null_mut(),
                    )
                })
            },
        )
        .dims(&[d])
        .objects(1),
        Case::new(
            "msde_uot_solve",
            vec![
                input(cloud(n, d, 0.8), Input),
                input(cloud(m, d, 1.8), Input),
                input(vec![0.25; n], Input),
                input(vec![0.2; m], Input),
                // Tracks (0, 1) and (2, 3); index 9 is past both clouds.
                indices(&[0, 1, 2, 3], Input, Some((9, MSDE_ERR_BAD_CONFIG))),
                input(vec![0.01, 0.02], OptionalInput),
                out(n, Output),
                out(m, OptionalOutput),
                out(n * d, OptionalOutput),
                out(n * m, OptionalOutput),
                out(uot_ws, Workspace),
            ],
            move |k| {
                let a = k.a;
                let mut cfg = uot_cfg;
                match k.bad_config {
                    Some(0) => cfg.epsilon = f32::NAN,
                    Some(1) => cfg.tol = 0.0,
                    Some(_) => cfg.rho_source = -1.0,
                    None => {}
                }
                untouched(|summary| unsafe {
                    msde_uot_solve(
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        a[2].ptr,
                        a[2].len,
                        a[3].ptr,
                        a[3].len,
                        k.dims[0],
                        a[4].u32(),
                        a[4].len,
                        a[5].ptr,
                        a[5].len,
                        k.obj(0, &cfg),
                        a[6].ptr,
                        a[6].len,
                        a[7].ptr,
                        a[7].len,
                        a[8].ptr,
                        a[8].len,
                        a[9].ptr,
                        a[9].len,
                        a[10].ptr,
                        a[10].len,
                        summary,
                        null_mut(),
                    )
                })
            },
        )
        .dims(&[d])
        .objects(1)
        .bad_configs(3),
        Case::new(
            "msde_cluster",
            vec![
                input(z, Input),
                input(t, Input),
                out_u32(rows, Output),
                out(cluster_fl, Workspace),
                out_u32(cluster_il, Workspace),
            ],
            move |k| {
                let a = k.a;
                let mut cfg = cluster_cfg;
                match k.bad_config {
                    Some(0) => cfg.sigma_t = f32::NAN,
                    Some(1) => cfg.k = 0,
                    Some(_) => cfg.k = rows + 1,
                    None => {}
                }
                untouched(|summary| unsafe {
                    msde_cluster(
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        k.dims[0],
                        k.dims[1],
                        k.obj(0, &cfg),
                        a[2].u32(),
                        a[2].len,
                        a[3].ptr,
                        a[3].len,
                        a[4].u32(),
                        a[4].len,
                        summary,
                        null_mut(),
                    )
                })
            },
        )
        .dims(&[rows, d])
        .objects(1)
        .bad_configs(3),
    ]
}

#[test]
fn broken_arguments_get_their_documented_status() {
    let m = small_model(true, MSDE_TARGET_PAIRWISE);
    let cases: Vec<Case> = model_cases(m).into_iter().chain(free_cases()).collect();
    let calls = check(&cases, TRIALS, &mut Stream(0x243F_6A88_85A3_08D3));
    unsafe { msde_model_free(m) };
    eprintln!(
        "abi fuzz: {calls} broken calls over {} functions",
        cases.len()
    );
}

/// Dimensions a size query may get.
const DIMS: [usize; 8] = [
    0,
    1,
    2,
    7,
    1 << 20,
    (isize::MAX as usize) / 4 + 1,
    usize::MAX / 3,
    usize::MAX,
];

#[test]
fn size_queries_answer_addressable_sizes_or_refuse() {
    let models = [
        small_model(false, MSDE_TARGET_PAIRWISE),
        small_model(true, MSDE_TARGET_PAIRWISE),
    ];
    let sample_cfg = filled(|c| unsafe {
        msde_sample_config_default(MSDE_SAMPLE_EULER_MARUYAMA, c, null_mut())
    });
    let uot_cfg = filled(|c| unsafe { msde_uot_config_default(0.1, c, null_mut()) });
    let fit_cfg = filled(|c| unsafe { msde_fit_config_default(c, null_mut()) });
    let cluster_cfg = filled(|c| unsafe { msde_cluster_config_default(3, 1.0, c, null_mut()) });
    let mut s = Stream(0x1319_8A2E_0370_7344);
    let mut calls = 0;
    for _ in 0..2000 {
        let mut dim = || DIMS[s.below(DIMS.len())];
        let (a, b, c) = (dim(), dim(), dim());
        let m = models[a % 2];
        let mut results: Vec<(&str, msde_status, usize, usize)> = Vec::new();
        let mut one = |name, elem: usize, f: &dyn Fn(*mut usize) -> msde_status| {
            let mut len = usize::MAX - 1;
            let status = f(&mut len);
            results.push((name, status, len, elem));
            // A NULL output is refused and nothing else happens.
            assert_eq!(f(null_mut()), MSDE_ERR_NULL_POINTER, "{name}");
        };
        unsafe {
            one("eval", 4, &|o| {
                msde_model_eval_workspace_len(m, a, o, null_mut())
            });
            one("spectrum", 4, &|o| {
                msde_model_diffusion_spectrum_workspace_len(m, a, o, null_mut())
            });
            one("propagated", 4, &|o| {
                msde_model_propagated_diffusion_workspace_len(m, a, b, o, null_mut())
            });
            one("trainer", 1, &|o| {
                msde_trainer_state_len(m, a, b, o, null_mut())
            });
            one("sample", 4, &|o| {
                msde_sample_workspace_len(m, &sample_cfg, a, b, c, o, null_mut())
            });
            one("uot", 4, &|o| {
                msde_uot_workspace_len(a, b, c, &uot_cfg, (a & 1) as u32, o, null_mut())
            });
            one("median", 4, &|o| {
                msde_median_sq_distance_workspace_len(a, b, o, null_mut())
            });
            one("sliced", 4, &|o| {
                msde_sliced_wasserstein_workspace_len(a, b, c, a, o, null_mut())
            });
            one("eigen", 4, &|o| {
                msde_eigen_sym_workspace_len(a, o, null_mut())
            });
        }
        for (name, status, len, elem) in results {
            calls += 2;
            match status {
                MSDE_OK => assert!(
                    len.checked_mul(elem)
                        .is_some_and(|b| b <= isize::MAX as usize),
                    "{name}({a}, {b}, {c}) answered {len}"
                ),
                MSDE_ERR_TOO_LARGE | MSDE_ERR_BAD_DIMENSION | MSDE_ERR_BAD_CONFIG => {
                    assert_eq!(len, usize::MAX - 1, "{name}: written on {status:?}")
                }
                other => panic!("{name}({a}, {b}, {c}): {other:?}"),
            }
        }
        // Two-output queries.
        for (name, f) in [
            (
                "fit",
                &(|fl: *mut usize, il: *mut usize| unsafe {
                    msde_fit_workspace_len(m, a, &fit_cfg, fl, il, null_mut())
                }) as &dyn Fn(*mut usize, *mut usize) -> msde_status,
            ),
            ("cluster", &|fl, il| unsafe {
                msde_cluster_workspace_len(a, b, &cluster_cfg, fl, il, null_mut())
            }),
        ] {
            let (mut fl, mut il) = (usize::MAX - 1, usize::MAX - 1);
            let status = f(&mut fl, &mut il);
            calls += 1;
            if status == MSDE_OK {
                assert!(
                    fl <= isize::MAX as usize / 4 && il <= isize::MAX as usize / 4,
                    "{name}"
                );
            } else {
                assert!(
                    matches!(
                        status,
                        MSDE_ERR_TOO_LARGE | MSDE_ERR_BAD_DIMENSION | MSDE_ERR_BAD_CONFIG
                    ),
                    "{name}({a}, {b}): {status:?}"
                );
                assert_eq!((fl, il), (usize::MAX - 1, usize::MAX - 1), "{name}");
            }
        }
    }
    // Non-finite and out-of-range config values are refused by the size
    // queries as by the calls.
    let mut bad_sample = sample_cfg;
    bad_sample.h = f32::NAN;
    let mut bad_uot = uot_cfg;
    bad_uot.epsilon = f32::INFINITY;
    let mut len = 7;
    unsafe {
        assert_eq!(
            msde_sample_workspace_len(models[1], &bad_sample, 4, 2, 1, &mut len, null_mut()),
            MSDE_ERR_BAD_CONFIG
        );
        assert_eq!(
            msde_uot_workspace_len(4, 4, 2, &bad_uot, 0, &mut len, null_mut()),
            MSDE_ERR_BAD_CONFIG
        );
    }
    assert_eq!(len, 7);
    for m in models {
        unsafe { msde_model_free(m) };
    }
    eprintln!("abi fuzz: {calls} size queries");
}
