"""Tables of docs/results/integrators.md from bench-recovery JSON files.

    python3 docs/results/integrators_tables.py NAME=FILE.json[,FILE.json...] ... [--pair A,B]

Each NAME's files are `morphosde bench-recovery --out` reports of one
rollout integrator; every NAME covers the same grid (processes, dims,
seeds). Printed, per
(process, d): the true process's energy over the floor (its rollouts by the
file's integrator), mean over the scored times and seeds, with the per-seed
means in brackets; the same for the exact true process (Euler–Maruyama at
the data's step, the same in every file); then, for every pair of files
given as `--pair A,B`, the difference of their
per-seed means against the seed-to-seed spread (sample standard deviation
over seeds) of A's.
"""

import json
import statistics
import sys


def load(paths):
    """Runs of the comma-separated files `paths` (one integrator)."""
    runs, method = {}, None
    for path in paths.split(","):
        method, more = load_one(path)
        runs.update(more)
    return method, runs


def load_one(path):
    with open(path) as f:
        report = json.load(f)
    runs = {}
    for run in report["runs"]:
        rollouts = run["energy"]["rollouts"]
        runs[(run["process"], run["d"], run["seed"])] = {
            "true": statistics.fmean(rollouts["true_process"]["ratio"]),
            "exact": statistics.fmean(rollouts["true_process_exact"]["ratio"]),
            "true_by_time": rollouts["true_process"]["ratio"],
        }
    return report["protocol"]["rollouts"]["with_noise"], runs


def main(argv):
    files, pairs = {}, []
    args = iter(argv)
    for a in args:
        if a == "--pair":
            pairs.append(next(args).split(","))
        else:
            name, path = a.split("=", 1)
            files[name] = load(path)
    names = list(files)
    keys = sorted(files[names[0]][1])
    cells = sorted({(p, d) for p, d, _ in keys}, key=lambda c: (order(c[0]), c[1]))
    seeds = sorted({s for _, _, s in keys})
    for name in names:
        print(f"- {name}: {files[name][0]}")
    print()
    head = " | ".join(f"{n}" for n in names)
    print(f"| process | d | {head} | exact |")
    print("|---|---|" + "---|" * (len(names) + 1))
    overall = {n: [] for n in names + ["exact"]}
    for p, d in cells:
        row = []
        for n in names + ["exact"]:
            runs = files[names[0] if n == "exact" else n][1]
            per_seed = [runs[(p, d, s)]["exact" if n == "exact" else "true"] for s in seeds]
            overall[n].extend(per_seed)
            row.append(f"{statistics.fmean(per_seed):.2f} ({' / '.join(f'{x:.2f}' for x in per_seed)})")
        print(f"| {p} | {d} | {' | '.join(row)} |")
    print("| all | | " + " | ".join(f"{statistics.fmean(overall[n]):.3f}" for n in names + ["exact"]) + " |")
    print()
    print("Per run: the true process's score over the exact true process's (same start and held-out clouds):")
    print()
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    ratios = {n: [files[n][1][k]["true"] / files[n][1][k]["exact"] for k in keys] for n in names}
    print("| geometric mean | " + " | ".join(f"{statistics.geometric_mean(ratios[n]):.3f}" for n in names) + " |")
    print("| largest | " + " | ".join(f"{max(ratios[n]):.2f}" for n in names) + " |")
    for a, b in pairs:
        print()
        print(f"{a} against {b}: per (process, d) the difference of the mean over seeds and the seed-to-seed spread of {a}:")
        print()
        print("| process | d | difference | spread | difference / spread |")
        print("|---|---|---|---|---|")
        worst = 0.0
        for p, d in cells:
            xa = [files[a][1][(p, d, s)]["true"] for s in seeds]
            xb = [files[b][1][(p, d, s)]["true"] for s in seeds]
            diff = statistics.fmean(xb) - statistics.fmean(xa)
            spread = statistics.stdev(xa)
            worst = max(worst, abs(diff) / spread)
            print(f"| {p} | {d} | {diff:+.3f} | {spread:.3f} | {abs(diff) / spread:.2f} |")
        print(f"\nlargest |difference| / spread: {worst:.2f}")


def order(process):
    return ["ou", "pitchfork", "cycles", "embryo"].index(process)


if __name__ == "__main__":
    main(sys.argv[1:])
