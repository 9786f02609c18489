//! The C ABI at its limits: size queries fed address-space-scale
//! dimensions answer MSDE_ERR_TOO_LARGE instead of a wrapped size.

use morphosde::*;
use std::ptr::null_mut;

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

fn model(diffusion: bool, target_mode: u32) -> *mut msde_model {
    let mut cfg = unsafe { std::mem::zeroed::<msde_model_config>() };
    assert_eq!(
        unsafe { msde_model_config_default(&mut cfg, null_mut()) },
        msde_status::MSDE_OK
    );
    cfg.d = 2;
    cfg.depth = 1;
    cfg.width = 8;
    cfg.time_features = 2;
    cfg.learn_diffusion = diffusion as u32;
    cfg.target_mode = target_mode;
    cfg.residual = MSDE_RESIDUAL_ONE_STEP;
    cfg.k_neighbours = 2;
    let mut m = null_mut();
    assert_eq!(
        unsafe { msde_model_new(&cfg, &mut m, null_mut()) },
        msde_status::MSDE_OK
    );
    m
}

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
