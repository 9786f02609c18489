"""Train a morphosde model from raw snapshots and sample it, through the C
ABI with the standard library only (ctypes; NumPy is not needed).

The built-in dataset: 96 embryos following the Ornstein-Uhlenbeck process
dz = -z dt + 0.3 dW in 2-D from around (1.5, -1), observed at 4 times 0.25
apart; the first 32 carry track ids, the rest are anonymous snapshots.
The library trains (clustering, minibatches of adjacent time bins,
unbalanced transport with the self-edge bound on tracked embryos, drift
and diffusion losses, early stopping on held-out embryos), then 64
Euler-Maruyama trajectories from (1.5, -1) are compared with the OU mean,
and the learned diffusion's eigenvalues with the truth 0.09.

Run: MORPHOSDE_LIB=target/release/libmorphosde.so python3 examples/python/train_and_sample.py
"""

import math
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import morphosde  # noqa: E402

EMBRYOS, TRACKED, BINS, GAP = 96, 32, 4, 0.25


def snapshots(seed=2024):
    """(z, t, track): embryo e at bin b in row b*EMBRYOS + e."""
    rng = random.Random(seed)
    state = [[1.5 + 0.3 * rng.gauss(0, 1), -1.0 + 0.3 * rng.gauss(0, 1)] for _ in range(EMBRYOS)]
    z, t, track = [], [], []
    for b in range(BINS):
        for e, s in enumerate(state):
            z += s
            t.append(GAP * b)
            track.append(e if e < TRACKED else morphosde.UNTRACKED)
        for s in state:  # Euler-Maruyama to the next bin, 25 substeps.
            for _ in range(25):
                for k in range(2):
                    s[k] += -s[k] * 0.01 + 0.3 * math.sqrt(0.01) * rng.gauss(0, 1)
    return z, t, track


def main():
    lib = morphosde.Library()
    z, t, track = snapshots()
    model = lib.model_new(lib.model_config(
        d=2, time_features=2, depth=1, width=16, learn_diffusion=1, warmup_epochs=2, learning_rate=1e-2,
        k_neighbours=4, seed=1,
    ))
    trainer = model.trainer(n_max=1)  # msde_trainer_fit brings its own workspace
    cfg = lib.fit_config(
        epochs=8, steps_per_epoch=10, batch=32, min_points=8, validation_fraction=0.2, validation_batches=2,
        patience=3, seed=3,
    )
    cfg.cluster.k = 2
    losses, report = trainer.fit(cfg, z, t, track)
    print(f"fit: {report.epochs} epochs (best {report.best_epoch}), {report.clusters} clusters, "
          f"{report.train_rows} train / {report.validation_rows} held-out rows, {report.steps} steps")
    for e in range(report.epochs):
        total, drift, diffusion, valid = losses[e]
        print(f"  epoch {e}: train {total:.4f} (drift {drift:.4f}, diffusion {diffusion:.4f}), validation {valid:.4f}")

    trained = trainer.model()
    sample_cfg = lib.sample_config(morphosde.SAMPLE_EULER_MARUYAMA, seed=7)
    n = 64
    out, stop, _ = trained.sample(sample_cfg, [1.5, -1.0], 0.0, [0.75], n)
    mean = [sum(out[i * 2 + k] for i in range(n)) / n for k in range(2)]
    truth = [1.5 * math.exp(-0.75), -math.exp(-0.75)]
    stopped = sum(1 for s in stop if s != math.inf)
    print(f"sampled {n} trajectories, {stopped} stopped; mean at t=0.75: {mean[0]:.3f} {mean[1]:.3f} "
          f"(OU truth {truth[0]:.3f} {truth[1]:.3f})")
    w, _, _ = trained.diffusion_spectrum([1.0, -0.7], [0.4])
    print(f"diffusion eigenvalues at (1, -0.7): {w[0]:.4f} {w[1]:.4f} (truth 0.09 0.09)")
    return 0 if stopped == 0 and all(math.isfinite(m) for m in mean) else 1


if __name__ == "__main__":
    sys.exit(main())
