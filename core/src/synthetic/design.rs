//! How a snapshot dataset is observed ([`SnapshotDesign`]) and the sampler
//! that observes any SDE that way ([`snapshots`]): Euler–Maruyama paths at
//! a fine step, recorded at the bin times, some embryos tracked through
//! every bin and the rest seen once.

use crate::dynamics::Dynamics;
use crate::error::{Arena, Error, Result, check_finite, check_len, checked_mul};
use crate::float::Float;
use crate::integrate::rollout::{
    MAX_BLOCK_ROWS, Method, RolloutConfig, Start, rollout, rollout_workspace_len,
};
use crate::integrate::sde::SdeConfig;
use crate::minibatch::UNTRACKED;
use crate::rng::{Family, Rng};
use crate::size::Size;

/// How a snapshot dataset is observed: at the increasing times `bins`
/// (the first is the start), `per_bin` embryos per bin, of which `tracked`
/// are the same embryos in every bin (track ids `0..tracked`) and the rest
/// are fresh untracked embryos seen once.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotDesign<'a, F> {
    pub bins: &'a [F],
    pub per_bin: usize,
    pub tracked: usize,
    /// Seed of the initial states (`Family::Data`, one stream per embryo)
    /// and of the noise (`Family::Trajectory`, one stream per embryo).
    pub seed: u64,
    /// Largest Euler–Maruyama substep of the simulation (time units).
    pub h_max: F,
}

impl<F: Float> SnapshotDesign<'_, F> {
    /// Embryos simulated: the tracked ones and every bin's untracked ones.
    pub fn embryos(&self) -> usize {
        self.tracked + self.bins.len() * (self.per_bin - self.tracked.min(self.per_bin))
    }

    /// Observations written: `bins.len() × per_bin`.
    pub fn observations(&self) -> usize {
        self.bins.len() * self.per_bin
    }

    fn check(&self) -> Result<()> {
        if self.bins.len() < 2 {
            return Err(Error::bad_config(
                "bins",
                "needs at least two observation times",
            ));
        }
        check_finite(self.bins, "bins")?;
        if self.bins.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::bad_config("bins", "times must increase"));
        }
        if self.per_bin == 0 || self.tracked > self.per_bin {
            return Err(Error::bad_config(
                "tracked",
                "need 1 ≤ per_bin and tracked ≤ per_bin",
            ));
        }
        Ok(())
    }

    fn rollout_config(&self) -> RolloutConfig<F> {
        RolloutConfig {
            method: Method::EulerMaruyama(SdeConfig {
                h_max: self.h_max,
                trace_clip: None,
            }),
            seed: self.seed,
            block_rows: MAX_BLOCK_ROWS,
        }
    }
}

/// Workspace elements [`snapshots`] (and
/// [`GroundTruth::snapshots`](super::GroundTruth::snapshots)) need for
/// `dynamics` with `workers` rollout workers.
pub fn snapshots_workspace_len<F: Float, S: Dynamics<F>>(
    dynamics: &S,
    design: &SnapshotDesign<'_, F>,
    workers: usize,
) -> usize {
    let (e, k, d) = (design.embryos(), design.bins.len(), dynamics.dim());
    (Size(e) * d
        + Size(e) * k.saturating_sub(1) * d
        + e
        + rollout_workspace_len(dynamics, &design.rollout_config(), workers))
    .get()
}

