//! Which vector instruction set the hot loops may use.
//!
//! Detection is done here, in the core, with `cpuid`/`xgetbv` (available in
//! `core::arch`), not with std's `is_x86_feature_detected!`, so that the
//! `no_std` and `std` builds pick the same kernels on the same machine and
//! therefore give bit-identical results. Kernels for different levels may
//! differ in the last bits (fused multiply-adds, lane order); results are
//! reproducible per machine level, which [`level`] reports.
#![allow(
    unsafe_code,
    reason = "reading XCR0 (`_xgetbv`), which says which vector registers the OS saves, is an unsafe intrinsic"
)]

/// Instruction-set level of the vector kernels, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Portable code only (any target, including thumbv7em).
    Portable = 1,
    /// x86-64 AVX2 + FMA (256-bit).
    Avx2Fma = 2,
    /// x86-64 AVX-512F (+ AVX2, FMA) (512-bit).
    Avx512 = 3,
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    let leaf0 = __cpuid(0);
    if leaf0.eax < 7 {
        return Level::Portable;
    }
    let leaf1 = __cpuid(1);
    let leaf7 = __cpuid_count(7, 0);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if !osxsave {
        return Level::Portable;
    }
    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        // SAFETY: OSXSAVE is set, so xgetbv(0) is available.
        unsafe { _xgetbv(0) }
    }
    // SAFETY: guarded by the OSXSAVE check above.
    let xcr0 = unsafe { xcr0() };
    let fma = leaf1.ecx & (1 << 12) != 0;
    let avx = leaf1.ecx & (1 << 28) != 0;
    let avx2 = leaf7.ebx & (1 << 5) != 0;
    let avx512f = leaf7.ebx & (1 << 16) != 0;
    let ymm_state = xcr0 & 0x6 == 0x6;
    let zmm_state = xcr0 & 0xE6 == 0xE6;
    if avx && avx2 && fma && avx512f && ymm_state && zmm_state {
        Level::Avx512
    } else if avx && avx2 && fma && ymm_state {
        Level::Avx2Fma
    } else {
        Level::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Portable
}

/// The best level this CPU and OS support (detected once, then cached; the
/// cache is an idempotent atomic, safe from any thread).
pub fn level() -> Level {
    use core::sync::atomic::{AtomicU8, Ordering};
    static CACHE: AtomicU8 = AtomicU8::new(0);
    match CACHE.load(Ordering::Relaxed) {
        1 => Level::Portable,
        2 => Level::Avx2Fma,
        3 => Level::Avx512,
        _ => {
            let l = detect();
            CACHE.store(l as u8, Ordering::Relaxed);
            l
        }
    }
}

#[cfg(all(test, feature = "std", target_arch = "x86_64"))]
mod tests {
    #[test]
    fn agrees_with_std_detection() {
        let std_level = if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            super::Level::Avx512
        } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            super::Level::Avx2Fma
        } else {
            super::Level::Portable
        };
        assert_eq!(super::level(), std_level);
    }
}
