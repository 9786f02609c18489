//! The float trait: every numerical routine is written once over [`Float`]
//! and instantiated for `f32` (the shipping type) and `f64` (tests: tight
//! finite-difference checks and agreement with float64 references).
//!
//! All transcendental functions go through the pure-Rust `libm` crate, never
//! the platform's C library, so a given input gives the same bits in the
//! `no_std` and `std` builds on every platform. Hot loops that need many
//! exponentials use the dedicated kernels of the modules that own them,
//! tested against these.

use core::fmt::{Debug, Display};
use core::iter::Sum;
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A real floating-point scalar (`f32` or `f64`).
pub trait Float:
    Copy
    + Default
    + PartialEq
    + PartialOrd
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    const TWO: Self;
    const HALF: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    /// Machine epsilon (distance from 1 to the next representable value).
    const EPSILON: Self;
    /// Smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// Largest finite value.
    const MAX: Self;
    /// Size in bytes (4 or 8), used by model bytes and memory reports.
    const BYTES: usize;

    /// Nearest representable value (round to nearest, ties to even).
    fn from_f64(x: f64) -> Self;
    /// Exact widening (f32) or identity (f64).
    fn to_f64(self) -> f64;
    /// `n` as a float (rounded for huge `n`).
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }

    fn exp(self) -> Self;
    /// Natural logarithm; `ln(0) = -inf`, negative input gives NaN.
    fn ln(self) -> Self;
    /// `ln(1 + x)`, accurate for small `x`.
    fn ln_1p(self) -> Self;
    /// `exp(x) − 1`, accurate for small `x`.
    fn exp_m1(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tanh(self) -> Self;
    fn powi(self, n: i32) -> Self;
    fn is_finite(self) -> bool;
    fn is_nan(self) -> bool;
    /// Correctly rounded `self * a + b` (software in `libm` unless the target
    /// has FMA; do not use it in hot loops).
    fn fma(self, a: Self, b: Self) -> Self;

    /// IEEE maxNum: the larger value, ignoring a NaN operand.
    fn max(self, other: Self) -> Self;
    /// IEEE minNum: the smaller value, ignoring a NaN operand.
    fn min(self, other: Self) -> Self;

    /// `ln(1 + e^x)` without overflow (softplus).
    fn softplus(self) -> Self {
        // For large x, ln(1+e^x) = x + ln(1+e^-x).
        if self > Self::ZERO {
            self + (-self).exp().ln_1p()
        } else {
            self.exp().ln_1p()
        }
    }

    /// Logistic function `1 / (1 + e^−x)` (derivative of softplus), stable for
    /// both signs.
    fn sigmoid(self) -> Self {
        if self >= Self::ZERO {
            Self::ONE / (Self::ONE + (-self).exp())
        } else {
            let e = self.exp();
            e / (Self::ONE + e)
        }
    }
}

macro_rules! impl_float {
    ($t:ty, $bytes:expr, $exp:path, $ln:path, $ln1p:path, $expm1:path, $sqrt:path,
     $fabs:path, $sin:path, $cos:path, $tanh:path, $pow:path, $fma:path,
     $fmax:path, $fmin:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const TWO: Self = 2.0;
            const HALF: Self = 0.5;
            const INFINITY: Self = <$t>::INFINITY;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const EPSILON: Self = <$t>::EPSILON;
            const MIN_POSITIVE: Self = <$t>::MIN_POSITIVE;
            const MAX: Self = <$t>::MAX;
            const BYTES: usize = $bytes;

            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                $ln1p(self)
            }
            #[inline(always)]
            fn exp_m1(self) -> Self {
                $expm1(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $fabs(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                $sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                $cos(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn powi(self, n: i32) -> Self {
                $pow(self, n as $t)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn fma(self, a: Self, b: Self) -> Self {
                $fma(self, a, b)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                $fmax(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                $fmin(self, other)
            }
        }
    };
}

impl_float!(
    f32,
    4,
    libm::expf,
    libm::logf,
    libm::log1pf,
    libm::expm1f,
    libm::sqrtf,
    libm::fabsf,
    libm::sinf,
    libm::cosf,
    libm::tanhf,
    libm::powf,
    libm::fmaf,
    libm::fmaxf,
    libm::fminf
);
impl_float!(
    f64,
    8,
    libm::exp,
    libm::log,
    libm::log1p,
    libm::expm1,
    libm::sqrt,
    libm::fabs,
    libm::sin,
    libm::cos,
    libm::tanh,
    libm::pow,
    libm::fma,
    libm::fmax,
    libm::fmin
);

#[cfg(test)]
mod tests {
    use super::Float;

    #[test]
    fn softplus_and_sigmoid_are_stable_at_extremes() {
        assert_eq!(Float::softplus(100.0f32), 100.0);
        assert!(Float::softplus(-100.0f32) > 0.0);
        assert!((Float::softplus(0.0f64) - core::f64::consts::LN_2).abs() < 1e-15);
        assert_eq!(Float::sigmoid(-1000.0f64), 0.0);
        assert_eq!(Float::sigmoid(1000.0f64), 1.0);
        // softplus'(x) = sigmoid(x), checked by central differences.
        for &x in &[-3.0f64, -0.5, 0.0, 0.7, 4.0] {
            let h = 1e-6;
            let fd = (Float::softplus(x + h) - Float::softplus(x - h)) / (2.0 * h);
            assert!((fd - Float::sigmoid(x)).abs() < 1e-9);
        }
    }
}