/// Samples a snapshot dataset of any SDE (see [`SnapshotDesign`]) by
/// Euler–Maruyama rollouts: `initial(embryo, rng, z)` writes embryo
/// `embryo`'s state at `bins[0]` into `z` (length d), drawing from its own
/// stream `Rng::stream(seed, Family::Data, embryo)`. Writes observations `z`
/// (`obs × d`), times `t` and track ids `track` ([`UNTRACKED`] for
/// untracked), bin by bin, each bin's tracked embryos first. The workspace
/// is at least [`snapshots_workspace_len`] long (its size sets the worker
/// count).
pub fn snapshots<F: Float, S: Dynamics<F> + Sync>(
    dynamics: &S,
    mut initial: impl FnMut(usize, &mut Rng, &mut [F]),
    design: &SnapshotDesign<'_, F>,
    z: &mut [F],
    t: &mut [F],
    track: &mut [u32],
    workspace: &mut [F],
) -> Result<()> {
    design.check()?;
    let (d, k) = (dynamics.dim(), design.bins.len());
    let (e, obs) = (design.embryos(), design.observations());
    check_len(z, checked_mul(obs, d, "z")?, "z")?;
    check_len(t, obs, "t")?;
    check_len(track, obs, "track")?;
    let mut arena = Arena::new(workspace);
    let start = arena.take(e * d)?;
    let paths = arena.take(e * (k - 1) * d)?;
    let stops = arena.take(e)?;
    let rollout_ws = arena.rest();
    for (i, row) in start.chunks_exact_mut(d).enumerate() {
        initial(
            i,
            &mut Rng::stream(design.seed, Family::Data, i as u64),
            row,
        );
    }
    rollout(
        dynamics,
        Start::Cloud(start),
        design.bins[0],
        &design.bins[1..],
        &design.rollout_config(),
        paths,
        stops,
        rollout_ws,
    )?;
    let fresh = design.per_bin - design.tracked;
    let mut row = 0;
    for (b, &tb) in design.bins.iter().enumerate() {
        let untracked = design.tracked + b * fresh..design.tracked + (b + 1) * fresh;
        for embryo in (0..design.tracked).chain(untracked) {
            let state = match b {
                0 => &start[embryo * d..(embryo + 1) * d],
                _ => &paths[((embryo * (k - 1)) + b - 1) * d..][..d],
            };
            z[row * d..(row + 1) * d].copy_from_slice(state);
            t[row] = tb;
            track[row] = if embryo < design.tracked {
                embryo as u32
            } else {
                UNTRACKED
            };
            row += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{EMBRYO_THRESHOLD, EmbryoProcess, GroundTruth};
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn snapshots_follow_the_design_and_the_known_mean_motion() {
        let p = EmbryoProcess { d: 3 };
        let bins = [0.0, 0.4, 0.8, 1.2];
        let design = SnapshotDesign {
            bins: &bins,
            per_bin: 400,
            tracked: 100,
            seed: 5,
            h_max: 0.02,
        };
        let obs = design.observations();
        let (mut z, mut t, mut track) = (vec![0.0f64; obs * 3], vec![0.0; obs], vec![0; obs]);
        let mut ws = vec![0.0; snapshots_workspace_len(&p, &design, 1)];
        p.snapshots(&design, &mut z, &mut t, &mut track, &mut ws)
            .unwrap();
        for (b, &tb) in bins.iter().enumerate() {
            let rows = b * 400..(b + 1) * 400;
            assert!(t[rows.clone()].iter().all(|&x| x == tb));
            let ids: Vec<u32> = track[rows.clone()].to_vec();
            assert!(ids[..100].iter().enumerate().all(|(i, &id)| id == i as u32));
            assert!(ids[100..].iter().all(|&id| id == UNTRACKED));
            // z₀ moves at unit speed from mean 0: E z₀(t) = t. Its variance
            // is at most 0.01 + t·max D₀₀ (max D₀₀ = (2·0.25)² = 0.25).
            let mean = rows.clone().map(|r| z[r * 3]).sum::<f64>() / 400.0;
            let sd = ((0.01 + 0.25 * tb) / 400.0).sqrt();
            assert!((mean - tb).abs() < 4.0 * sd, "bin {b}: {mean} vs {tb}");
        }
        // 30% start above the threshold.
        let above = (0..400)
            .filter(|&r| z[r * 3 + 1] > EMBRYO_THRESHOLD)
            .count() as f64;
        let sd = (400.0 * 0.3 * 0.7f64).sqrt();
        assert!((above - 120.0).abs() < 4.0 * sd, "{above}");
        // Same seed, same bits, whatever the worker count.
        let (mut z2, mut t2, mut tr2) = (vec![0.0f64; obs * 3], vec![0.0; obs], vec![0; obs]);
        let mut ws2 = vec![0.0; snapshots_workspace_len(&p, &design, 3)];
        p.snapshots(&design, &mut z2, &mut t2, &mut tr2, &mut ws2)
            .unwrap();
        assert_eq!((z, t, track), (z2, t2, tr2));
        // Bad designs are errors.
        let bad = SnapshotDesign {
            tracked: 500,
            ..design
        };
        assert!(
            p.snapshots(&bad, &mut [], &mut [], &mut [], &mut [])
                .is_err()
        );
        let flat = [0.0, 0.0];
        let bad = SnapshotDesign {
            bins: &flat,
            ..design
        };
        assert!(
            p.snapshots(&bad, &mut [], &mut [], &mut [], &mut [])
                .is_err()
        );
    }
}
