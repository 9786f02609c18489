//! A seeded fuzz of the C ABI's buffer calls: each trial takes a valid call
//! and breaks one thing — a pointer NULL with its length kept, a length one
//! short or one long (every buffer ends at an unreadable page, so a read
//! or write past a given length faults), a required buffer empty, or a NaN
//! or infinity in an input — and asserts the documented status, no crash,
//! and every output untouched. The size queries get random dimensions
//! (zero, small, address-space-scale) and NULL outputs; an answer is
//! either refused with its output untouched or a length whose bytes fit
//! PTRDIFF_MAX.
#![allow(unsafe_code, reason = "calls the C ABI with raw pointers")]

mod common;
use common::guarded::Guarded;
use morphosde::*;
use msde_status::*;
use std::ptr::null_mut;

/// Trials per buffer call.
const TRIALS: usize = 400;
const SENTINEL: f32 = -12345.0;

/// xorshift64*: a fixed, dependency-free stream.
struct Stream(u64);

impl Stream {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// Read; NaN or infinity refused.
    Input,
    /// Written on success only.
    Output,
    /// Written on success only; NULL with length 0 skips it.
    OptionalOutput,
    /// Scratch: contents garbage, a longer one is fine.
    Workspace,
}

struct Buffer {
    values: Vec<f32>,
    role: Role,
}

/// One argument as the call receives it.
#[derive(Clone, Copy)]
struct Arg {
    ptr: *mut f32,
    len: usize,
}

type Call = Box<dyn Fn(&[Arg]) -> msde_status>;

struct Case {
    name: &'static str,
    buffers: Vec<Buffer>,
    call: Call,
}

fn input(values: Vec<f32>) -> Buffer {
    Buffer {
        values,
        role: Role::Input,
    }
}

fn out(len: usize, role: Role) -> Buffer {
    Buffer {
        values: vec![SENTINEL; len],
        role,
    }
}

#[derive(Clone, Copy, Debug)]
enum Break {
    Null(usize),
    Short(usize),
    Long(usize),
    Empty(usize),
    NonFinite(usize, usize, f32),
}

impl Break {
    fn pick(case: &Case, s: &mut Stream) -> Break {
        let i = s.below(case.buffers.len());
        let b = &case.buffers[i];
        match s.below(5) {
            0 => Break::Null(i),
            1 => Break::Short(i),
            2 => Break::Long(i),
            3 => Break::Empty(i),
            _ if b.role == Role::Input && !b.values.is_empty() => Break::NonFinite(
                i,
                s.below(b.values.len()),
                [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][s.below(3)],
            ),
            _ => Break::Short(i),
        }
    }

    /// The statuses the documentation allows (OK where the break is
    /// harmless).
    fn allowed(self, case: &Case) -> &'static [msde_status] {
        let role = |i: usize| case.buffers[i].role;
        match self {
            Break::Null(_) => &[MSDE_ERR_NULL_POINTER],
            Break::Short(i) if role(i) == Role::Workspace => &[MSDE_ERR_BUFFER_TOO_SMALL],
            Break::Short(_) => &[MSDE_ERR_BAD_DIMENSION],
            Break::Long(i) if role(i) == Role::Workspace => &[MSDE_OK],
            Break::Long(_) => &[MSDE_ERR_BAD_DIMENSION],
            Break::Empty(i) if role(i) == Role::OptionalOutput => &[MSDE_OK],
            Break::Empty(i) if role(i) == Role::Workspace => &[MSDE_ERR_BUFFER_TOO_SMALL],
            Break::Empty(_) => &[MSDE_ERR_BAD_DIMENSION],
            Break::NonFinite(..) => &[MSDE_ERR_NON_FINITE],
        }
    }
}

/// Runs `case` with `brk` applied; asserts the status and untouched
/// outputs.
fn run(case: &Case, brk: Option<Break>) -> msde_status {
    let mut guarded: Vec<Guarded<f32>> = Vec::new();
    let mut args = Vec::new();
    for (i, b) in case.buffers.iter().enumerate() {
        let mut values = b.values.clone();
        if let Some(Break::NonFinite(j, k, v)) = brk
            && j == i
        {
            values[k] = v;
        }
        let mut g = Guarded::new(&values);
        let mut arg = Arg {
            ptr: g.mut_ptr(),
            len: values.len(),
        };
        match brk {
            Some(Break::Null(j)) if j == i => arg.ptr = null_mut(),
            Some(Break::Short(j)) if j == i => arg.len = arg.len.saturating_sub(1),
            Some(Break::Long(j)) if j == i => arg.len += 1,
            Some(Break::Empty(j)) if j == i => {
                arg = Arg {
                    ptr: null_mut(),
                    len: 0,
                }
            }
            _ => {}
        }
        guarded.push(g);
        args.push(arg);
    }
    let status = (case.call)(&args);
    if status != MSDE_OK {
        for (b, g) in case.buffers.iter().zip(&guarded) {
            if matches!(b.role, Role::Output | Role::OptionalOutput) {
                assert!(
                    g.as_slice().iter().all(|&v| v == SENTINEL),
                    "{}: {brk:?} gave {status:?} and wrote an output",
                    case.name
                );
            }
        }
    }
    status
}

