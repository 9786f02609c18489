#!/usr/bin/env python3
"""One training step of the model, morphosde (Rust, f32) against the same
model and step in PyTorch (CPU, eager, float32), both single-threaded,
measured side by side in one run; prints µs per step, GEMM GFLOP/s, % of
the one-core FMA peak and the ratio torch / morphosde.

    python3 benches/compare/train_step_torch.py [--rounds 3]

Creates its own venv at /tmp/msde-venv-model (torch, numpy) on first use.
The step: d = 16, 8 time features, encoder 3x128 (SiLU), drift head, and
for "full_rank" the full-rank Cholesky diffusion head with pairwise targets
(one-step residual against the detached drift, k = 8 nearest sources,
shrinkage 0.1, +1e-6 I), loss mean ||L L^T - D||_F^2 with lambda = 0.1;
mass-weighted drift MSE; global-norm clipping at 10; Adam (lr 1e-3).
Rust side: `MSDE_BENCH_PLAIN=1 cargo bench --bench train_step` (median of
15 timed blocks per case). The peak is PERF.md's one-core 512-bit f32 FMA
figure (170 GFLOP/s).
"""
import os
import subprocess
import sys

VENV = "/tmp/msde-venv-model"
if sys.prefix != VENV:
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", "torch", "numpy"])
    os.execv(os.path.join(VENV, "bin", "python"), [os.path.join(VENV, "bin", "python"), __file__] + sys.argv[1:])

import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEAK = 170.0
D, TF, WIDTH, DEPTH, K = 16, 8, 128, 3, 8


def gemm_flops(n, diffusion):
    n_in = D + TF
    p = D * (D + 1) // 2 if diffusion else 0
    s = n_in * WIDTH + (DEPTH - 1) * WIDTH * WIDTH + WIDTH * (D + p)
    return 2 * n * (3 * s - n_in * WIDTH)


class Step:
    def __init__(self, n, diffusion):
        g = torch.Generator().manual_seed(1)
        self.n, self.diffusion = n, diffusion
        sizes = [D + TF] + [WIDTH] * DEPTH
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.params += [torch.randn(a, b, generator=g) / a**0.5, torch.zeros(b)]
        self.params += [torch.randn(WIDTH, D, generator=g) / WIDTH**0.5, torch.zeros(D)]
        if diffusion:
            p = D * (D + 1) // 2
            self.params += [0.1 * torch.randn(WIDTH, p, generator=g) / WIDTH**0.5, torch.zeros(p)]
        for q in self.params:
            q.requires_grad_(True)
        self.opt = torch.optim.Adam(self.params, lr=1e-3)
        data = torch.randn(3, n, D, generator=g)
        self.x, self.v, self.y = data[0], data[1], data[2]
        self.t = torch.full((n,), 0.5)
        self.h = 0.2
        self.w = torch.ones(n)
        self.rows, self.cols = torch.tril_indices(D, D)
        self.diag = torch.arange(D)

    def __call__(self):
        x, t = self.x, self.t
        feats = [x]
        for k in range(TF // 2):
            feats += [torch.sin((2.0**k) * t)[:, None], torch.cos((2.0**k) * t)[:, None]]
        a = torch.cat(feats, dim=1)
        ps = self.params
        for layer in range(DEPTH):
            a = torch.nn.functional.silu(a @ ps[2 * layer] + ps[2 * layer + 1])
        f = a @ ps[2 * DEPTH] + ps[2 * DEPTH + 1]
        loss = (self.w * ((f - self.v) ** 2).sum(1)).sum() / self.w.sum()
        if self.diffusion:
            raw = a @ ps[2 * DEPTH + 2] + ps[2 * DEPTH + 3]
            L = torch.zeros(self.n, D, D)
            L[:, self.rows, self.cols] = raw
            L[:, self.diag, self.diag] = torch.nn.functional.softplus(L[:, self.diag, self.diag]) + 1e-6
            with torch.no_grad():
                r = self.y - (x + f * self.h)
                idx = torch.topk(torch.cdist(x, x) ** 2, K, largest=False).indices
                R = r[idx]
                dh = torch.einsum("nkd,nke->nde", R, R) / (K * self.h)
                tr = dh.diagonal(dim1=1, dim2=2).sum(1) / D
                dh = 0.9 * dh + (0.1 * tr + 1e-6)[:, None, None] * torch.eye(D)
            loss = loss + 0.1 * ((L @ L.transpose(1, 2) - dh) ** 2).sum((1, 2)).mean()
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 10.0)
        self.opt.step()


def torch_time(name, n):
    step = Step(n, name == "full_rank")
    reps = 200 if n == 32 else 40
    for _ in range(10):
        step()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        for _ in range(reps):
            step()
        times.append((time.perf_counter() - start) / reps)
    return statistics.median(times) * 1e6


def rust_times():
    env = dict(os.environ, MSDE_BENCH_PLAIN="1")
    out = subprocess.run(
        ["cargo", "bench", "-q", "--bench", "train_step"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout
    res = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("drift_only", "full_rank"):
            res[(parts[0], int(parts[1]))] = float(parts[2])
    return res


def main():
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    cases = [(name, n) for name in ("drift_only", "full_rank") for n in (32, 256)]
    ours = {c: [] for c in cases}
    theirs = {c: [] for c in cases}
    for _ in range(rounds):
        for c, us in rust_times().items():
            ours[c].append(us)
        for c in cases:
            theirs[c].append(torch_time(*c))
    print(f"torch {torch.__version__}, 1 thread each; load average {os.getloadavg()[0]:.2f}; medians of {rounds} rounds")
    print(f"{'case':<12}{'batch':>6}{'morphosde µs':>14}{'torch µs':>11}{'torch/ours':>12}{'GFLOP/s':>9}{'% peak':>8}")
    for name, n in cases:
        a, b = statistics.median(ours[(name, n)]), statistics.median(theirs[(name, n)])
        gf = gemm_flops(n, name == "full_rank") / (a * 1e-6) / 1e9
        print(f"{name:<12}{n:>6}{a:>14.1f}{b:>11.1f}{b / a:>12.2f}{gf:>9.1f}{100 * gf / PEAK:>7.1f}%")


if __name__ == "__main__":
    main()
