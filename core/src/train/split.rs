//! Which observations the training loop holds out for validation.
//!
//! Embryos are held out whole (a tracked embryo's rows all go the same
//! way), each with probability `fraction`, decided by its own uniform draw
//! `u` from stream `(seed, Data, track id)` (an untracked row's: `(seed,
//! Data, 2³² + row)`). Then every time bin (distinct time value) is topped
//! up to at least `min(min_per_bin, ⌊rows of the bin / 4⌋)` held-out rows:
//! first with the bin's untracked rows of lowest `u`, then, when those run
//! out, with the tracked embryos of lowest `u` that have a row in the bin
//! (all their rows). So a small bin is never left without validation rows,
//! and a bin never loses more than a quarter of its rows to the top-up.
//!
//! Cost: `O(n·B)` for `n` rows in `B` bins (no allocation; the top-up keeps
//! at most [`MAX_MIN_PER_BIN`] candidates on the stack).

use crate::float::Float;
use crate::minibatch::{UNTRACKED, next_time};
use crate::rng::{Family, Rng};

/// Largest `min_per_bin` the split supports.
pub const MAX_MIN_PER_BIN: usize = 64;

/// The uniform draw that decides whether observation `row` is held out.
fn draw(seed: u64, track: u32, row: usize) -> f64 {
    let key = if track == UNTRACKED {
        (1u64 << 32) + row as u64
    } else {
        u64::from(track)
    };
    Rng::stream(seed, Family::Data, key).uniform()
}

/// Keeps the `want` smallest `(u, key)` pairs offered, sorted by `u`.
struct Lowest {
    items: [(f64, u32); MAX_MIN_PER_BIN],
    len: usize,
    want: usize,
}

impl Lowest {
    fn new(want: usize) -> Self {
        Lowest {
            items: [(0.0, 0); MAX_MIN_PER_BIN],
            len: 0,
            want: want.min(MAX_MIN_PER_BIN),
        }
    }

    fn offer(&mut self, u: f64, key: u32) {
        if self.items[..self.len].iter().any(|&(_, k)| k == key) {
            return;
        }
        if self.len < self.want {
            self.items[self.len] = (u, key);
            self.len += 1;
        } else if let Some(last) = self.items[..self.len].last()
            && u < last.0
        {
            self.items[self.len - 1] = (u, key);
        } else {
            return;
        }
        self.items[..self.len].sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    }

    fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.items[..self.len].iter().map(|&(_, k)| k)
    }
}

/// Writes `held[r] = 1` for the held-out observations and 0 for the others
/// (see the module docs); `fraction = 0` holds out nothing. `t` and `track`
/// have one entry per observation, `held` at least as many;
/// `min_per_bin ≤` [`MAX_MIN_PER_BIN`] (larger values are capped).
pub fn validation_split<F: Float>(
    seed: u64,
    t: &[F],
    track: &[u32],
    fraction: f64,
    min_per_bin: usize,
    held: &mut [u32],
) {
    let n = t.len();
    for (r, h) in held[..n].iter_mut().enumerate() {
        *h = u32::from(fraction > 0.0 && draw(seed, track[r], r) < fraction);
    }
    if fraction <= 0.0 || min_per_bin == 0 {
        return;
    }
    let mut bin = None;
    while let Some(tb) = next_time(t, bin) {
        bin = Some(tb);
        let rows = || (0..n).filter(move |&r| t[r] == tb);
        let size = rows().count();
        let have = rows().filter(|&r| held[r] == 1).count();
        let want = min_per_bin.min(MAX_MIN_PER_BIN).min(size / 4);
        if have >= want {
            continue;
        }
        let mut untracked = Lowest::new(want - have);
        for r in rows().filter(|&r| held[r] == 0 && track[r] == UNTRACKED) {
            untracked.offer(draw(seed, UNTRACKED, r), r as u32);
        }
        let added = untracked.len;
        for r in untracked.keys() {
            held[r as usize] = 1;
        }
        if have + added >= want {
            continue;
        }
        let mut tracked = Lowest::new(want - have - added);
        for r in rows().filter(|&r| held[r] == 0 && track[r] != UNTRACKED) {
            tracked.offer(draw(seed, track[r], r), track[r]);
        }
        for r in 0..n {
            if tracked.keys().any(|k| k == track[r]) {
                held[r] = 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// Bins of 400, 40 and 12 rows; tracks 0..8 seen in every bin.
    fn data() -> (Vec<f32>, Vec<u32>) {
        let mut t = Vec::new();
        let mut track = Vec::new();
        for (tb, size) in [(0.0, 400), (0.5, 40), (1.0, 12)] {
            for i in 0..size {
                t.push(tb);
                track.push(if i < 8 { i as u32 } else { UNTRACKED });
            }
        }
        (t, track)
    }

    fn per_bin(t: &[f32], held: &[u32]) -> [usize; 3] {
        [0.0, 0.5, 1.0].map(|tb| (0..t.len()).filter(|&r| t[r] == tb && held[r] == 1).count())
    }

    #[test]
    fn every_bin_gets_its_minimum_without_losing_more_than_a_quarter() {
        let (t, track) = data();
        let mut held = vec![0; t.len()];
        validation_split(7, &t, &track, 0.05, 8, &mut held);
        let counts = per_bin(&t, &held);
        // The 400-row bin holds ~5% plus the tracked embryos drawn; the
        // 40-row bin at least 8; the 12-row bin its quarter, 3.
        assert!(counts[0] >= 8, "{counts:?}");
        assert!(counts[1] >= 8, "{counts:?}");
        assert!(counts[2] >= 3, "{counts:?}");
        // Tracked embryos stay whole.
        for id in 0..8u32 {
            let rows: Vec<u32> = (0..t.len())
                .filter(|&r| track[r] == id)
                .map(|r| held[r])
                .collect();
            assert!(rows.iter().all(|&h| h == rows[0]), "track {id}: {rows:?}");
        }
        // Without the top-up the small bins would be short.
        let mut plain = vec![0; t.len()];
        validation_split(7, &t, &track, 0.05, 0, &mut plain);
        assert!(per_bin(&t, &plain)[1] < 8 || per_bin(&t, &plain)[2] < 3);
        // The top-up only adds.
        assert!((0..t.len()).all(|r| held[r] >= plain[r]));
    }

    #[test]
    fn bins_of_tracked_rows_only_are_topped_up_with_whole_embryos() {
        let t = [0.0f64, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let track = [0, 1, 2, 3, 0, 1, 2, 3];
        let mut held = [0u32; 8];
        validation_split(3, &t, &track, 1e-9, 8, &mut held);
        // A quarter of 4 rows: one embryo, held out in both bins.
        assert_eq!(held.iter().sum::<u32>(), 2);
        let id = track[held.iter().position(|&h| h == 1).unwrap()];
        assert!((0..8).all(|r| (held[r] == 1) == (track[r] == id)));
    }

    #[test]
    fn no_fraction_holds_out_nothing_and_the_split_is_deterministic() {
        let (t, track) = data();
        let mut held = vec![9; t.len()];
        validation_split(7, &t, &track, 0.0, 8, &mut held);
        assert!(held.iter().all(|&h| h == 0));
        let (mut a, mut b) = (vec![0; t.len()], vec![0; t.len()]);
        validation_split(11, &t, &track, 0.1, 8, &mut a);
        validation_split(11, &t, &track, 0.1, 8, &mut b);
        assert_eq!(a, b);
    }
}
