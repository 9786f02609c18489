#!/usr/bin/env python3
"""POT vs morphosde on the same unbalanced OT inputs, in one run, as ratios.

Inputs as in benches/uot.rs: X ~ N(0, I_16), Y = X + 0.5 + 0.4 N(0, I),
uniform weights, eps = 0.1 x median squared distance, rho = 1 (reg_type='kl').
Per-iteration time: POT sinkhorn_unbalanced, 200 fixed iterations
(stopThr=0), float64 and float32; morphosde: `cargo bench --bench uot`'s
dense/online 20-iteration figures divided by 20 (read from criterion's
estimates in target/criterion). Run `benches/compare/run.sh`.
Creates its own venv (/tmp/msde-venv-uot-bench).
"""
import json
import os
import subprocess
import sys
import time

VENV = "/tmp/msde-venv-uot-bench"
if sys.prefix != VENV:
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", "numpy", "pot==0.9.*"])
    os.execv(os.path.join(VENV, "bin", "python"), [os.path.join(VENV, "bin", "python")] + sys.argv)

import numpy as np  # noqa: E402
import ot  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pot_per_iter(n, dtype, iters=200):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 16))
    y = x + 0.5 + 0.4 * rng.normal(size=(n, 16))
    M = ot.dist(x, y).astype(dtype)
    a = np.full(n, 1.0 / n, dtype=dtype)
    eps = 0.1 * float(np.median(M))
    best = []
    for _ in range(3):
        t = time.perf_counter()
        ot.unbalanced.sinkhorn_unbalanced(a, a, M, eps, 1.0, reg_type="kl",
                                          numItermax=iters, stopThr=0.0)
        best.append((time.perf_counter() - t) / iters)
    return float(np.median(best))


def ours(name):
    path = os.path.join(ROOT, "target", "criterion", "uot", name, "new", "estimates.json")
    with open(path) as fh:
        return json.load(fh)["median"]["point_estimate"] * 1e-9 / 20


def main():
    sizes = [int(s) for s in os.environ.get("MSDE_UOT_SIZES", "1024").split(",")]
    print(f"load average: {os.getloadavg()}")
    for n in sizes:
        p64, p32 = pot_per_iter(n, np.float64), pot_per_iter(n, np.float32)
        print(f"n=m={n}: POT per iteration f64 {p64*1e3:.3f} ms, f32 {p32*1e3:.3f} ms")
        for mode in ("Dense", "Online"):
            for thr in (1, 2):
                name = f"{mode}_n{n}_{thr}thr_20iter"
                try:
                    t = ours(name)
                except OSError:
                    continue
                print(f"  morphosde {mode} {thr} thread(s): {t*1e3:.3f} ms/iter "
                      f"(incl. setup and output pass), POT f32 / ours = {p32 / t:.2f}")


if __name__ == "__main__":
    main()
