//! Vectorised exponential for hot loops (Sinkhorn, softplus/sigmoid, affinity
//! kernels): the one exp kernel every module should call on slices instead of
//! scalar libm.
//!
//! `f32`: a degree-6 polynomial on `[−ln2/2, ln2/2]` after the reduction
//! `x = n·ln2 + r` (Cody–Waite, two-part ln2), scaled by `2^n` built from the
//! exponent bits. Written three times with the same constants: AVX-512F
//! (16 lanes), AVX2+FMA (8 lanes) and portable scalar code; the path is
//! chosen at run time by [`crate::cpu::level`], so the `std` and `no_std`
//! builds give the same bits on the same machine. Tails shorter than a vector
//! go through the same vector code via a stack buffer, so an element's result
//! never depends on its position in the slice.
//!
//! Accuracy: at most 1 ulp from libm `expf` on every path, tested on every
//! 97th f32 of `[EXP_MIN_F32, EXP_MAX_F32]` (≈ 2.3e7 points). Range: inputs
//! below `EXP_MIN_F32` (≈ −87.34, `ln` of the smallest normal) give exactly 0;
//! inputs above `EXP_MAX_F32` (≈ 88.38) are clamped to it (≈ 2.4e38, not
//! ∞); NaN stays NaN.
//!
//! `f64` falls back to libm `exp` element by element (no f64 hot loop ships).
#![allow(
    unsafe_code,
    reason = "AVX2/AVX-512 intrinsics behind runtime detection, and the `f32` view of a slice whose `F` is `f32`"
)]

use crate::float::Float;
use core::any::TypeId;

/// Inputs below this give 0 (`ln` of the smallest positive normal f32).
pub const EXP_MIN_F32: f32 = -87.336_55;
/// Inputs above this are clamped to it (127.5·ln 2, so `2^n` stays finite).
pub const EXP_MAX_F32: f32 = 88.376_26;

const LOG2E: f32 = core::f32::consts::LOG2_E;
/// ln 2 split so that `n·LN2_HI` is exact for |n| < 2^9.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2^23: adding it rounds to the nearest integer (ties to even).
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Minimax coefficients of (e^r − 1 − r)/r² on [−ln2/2, ln2/2] (Cephes expf).
const P0: f32 = 1.987_569_2e-4;
const P1: f32 = 1.398_199_9e-3;
const P2: f32 = 8.333_452e-3;
const P3: f32 = 4.166_579_6e-2;
const P4: f32 = 1.666_666_5e-1;
const P5: f32 = 0.5;

/// `xs[k] ← e^{xs[k]}` for every element, vectorised for `f32`.
pub fn exp_in_place<F: Float>(xs: &mut [F]) {
    if let Some(xs) = as_f32(xs) {
        exp_f32(xs);
    } else {
        for x in xs.iter_mut() {
            *x = x.exp();
        }
    }
}

/// `ln Σ e^{xs[k]}` computed stably (shifted by the maximum); `−∞` for an
/// empty slice or when every element is `−∞`. Uses [`exp_in_place`]'s kernel
/// through a stack buffer, so `xs` is left untouched.
pub fn log_sum_exp<F: Float>(xs: &[F]) -> F {
    let mut max = F::NEG_INFINITY;
    for &x in xs {
        max = max.max(x);
    }
    if max == F::NEG_INFINITY || !max.is_finite() {
        return max;
    }
    let mut sum = F::ZERO;
    let mut buf = [F::ZERO; 256];
    for chunk in xs.chunks(buf.len()) {
        let b = &mut buf[..chunk.len()];
        for (o, &x) in b.iter_mut().zip(chunk) {
            *o = x - max;
        }
        exp_in_place(b);
        sum += b.iter().copied().sum::<F>();
    }
    max + sum.ln()
}

/// `xs` viewed as `&mut [f32]` when `F` is `f32`.
fn as_f32<F: Float>(xs: &mut [F]) -> Option<&mut [f32]> {
    if TypeId::of::<F>() == TypeId::of::<f32>() {
        // SAFETY: F is f32 (same TypeId), so the layout and validity are
        // identical; the borrow is carried over unchanged.
        Some(unsafe { &mut *(xs as *mut [F] as *mut [f32]) })
    } else {
        None
    }
}

