//! Seeded randomness: every random number of the library comes from a
//! xoshiro256++ generator (`rand_xoshiro`) derived from one user `u64` seed.
//!
//! A stream is named by `(seed, family, index)`: the base generator is
//! `Xoshiro256PlusPlus::seed_from_u64(seed)` (SplitMix64 expansion), moved
//! `family` long jumps (2^192 steps each) and then `index` jumps (2^128 steps
//! each). Streams never overlap in practice, and a stream's numbers do not
//! depend on which other streams were drawn, on batching, on thread count or
//! on the build (`no_std` or `std`): uniforms are exact bit manipulations and
//! Gaussians use the pure-Rust `libm`, so the same seed gives the same bits
//! on every platform.

use crate::float::Float;
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// What a stream is used for; each family has its own 2^192-step region, so
/// e.g. trajectory 7 never shares numbers with minibatch 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Family {
    /// Parameter initialisation.
    Init = 1,
    /// Minibatch sampling (one stream per epoch/step).
    Minibatch = 2,
    /// Simulated trajectories (one stream per trajectory).
    Trajectory = 3,
    /// Random projections (sliced Wasserstein) and similar diagnostics.
    Projection = 4,
    /// Clustering restarts (k-means++ seeding).
    Cluster = 5,
    /// Synthetic data generators (built-in datasets, tests).
    Data = 6,
}

/// One random stream. Cheap to clone; cloning duplicates the sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    inner: Xoshiro256PlusPlus,
}

impl Rng {
    /// Stream `index` of `family` under `seed` (see the module docs).
    pub fn stream(seed: u64, family: Family, index: u64) -> Self {
        let mut inner = Xoshiro256PlusPlus::seed_from_u64(seed);
        inner.jump_ce(family as u64, 192);
        if index > 0 {
            inner.jump_ce(index, 128);
        }
        Rng { inner }
    }

    /// Turns stream `(seed, family, i)`, before any draw, into stream
    /// `(seed, family, i + 1)`: one ordinary jump, about a microsecond,
    /// where [`Rng::stream`] costs about a millisecond (its polynomial jumps).
    /// Use it to walk runs of consecutive indices from one `stream` call.
    pub fn jump_to_next_index(&mut self) {
        self.inner.jump();
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1] with 53 random bits (safe to take the log of).
    #[inline]
    pub fn uniform_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's method).
    /// `n = 0` returns 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A pair of independent standard normals (Box–Muller, in f64).
    #[inline]
    pub fn normal_pair(&mut self) -> (f64, f64) {
        let radius = libm::sqrt(-2.0 * libm::log(self.uniform_open0()));
        let angle = core::f64::consts::TAU * self.uniform();
        let (s, c) = libm::sincos(angle);
        (radius * c, radius * s)
    }

    /// One standard normal (the pair's second value is discarded, so each
    /// call consumes exactly two 64-bit draws).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        self.normal_pair().0
    }

    /// Fills `out` with independent standard normals, two per Box–Muller
    /// pair in order; an odd tail uses one more pair's first value.
    pub fn fill_normal<F: Float>(&mut self, out: &mut [F]) {
        let mut chunks = out.chunks_exact_mut(2);
        for pair in &mut chunks {
            let (a, b) = self.normal_pair();
            pair[0] = F::from_f64(a);
            pair[1] = F::from_f64(b);
        }
        if let [last] = chunks.into_remainder() {
            *last = F::from_f64(self.normal());
        }
    }

    /// Fisher–Yates shuffle of `items`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let mut s1 = Rng::stream(42, Family::Trajectory, 3);
        let mut s2 = Rng::stream(42, Family::Trajectory, 3);
        let mut s3 = Rng::stream(42, Family::Trajectory, 4);
        let mut s4 = Rng::stream(42, Family::Minibatch, 3);
        let x1: [u64; 4] = core::array::from_fn(|_| s1.next_u64());
        let x2: [u64; 4] = core::array::from_fn(|_| s2.next_u64());
        let x3: [u64; 4] = core::array::from_fn(|_| s3.next_u64());
        let x4: [u64; 4] = core::array::from_fn(|_| s4.next_u64());
        assert_eq!(x1, x2);
        assert_ne!(x1, x3);
        assert_ne!(x1, x4);
    }

    #[test]
    fn stream_index_is_jump_count() {
        // Stream 2 is the base moved by two ordinary jumps.
        let mut base = Xoshiro256PlusPlus::seed_from_u64(9);
        base.jump_ce(Family::Data as u64, 192);
        base.jump();
        base.jump();
        let mut s = Rng::stream(9, Family::Data, 2);
        for _ in 0..8 {
            assert_eq!(s.next_u64(), base.next_u64());
        }
    }

    #[test]
    fn next_index_is_the_next_stream() {
        let mut walker = Rng::stream(4, Family::Trajectory, 9);
        walker.jump_to_next_index();
        walker.jump_to_next_index();
        let mut direct = Rng::stream(4, Family::Trajectory, 11);
        for _ in 0..4 {
            assert_eq!(walker.next_u64(), direct.next_u64());
        }
    }

    #[test]
    fn family_is_long_jump_count() {
        let mut s = Rng::stream(0, Family::Init, 0);
        let got: [u64; 2] = [s.next_u64(), s.next_u64()];
        let mut reference = Xoshiro256PlusPlus::seed_from_u64(0);
        reference.long_jump();
        assert_eq!(got, [reference.next_u64(), reference.next_u64()]);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut s = Rng::stream(1, Family::Data, 0);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[s.below(7) as usize] += 1;
        }
        // Each count ~ Binomial(70000, 1/7): sd ≈ 92; 6 sd band.
        for c in counts {
            assert!((c as i64 - 10_000).abs() < 560, "{counts:?}");
        }
    }

    #[test]
    fn normal_moments_match_standard_normal() {
        let mut s = Rng::stream(5, Family::Data, 1);
        let n = 200_000;
        let mut buf = [0.0f64; 1000];
        let (mut m1, mut m2, mut m4) = (0.0, 0.0, 0.0);
        for _ in 0..n / 1000 {
            s.fill_normal(&mut buf);
            for &x in buf.iter() {
                m1 += x;
                m2 += x * x;
                m4 += x * x * x * x;
            }
        }
        let nf = n as f64;
        let (m1, m2, m4) = (m1 / nf, m2 / nf, m4 / nf);
        // Standard errors: mean 1/sqrt(n) = 0.0022, var sqrt(2/n) = 0.0032,
        // fourth moment sqrt(96/n) = 0.022; 5-sigma bands.
        assert!(m1.abs() < 0.011, "{m1}");
        assert!((m2 - 1.0).abs() < 0.016, "{m2}");
        assert!((m4 - 3.0).abs() < 0.11, "{m4}");
    }
}
