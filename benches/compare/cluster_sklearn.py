#!/usr/bin/env python3
"""Side-by-side speed of `morphosde cluster` and scikit-learn's spectral
clustering on the same data and the same affinity, in one run.

Data: the bench's recipe (benches/cluster.rs): 8 Gaussian groups in 8-D
(centre 4·e_g, drift 0.3 per time unit along e_{g+1}, unit noise), times
0..4; written to a CSV that both sides read.

  dense, n = 2,000:   W from the formula (σ_z = 2, σ_t = 2),
                      SpectralClustering(affinity='precomputed', n_init=10,
                      arpack).
  kNN,   n = 50,000:  15 nearest neighbours in z (sklearn's
                      kneighbors_graph), W = the formula's weights on the
                      union graph plus the diagonal, same SpectralClustering.

Timed: morphosde's clustering call (the CLI's "seconds", CSV I/O excluded)
vs. sklearn's affinity construction + fit, medians of --repeats runs,
alternating. Peak memory: morphosde's workspace and the child's max RSS;
sklearn's process max RSS.

Run: python3 benches/compare/cluster_sklearn.py [--repeats 3]
(builds the release binary; creates its own venv /tmp/msde-venv-cluster-bench).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

VENV = "/tmp/msde-venv-cluster-bench"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if sys.prefix != VENV:
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q",
                               "numpy", "scipy", "scikit-learn"])
    os.execv(os.path.join(VENV, "bin", "python"), [os.path.join(VENV, "bin", "python")] + sys.argv)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import sklearn  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402
from sklearn.cluster import SpectralClustering  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from sklearn.neighbors import kneighbors_graph  # noqa: E402

D, GROUPS, SIGMA_Z, SIGMA_T = 8, 8, 2.0, 2.0


def data(n, seed=1):
    rng = np.random.default_rng(seed)
    g = np.arange(n) % GROUPS
    t = (5 * np.arange(n) // n).astype(np.float64)
    z = rng.standard_normal((n, D))
    z[np.arange(n), g] += 4.0
    z[np.arange(n), (g + 1) % D] += 0.3 * t
    return z.astype(np.float32), t.astype(np.float32), g


def morphosde(binary, csv, out, knn):
    args = [binary, "cluster", "--data", csv, "--time-column", "t", "--k", str(GROUPS),
            "--sigma-z", str(SIGMA_Z), "--sigma-t", str(SIGMA_T), "--out", out]
    if knn:
        args += ["--knn", str(knn)]
    res = subprocess.run(args, check=True, capture_output=True, text=True)
    summary = json.loads(res.stdout)
    labels = np.loadtxt(out, delimiter=",", skiprows=1, usecols=2).astype(int)
    return summary, labels


def sklearn_dense(z, t, sigma_z):
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    w = np.exp(-cdist(z64, z64, "sqeuclidean") / (2 * sigma_z ** 2)
               - (t64[:, None] - t64[None, :]) ** 2 / (2 * SIGMA_T ** 2))
    return SpectralClustering(n_clusters=GROUPS, affinity="precomputed", n_init=10,
                              random_state=0).fit(w).labels_


def sklearn_knn(z, t, sigma_z, knn):
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    g = kneighbors_graph(z64, knn, mode="distance", include_self=False).tocoo()
    dt = t64[g.row] - t64[g.col]
    g.data = np.exp(-g.data ** 2 / (2 * sigma_z ** 2) - dt ** 2 / (2 * SIGMA_T ** 2))
    g = g.tocsr()
    w = g.maximum(g.T) + sp.identity(len(t), format="csr")
    return SpectralClustering(n_clusters=GROUPS, affinity="precomputed", n_init=10,
                              random_state=0).fit(w).labels_


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "morphosde"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "morphosde")
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, n, knn in [("dense", 2000, None), ("kNN-15", 50_000, 15)]:
            z, t, truth = data(n)
            csv, out = os.path.join(tmp, f"{name}.csv"), os.path.join(tmp, "labels.csv")
            with open(csv, "w") as f:
                f.write("t," + ",".join(f"z{c}" for c in range(D)) + "\n")
                for i in range(n):
                    f.write(repr(float(t[i])) + "," + ",".join(repr(float(x)) for x in z[i]) + "\n")
            ours_s, skl_s = [], []
            for _ in range(args.repeats):
                summary, ours = morphosde(binary, csv, out, knn)
                ours_s.append(summary["seconds"])
                start = time.perf_counter()
                theirs = (sklearn_knn(z, t, summary["sigma_z"], knn) if knn
                          else sklearn_dense(z, t, summary["sigma_z"]))
                skl_s.append(time.perf_counter() - start)
            child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            a, b = np.median(ours_s), np.median(skl_s)
            print(f"{name:7s} n={n:6d}: morphosde {a:.3f} s, scikit-learn {b:.3f} s, "
                  f"ratio sklearn/morphosde {b / a:.1f}x | ARI vs truth: morphosde "
                  f"{adjusted_rand_score(truth, ours):.3f}, sklearn {adjusted_rand_score(truth, theirs):.3f}, "
                  f"between {adjusted_rand_score(ours, theirs):.3f}")
            print(f"        memory: morphosde workspace {summary['workspace_bytes'] / 2**20:.1f} MiB, "
                  f"CLI max RSS so far {child_rss:.0f} MiB; python max RSS so far {self_rss:.0f} MiB")


main()
