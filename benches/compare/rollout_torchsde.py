#!/usr/bin/env python3
"""Side-by-side speed of morphosde's Euler–Maruyama rollouts and torchsde, in
one run.

Case (the issue's): 100 and 10,000 trajectories × 100 steps (h = 0.01 to
t = 1), d = 16, encoder 3 × 128 SiLU with 8 sinusoidal time features,
full-rank diffusion head (lower-triangular L, softplus diagonal), float32,
CPU.

  morphosde:  `MSDE_BENCH_PLAIN=1 cargo bench --bench rollout` (blocks of 64
              rows, 1 and 2 workers on a 2-thread rayon pool); median of 7.
  torchsde:   torchsde.sdeint(method='euler', dt=0.01), noise_type='general',
              the SDE's f_and_g evaluating the network once per step;
              torch.no_grad(); median of 5.
  torch loop: a plain PyTorch Euler–Maruyama loop with the same network;
              median of 5.

torch runs with 1 thread and with 2 threads. Printed: each side's median
seconds, trajectory-steps per second and GFLOP/s (111,104 FLOP per
trajectory-step: forward pass plus L·Z), and the ratios
(torch time / morphosde time) for the issue's targets: n = 100 at one
thread, n = 10,000 at two; plus morphosde's 2-worker speed-up. The load
average is printed before and after: the machine is shared.

Run: python3 benches/compare/rollout_torchsde.py
(creates its own venv /tmp/msde-venv-torchsde with torch and torchsde).
"""
import os
import statistics
import subprocess
import sys
import time

VENV = "/tmp/msde-venv-torchsde"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if sys.prefix != VENV:
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", "torch", "torchsde"])
    os.execv(os.path.join(VENV, "bin", "python"), [os.path.join(VENV, "bin", "python")] + sys.argv)

import torch  # noqa: E402
import torchsde  # noqa: E402

D, WIDTH, DEPTH, TIME_FEATURES, STEPS, H = 16, 128, 3, 8, 100, 0.01
FLOP = 111_104
TRIL = torch.tril_indices(D, D)
DIAG = TRIL[0] == TRIL[1]


class Net(torch.nn.Module):
    """enc(z, features(t)) -> (drift, L) as in morphosde_core::model."""

    def __init__(self):
        super().__init__()
        layers, n_in = [], D + TIME_FEATURES
        for _ in range(DEPTH):
            layers += [torch.nn.Linear(n_in, WIDTH), torch.nn.SiLU()]
            n_in = WIDTH
        self.encoder = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(WIDTH, D + TRIL.shape[1])
        self.freqs = 2.0 ** torch.arange(TIME_FEATURES // 2, dtype=torch.float32)

    def forward(self, t, z):
        angle = t * self.freqs
        feats = torch.cat([torch.sin(angle), torch.cos(angle)]).expand(z.shape[0], -1)
        out = self.head(self.encoder(torch.cat([z, feats], dim=1)))
        drift, raw = out[:, :D], out[:, D:]
        raw = torch.where(DIAG, torch.nn.functional.softplus(raw) + 1e-6, raw)
        factor = torch.zeros(z.shape[0], D, D)
        factor[:, TRIL[0], TRIL[1]] = raw
        return drift, factor


class Sde(torch.nn.Module):
    noise_type = "general"
    sde_type = "ito"

    def __init__(self, net):
        super().__init__()
        self.net = net

    def f_and_g(self, t, y):
        return self.net(t, y)

    def f(self, t, y):
        return self.net(t, y)[0]

    def g(self, t, y):
        return self.net(t, y)[1]


def torchsde_run(sde, z0):
    ts = torch.tensor([0.0, STEPS * H])
    torchsde.sdeint(sde, z0, ts, method="euler", dt=H)


def torch_loop(net, z0):
    z = z0
    for k in range(STEPS):
        drift, factor = net(torch.tensor(k * H), z)
        noise = torch.randn(z.shape[0], D, 1)
        z = z + drift * H + (H ** 0.5) * torch.bmm(factor, noise).squeeze(2)
    return z


def median_seconds(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    print(f"load average before: {os.getloadavg()}")
    env = dict(os.environ, MSDE_BENCH_PLAIN="1")
    rust = subprocess.run(
        ["cargo", "bench", "--bench", "rollout"], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    ).stdout
    ours = {}
    for line in rust.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0].isdigit():
            ours[(int(parts[0]), int(parts[1]))] = float(parts[2])
    torch.manual_seed(0)
    net = Net()
    sde = Sde(net)
    theirs = {}
    with torch.no_grad():
        for n in [100, 10_000]:
            z0 = torch.randn(n, D)
            for threads in [1, 2]:
                torch.set_num_threads(threads)
                reps = 5 if n == 100 else 3
                theirs[("torchsde", n, threads)] = median_seconds(lambda: torchsde_run(sde, z0), reps)
                theirs[("loop", n, threads)] = median_seconds(lambda: torch_loop(net, z0), reps)
    print(f"load average after: {os.getloadavg()}")
    print(f"torch {torch.__version__}, torchsde {torchsde.__version__}")
    print(f"{'side':<28}{'n':>7}{'thr':>4}{'seconds':>10}{'traj-steps/s':>14}{'GFLOP/s':>9}")

    def row(name, n, threads, seconds):
        rate = n * STEPS / seconds
        print(f"{name:<28}{n:>7}{threads:>4}{seconds:>10.4f}{rate:>14.0f}{rate * FLOP / 1e9:>9.2f}")

    for n in [100, 10_000]:
        for w in [1, 2]:
            row("morphosde (workers)", n, w, ours[(n, w)])
        for threads in [1, 2]:
            row("torchsde sdeint euler", n, threads, theirs[("torchsde", n, threads)])
            row("torch Euler loop", n, threads, theirs[("loop", n, threads)])
    print("ratios (their time / morphosde time):")
    for n, threads in [(100, 1), (100, 2), (10_000, 1), (10_000, 2)]:
        o = ours[(n, threads)]
        print(
            f"  n={n:>6}, {threads} thread(s): torchsde {theirs[('torchsde', n, threads)] / o:6.2f}x,"
            f" torch loop {theirs[('loop', n, threads)] / o:6.2f}x,"
            f" torchsde/torch loop {theirs[('torchsde', n, threads)] / theirs[('loop', n, threads)]:5.2f}x"
        )
    for n in [100, 10_000]:
        print(f"  morphosde 2 workers vs 1 at n={n}: {ours[(n, 1)] / ours[(n, 2)]:.2f}x")


main()
