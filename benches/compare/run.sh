#!/usr/bin/env bash
# Side-by-side comparisons in one run. Usage: benches/compare/run.sh [uot]
set -euo pipefail
cd "$(dirname "$0")/../.."
export MSDE_UOT_SIZES="${MSDE_UOT_SIZES:-1024}"
case "${1:-uot}" in
  uot)
    cargo bench --bench uot -- --noplot
    python3 benches/compare/uot_pot.py
    ;;
esac
