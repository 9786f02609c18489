#!/usr/bin/env bash
# Regenerates the raw outputs behind docs/results.md and docs/results/*.md
# into target/results/<date>/ (one file per command, named after it), with
# the commit, date and machine in target/results/<date>/MACHINE.txt.
#
#   scripts/results.sh           everything: about 2 hours on 2 shared cores
#                                (the two recovery grids take 15 min each, the
#                                held-out benchmark and the ablation longer)
#   scripts/results.sh --quick   the demo's six seeds at d = 2 and 8, the
#                                per-bin sizes and the figures the tests
#                                print: about 15 minutes
#
# The tables in the docs are written from these outputs by hand; compare
# them with the committed figures before editing a table.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
[ "${1:-}" = "--quick" ] && quick=true
out="target/results/$(date -u +%Y-%m-%d)"
mkdir -p "$out"
bin=target/release/morphosde
cargo build --release --quiet
{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "date: $(date -u)"
  echo "machine: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
} > "$out/MACHINE.txt"
run() { # name, command...
  local name=$1; shift
  echo "== $name: $*" >&2
  "$@" > "$out/$name.txt" 2> "$out/$name.stderr"
}

# docs/results.md "The demo", "Recovery" and docs/results/standardisation.md.
for d in 2 8; do
  for s in 0 1 2 3 4 5; do
    run "demo-d$d-seed$s" "$bin" demo --quiet --d "$d" --seed "$s" --out "$out/demo-d$d-seed$s"
  done
done
# "More data, the same training".
for n in 2000 3000; do
  run "demo-per-bin$n" "$bin" demo --quiet --per-bin "$n" --out "$out/demo-per-bin$n"
done
# Figures printed by tests (field --estimate, plan blur, drift at a finite
# gap, propagated targets, the OU process end to end, clustering defaults).
for t in cli_field_estimate plan_blur drift_teacher propagated_targets ou_end_to_end; do
  run "test-$t" cargo test --release --test "$t" -- --nocapture
done
run test-cluster_defaults cargo test --release --test cluster_defaults -- --ignored --nocapture
$quick && { echo "quick run done: $out" >&2; exit 0; }

# "Ablation".
run ablate "$bin" ablate
# docs/results/recovery.md (both grids) and "Recovery suite".
run bench-recovery "$bin" bench-recovery --out "$out/recovery-defaults.json"
run bench-recovery-frozen "$bin" bench-recovery --residual propagated-frozen \
  --out "$out/recovery-propagated-frozen.json"
# docs/results/standardisation.md: the held-out-time benchmark and the OU
# process at full size.
run bench-heldout "$bin" bench-heldout --out "$out/heldout.json" --markdown "$out/heldout.md"
run test-ou_end_to_end-full cargo test --release --test ou_end_to_end -- --ignored --nocapture
echo "done: $out" >&2
