//! Damaged model bytes through the three load calls (msde_model_bytes_config,
//! msde_model_load, msde_model_load_new): every truncation length, seeded
//! single-bit flips (caught by the checksum or the header checks), and
//! seeded flips with the checksum recomputed, which reach the config and
//! parameter checks. Each damaged file is refused with a corrupt-model or
//! version status and leaves every output as it was, or (a flip the
//! checks cannot tell from a real model, e.g. in a weight) loads a model
//! that evaluates to finite values or reports a numerical failure.
#![allow(unsafe_code, reason = "calls the C ABI with raw pointers")]

use morphosde::*;
use std::ptr::{null, null_mut};

/// Bits flipped per pass.
const FLIPS: usize = 3000;
const CFG_SENTINEL: u8 = 0xA5;
const MEM_SENTINEL: u64 = 0x5A5A_5A5A_5A5A_5A5A;

/// xorshift64*: a fixed, dependency-free stream of positions.
struct Positions(u64);

impl Positions {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % below
    }
}

struct Loader {
    mem: Vec<u64>,
    mem_bytes: usize,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Refused,
    Loaded,
}

impl Loader {
    /// Runs the three calls on `bytes`, checking their agreement and that a
    /// refusal leaves the outputs untouched.
    fn load(&mut self, bytes: &[u8], what: &str) -> Outcome {
        let refused = |s: msde_status| {
            matches!(
                s,
                msde_status::MSDE_ERR_CORRUPT_MODEL | msde_status::MSDE_ERR_VERSION_MISMATCH
            )
        };
        let ptr = if bytes.is_empty() {
            null()
        } else {
            bytes.as_ptr()
        };
        let mut cfg = [CFG_SENTINEL; size_of::<msde_model_config>()];
        let s_cfg = unsafe {
            msde_model_bytes_config(ptr, bytes.len(), cfg.as_mut_ptr().cast(), null_mut())
        };
        self.mem.fill(MEM_SENTINEL);
        let mut out = null_mut();
        let s_load = unsafe {
            msde_model_load(
                self.mem.as_mut_ptr().cast(),
                self.mem_bytes,
                ptr,
                bytes.len(),
                &mut out,
                null_mut(),
            )
        };
        let mut heap = null_mut();
        let s_new = unsafe { msde_model_load_new(ptr, bytes.len(), &mut heap, null_mut()) };
        if s_load == msde_status::MSDE_ERR_BUFFER_TOO_SMALL && s_new == msde_status::MSDE_OK {
            // A flipped setting that grows the model: load_new allocates.
            unsafe { msde_model_free(heap) };
            return Outcome::Loaded;
        }
        assert_eq!(s_load, s_new, "{what}: load and load_new disagree");
        if s_load == msde_status::MSDE_OK {
            // A config that loads may still need more memory than the
            // original: then load says so, load_new does not.
            assert_eq!(s_cfg, msde_status::MSDE_OK, "{what}");
            assert!(!heap.is_null());
            assert!(finite_or_numerical(heap), "{what}");
            unsafe { msde_model_free(heap) };
            return Outcome::Loaded;
        }
        assert!(refused(s_load), "{what}: {s_load:?}");
        assert!(
            out.is_null() && heap.is_null(),
            "{what}: an output was written"
        );
        assert!(
            self.mem.iter().all(|&w| w == MEM_SENTINEL),
            "{what}: a refused load wrote the memory"
        );
        if s_cfg != msde_status::MSDE_OK {
            assert!(refused(s_cfg), "{what}: {s_cfg:?}");
            assert!(
                cfg.iter().all(|&b| b == CFG_SENTINEL),
                "{what}: config written"
            );
        }
        Outcome::Refused
    }
}