fn exp_f32(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::cpu::Level;
        match crate::cpu::level() {
            // SAFETY: the level check guarantees the target features.
            Level::Avx512 => return unsafe { x86::exp_avx512(xs) },
            // SAFETY: as above.
            Level::Avx2Fma => return unsafe { x86::exp_avx2(xs) },
            Level::Portable => {}
        }
    }
    for x in xs.iter_mut() {
        *x = exp_scalar(*x);
    }
}

/// The portable kernel (same constants and steps as the vector ones, without
/// fused multiply-adds).
#[inline]
fn exp_scalar(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < EXP_MIN_F32 {
        return 0.0;
    }
    let xc = if x > EXP_MAX_F32 { EXP_MAX_F32 } else { x };
    let n = (xc * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = xc - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = P0;
    p = p * r + P1;
    p = p * r + P2;
    p = p * r + P3;
    p = p * r + P4;
    p = p * r + P5;
    let y = p * (r * r) + r + 1.0;
    // SAFETY: n is an integer in [−126, 127] (x was clamped, NaN returned).
    let ni: i32 = unsafe { n.to_int_unchecked() };
    let bits = ((ni + 127) as u32) << 23;
    y * f32::from_bits(bits)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use core::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        let lo = _mm512_set1_ps(EXP_MIN_F32);
        let xc = _mm512_max_ps(lo, _mm512_min_ps(_mm512_set1_ps(EXP_MAX_F32), x));
        let magic = _mm512_set1_ps(ROUND_MAGIC);
        let n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), magic), magic);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(P0);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
        let y = _mm512_add_ps(
            _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
            _mm512_set1_ps(1.0),
        );
        // n is integral and clamped into [−126, 127]: truncation is exact.
        let ni = _mm512_cvttps_epi32(n);
        let pow2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
            ni,
            _mm512_set1_epi32(127),
        )));
        let res = _mm512_mul_ps(y, pow2);
        // Below the range: exactly 0 (NaN compares false and stays NaN).
        let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo);
        _mm512_mask_mov_ps(res, under, _mm512_setzero_ps())
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exp_avx512(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: c has exactly 16 elements.
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), exp16(_mm512_loadu_ps(c.as_ptr()))) };
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut buf = [0.0f32; 16];
            buf[..tail.len()].copy_from_slice(tail);
            // SAFETY: buf has 16 elements.
            unsafe { _mm512_storeu_ps(buf.as_mut_ptr(), exp16(_mm512_loadu_ps(buf.as_ptr()))) };
            tail.copy_from_slice(&buf[..tail.len()]);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let lo = _mm256_set1_ps(EXP_MIN_F32);
        let xc = _mm256_max_ps(lo, _mm256_min_ps(_mm256_set1_ps(EXP_MAX_F32), x));
        let magic = _mm256_set1_ps(ROUND_MAGIC);
        let n = _mm256_sub_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), magic), magic);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(P0);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
        let y = _mm256_add_ps(
            _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        let ni = _mm256_cvttps_epi32(n);
        let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            ni,
            _mm256_set1_epi32(127),
        )));
        let res = _mm256_mul_ps(y, pow2);
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
        _mm256_andnot_ps(under, res)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_avx2(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: c has exactly 8 elements.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr()))) };
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut buf = [0.0f32; 8];
            buf[..tail.len()].copy_from_slice(tail);
            // SAFETY: buf has 8 elements.
            unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), exp8(_mm256_loadu_ps(buf.as_ptr()))) };
            tail.copy_from_slice(&buf[..tail.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32.
    fn ulps(a: f32, b: f32) -> u32 {
        let key = |x: f32| {
            let b = x.to_bits() as i32;
            if b < 0 { i32::MIN - b } else { b }
        };
        (key(a) as i64 - key(b) as i64).unsigned_abs() as u32
    }

    /// Every kernel this machine can run, plus the portable one.
    type Kernel = (&'static str, Option<fn(&mut [f32])>);

    fn kernels() -> [Kernel; 3] {
        #[allow(unused_mut)]
        let mut k: [Kernel; 3] = [
            (
                "portable",
                Some(|xs| xs.iter_mut().for_each(|x| *x = exp_scalar(*x))),
            ),
            ("avx2", None),
            ("avx512", None),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            use crate::cpu::{Level, level};
            if level() >= Level::Avx2Fma {
                // SAFETY: the CPU supports AVX2 and FMA.
                k[1].1 = Some(|xs| unsafe { x86::exp_avx2(xs) });
            }
            if level() >= Level::Avx512 {
                // SAFETY: the CPU supports AVX-512F.
                k[2].1 = Some(|xs| unsafe { x86::exp_avx512(xs) });
            }
        }
        k
    }

    #[test]
    fn max_one_ulp_against_libm_over_the_whole_range() {
        // Every 97th f32 in [EXP_MIN, EXP_MAX] (≈ 1.1e7 points incl. dense
        // coverage near 0), compared with libm expf.
        let mut xs = [0.0f32; 4096];
        for (name, kernel) in kernels().into_iter().filter_map(|(n, k)| Some((n, k?))) {
            let mut worst = 0u32;
            // Walk +0 .. EXP_MAX and −0 .. EXP_MIN in steps of 97 bit patterns.
            for sign in [1.0f32, -1.0] {
                let limit = if sign > 0.0 { EXP_MAX_F32 } else { EXP_MIN_F32 };
                let mut bits_pos = 0u32;
                loop {
                    let mut k = 0;
                    while k < xs.len() {
                        let x = sign * f32::from_bits(bits_pos);
                        if x.abs() > limit.abs() {
                            break;
                        }
                        xs[k] = x;
                        k += 1;
                        bits_pos += 97;
                    }
                    let mut ys = xs;
                    kernel(&mut ys[..k]);
                    for (&x, &y) in xs[..k].iter().zip(&ys[..k]) {
                        let e = libm::expf(x);
                        let u = ulps(y, e);
                        assert!(u <= 1, "{name}: exp({x}) = {y}, libm {e}, {u} ulp");
                        worst = worst.max(u);
                    }
                    if k < xs.len() {
                        break;
                    }
                }
            }
            assert!(worst <= 1, "{name}: {worst} ulp");
        }
    }

    #[test]
    fn edges_zero_clamp_nan_and_tail_independence() {
        for (name, kernel) in kernels().into_iter().filter_map(|(n, k)| Some((n, k?))) {
            let mut v = [
                -1000.0f32,
                -87.4,
                f32::NEG_INFINITY,
                0.0,
                100.0,
                f32::INFINITY,
                f32::NAN,
            ];
            kernel(&mut v);
            assert_eq!(&v[..3], &[0.0, 0.0, 0.0], "{name}");
            assert_eq!(v[3], 1.0, "{name}");
            assert!(v[4].is_finite() && v[4] > 2.0e38, "{name}");
            assert!(v[5].is_finite() && v[5] > 2.0e38, "{name}");
            assert!(v[6].is_nan(), "{name}");
            // Same value whatever its position (vector body or tail).
            let mut long = [0.3f32; 37];
            kernel(&mut long);
            assert!(long.iter().all(|&y| y == long[0]), "{name}");
        }
    }

    #[test]
    fn generic_entry_points() {
        let mut a = [0.5f64, -2.0];
        exp_in_place(&mut a);
        assert_eq!(a, [libm::exp(0.5), libm::exp(-2.0)]);
        let xs: [f32; 300] = core::array::from_fn(|k| (k as f32) * 0.37 - 60.0);
        let lse = log_sum_exp(&xs);
        let reference = {
            let m = xs.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            m + xs.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()
        };
        assert!((lse as f64 - reference).abs() < 1e-5 * reference.abs());
        assert_eq!(log_sum_exp::<f32>(&[]), f32::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY; 3]), f64::NEG_INFINITY);
    }
}