fn model(diffusion: bool) -> *mut msde_model {
    let mut cfg = unsafe { std::mem::zeroed::<msde_model_config>() };
    unsafe { msde_model_config_default(&mut cfg, null_mut()) };
    cfg.d = 2;
    cfg.depth = 1;
    cfg.width = 8;
    cfg.time_features = 2;
    cfg.learn_diffusion = diffusion as u32;
    cfg.residual = MSDE_RESIDUAL_ONE_STEP;
    cfg.k_neighbours = 2;
    let mut m = null_mut();
    assert_eq!(unsafe { msde_model_new(&cfg, &mut m, null_mut()) }, MSDE_OK);
    m
}

fn cloud(rows: usize, d: usize, phase: f32) -> Vec<f32> {
    (0..rows * d)
        .map(|k| (k as f32 * 0.61 + phase).sin())
        .collect()
}

fn query(f: impl FnOnce(*mut usize) -> msde_status) -> usize {
    let mut len = 0;
    assert_eq!(f(&mut len), MSDE_OK);
    len
}

/// The buffer calls with valid arguments (rows = 3, d = 2).
fn cases(m: *mut msde_model) -> Vec<Case> {
    let (rows, d) = (3usize, 2usize);
    let eval_ws = query(|o| unsafe { msde_model_eval_workspace_len(m, rows, o, null_mut()) });
    let spectrum_ws =
        query(|o| unsafe { msde_model_diffusion_spectrum_workspace_len(m, rows, o, null_mut()) });
    let propagated_ws = query(|o| unsafe {
        msde_model_propagated_diffusion_workspace_len(m, rows, 4, o, null_mut())
    });
    let eigen_ws = query(|o| unsafe { msde_eigen_sym_workspace_len(d, o, null_mut()) });
    let sliced_ws =
        query(|o| unsafe { msde_sliced_wasserstein_workspace_len(4, 5, d, 8, o, null_mut()) });
    let median_ws =
        query(|o| unsafe { msde_median_sq_distance_workspace_len(4, 5, o, null_mut()) });
    let mut sample_cfg = unsafe { std::mem::zeroed::<msde_sample_config>() };
    unsafe { msde_sample_config_default(MSDE_SAMPLE_RK4, &mut sample_cfg, null_mut()) };
    let sample_ws =
        query(|o| unsafe { msde_sample_workspace_len(m, &sample_cfg, rows, 2, 1, o, null_mut()) });
    let m = m as usize;
    let model = move || m as *mut msde_model;
    vec![
        Case {
            name: "msde_model_drift_factor",
            buffers: vec![
                input(cloud(rows, d, 0.1)),
                input(vec![0.0, 0.5, 1.0]),
                out(rows * d, Role::Output),
                out(rows * d * d, Role::Output),
                out(eval_ws, Role::Workspace),
            ],
            call: Box::new(move |a| unsafe {
                msde_model_drift_factor(
                    model(),
                    a[0].ptr,
                    a[0].len,
                    a[1].ptr,
                    a[1].len,
                    3,
                    a[2].ptr,
                    a[2].len,
                    a[3].ptr,
                    a[3].len,
                    a[4].ptr,
                    a[4].len,
                    null_mut(),
                )
            }),
        },
        Case {
            name: "msde_model_diffusion_spectrum",
            buffers: vec![
                input(cloud(rows, d, 0.2)),
                input(vec![0.0, 0.5, 1.0]),
                out(rows * d, Role::Output),
                out(rows * d * d, Role::OptionalOutput),
                out(rows * d * d, Role::OptionalOutput),
                out(spectrum_ws, Role::Workspace),
            ],
            call: Box::new(move |a| unsafe {
                msde_model_diffusion_spectrum(
                    model(),
                    a[0].ptr,
                    a[0].len,
                    a[1].ptr,
                    a[1].len,
                    3,
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
            }),
        },
        Case {
            name: "msde_model_propagated_diffusion",
            buffers: vec![
                input(cloud(rows, d, 0.3)),
                input(vec![0.0, 0.5, 1.0]),
                input(vec![0.1, 0.2, 0.1]),
                input(cloud(rows, d, 0.9)),
                out(rows * d * d, Role::Output),
                out(rows * d, Role::OptionalOutput),
                out(propagated_ws, Role::Workspace),
            ],
            call: Box::new(move |a| unsafe {
                msde_model_propagated_diffusion(
                    model(),
                    a[0].ptr,
                    a[0].len,
                    a[1].ptr,
                    a[1].len,
                    a[2].ptr,
                    a[2].len,
                    4,
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
            }),
        },
        Case {
            name: "msde_sample",
            buffers: vec![
                input(cloud(rows, d, 0.4)),
                input(vec![0.5, 1.0]),
                out(rows * 2 * d, Role::Output),
                out(rows, Role::Output),
                out(sample_ws, Role::Workspace),
            ],
            call: Box::new(move |a| unsafe {
                msde_sample(
                    model(),
                    &sample_cfg,
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
                    null_mut(),
                    null_mut(),
                )
            }),
        },
        Case {
            name: "msde_eigen_sym",
            buffers: vec![
                input(vec![2.0, 0.5, 0.5, 1.0]),
                out(d, Role::Output),
                out(d * d, Role::Output),
                out(eigen_ws, Role::Workspace),
            ],
            call: Box::new(move |a| unsafe {
                msde_eigen_sym(
                    a[0].ptr,
                    a[0].len,
                    2,
                    a[1].ptr,
                    a[1].len,
                    a[2].ptr,
                    a[2].len,
                    a[3].ptr,
                    a[3].len,
                    null_mut(),
                )
            }),
        },
        Case {
            name: "msde_sliced_wasserstein",
            buffers: vec![
                input(cloud(4, d, 0.5)),
                input(cloud(5, d, 1.5)),
                out(sliced_ws, Role::Workspace),
            ],
            call: Box::new(move |a| {
                let mut v = SENTINEL;
                let s = unsafe {
                    msde_sliced_wasserstein(
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        2,
                        8,
                        7,
                        a[2].ptr,
                        a[2].len,
                        &mut v,
                        null_mut(),
                    )
                };
                assert!(s == MSDE_OK || v == SENTINEL, "sliced W wrote on failure");
                s
            }),
        },
        Case {
            name: "msde_median_sq_distance",
            buffers: vec![
                input(cloud(4, d, 0.6)),
                input(cloud(5, d, 1.6)),
                out(median_ws, Role::Workspace),
            ],
            call: Box::new(move |a| {
                let mut v = SENTINEL;
                let s = unsafe {
                    msde_median_sq_distance(
                        a[0].ptr,
                        a[0].len,
                        a[1].ptr,
                        a[1].len,
                        2,
                        a[2].ptr,
                        a[2].len,
                        &mut v,
                        null_mut(),
                    )
                };
                assert!(s == MSDE_OK || v == SENTINEL, "median wrote on failure");
                s
            }),
        },
    ]
}

#[test]
fn broken_buffer_arguments_get_their_documented_status() {
    let m = model(true);
    let cases = cases(m);
    let mut stream = Stream(0x243F_6A88_85A3_08D3);
    let mut calls = 0;
    for case in &cases {
        assert_eq!(run(case, None), MSDE_OK, "{}: the valid call", case.name);
        for _ in 0..TRIALS {
            let brk = Break::pick(case, &mut stream);
            let status = run(case, Some(brk));
            let allowed = brk.allowed(case);
            assert!(
                allowed.contains(&status),
                "{}: {brk:?} gave {status:?}, documented {allowed:?}",
                case.name
            );
            calls += 1;
        }
    }
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
    let models = [model(false), model(true)];
    let mut sample_cfg = unsafe { std::mem::zeroed::<msde_sample_config>() };
    let mut uot_cfg = unsafe { std::mem::zeroed::<msde_uot_config>() };
    let mut fit_cfg = unsafe { std::mem::zeroed::<msde_fit_config>() };
    let mut cluster_cfg = unsafe { std::mem::zeroed::<msde_cluster_config>() };
    unsafe {
        msde_sample_config_default(MSDE_SAMPLE_EULER_MARUYAMA, &mut sample_cfg, null_mut());
        msde_uot_config_default(0.1, &mut uot_cfg, null_mut());
        msde_fit_config_default(&mut fit_cfg, null_mut());
        msde_cluster_config_default(3, 1.0, &mut cluster_cfg, null_mut());
    }
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