/// The drift of a loaded model at one state is finite, or the call says
/// the result is not (never a crash, never a silent NaN).
fn finite_or_numerical(m: *const msde_model) -> bool {
    let mut info = unsafe { std::mem::zeroed::<msde_model_info>() };
    unsafe { msde_model_info_get(m, &mut info, null_mut(), null_mut()) };
    let mut ws_len = 0;
    unsafe { msde_model_eval_workspace_len(m, 1, &mut ws_len, null_mut()) };
    let (z, t) = (vec![0.5f32; info.d], [0.25f32]);
    let mut f = vec![f32::NAN; info.d];
    let mut ws = vec![0.0f32; ws_len];
    let s = unsafe {
        msde_model_drift(
            m,
            z.as_ptr(),
            z.len(),
            t.as_ptr(),
            1,
            1,
            f.as_mut_ptr(),
            f.len(),
            ws.as_mut_ptr(),
            ws.len(),
            null_mut(),
        )
    };
    match s {
        msde_status::MSDE_OK => f.iter().all(|v| v.is_finite()),
        msde_status::MSDE_ERR_NUMERICAL => true,
        _ => false,
    }
}

fn saved_model() -> Vec<u8> {
    let mut cfg = unsafe { std::mem::zeroed::<msde_model_config>() };
    unsafe { msde_model_config_default(&mut cfg, null_mut()) };
    cfg.d = 2;
    cfg.depth = 1;
    cfg.width = 4;
    cfg.time_features = 2;
    cfg.learn_diffusion = 1;
    let mut m = null_mut();
    assert_eq!(
        unsafe { msde_model_new(&cfg, &mut m, null_mut()) },
        msde_status::MSDE_OK
    );
    let mut len = 0;
    unsafe { msde_model_save_len(m, &mut len, null_mut()) };
    let mut bytes = vec![0u8; len];
    let mut written = 0;
    unsafe {
        msde_model_save(m, bytes.as_mut_ptr(), len, &mut written, null_mut());
        msde_model_free(m);
    }
    bytes
}

fn with_checksum(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len();
    let sum = morphosde_core::codec::fnv1a64(&b[..n - 8]);
    b[n - 8..].copy_from_slice(&sum.to_le_bytes());
    b
}

#[test]
fn damaged_model_bytes_are_refused_or_load_a_working_model() {
    let good = saved_model();
    // Memory for the largest model any config could describe is not
    // needed: a config that grows the model is refused for short memory by
    // load (load_new allocates), so size generously for the flips.
    let mem_bytes = 64 * good.len();
    let mut loader = Loader {
        mem: vec![0; mem_bytes / 8],
        mem_bytes,
    };
    assert_eq!(loader.load(&good, "intact"), Outcome::Loaded);
    let mut counts = [0usize; 3];
    for len in 0..good.len() {
        let what = format!("truncated to {len}");
        assert_eq!(loader.load(&good[..len], &what), Outcome::Refused, "{what}");
        counts[0] += 1;
    }
    let mut pos = Positions(0x9E37_79B9_7F4A_7C15);
    for _ in 0..FLIPS {
        let bit = pos.next(good.len() * 8);
        let mut b = good.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        let what = format!("bit {bit} flipped");
        // FNV-1a changes under any single-byte change: always refused.
        assert_eq!(loader.load(&b, &what), Outcome::Refused, "{what}");
        counts[1] += 1;
    }
    let mut loaded = 0;
    for _ in 0..FLIPS {
        let bit = pos.next((good.len() - 8) * 8);
        let mut b = good.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        let what = format!("bit {bit} flipped, checksum fixed");
        if loader.load(&with_checksum(b), &what) == Outcome::Loaded {
            loaded += 1;
        }
        counts[2] += 1;
    }
    // Most flips land in the parameters, which any finite value passes.
    assert!(loaded > 0 && loaded < FLIPS, "{loaded}");
    eprintln!(
        "model bytes: {} long; {} truncations, {} flips, {} flips with the checksum fixed \
         ({loaded} loaded), each through 3 calls",
        good.len(),
        counts[0],
        counts[1],
        counts[2]
    );
}
