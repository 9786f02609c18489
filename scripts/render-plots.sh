#!/usr/bin/env bash
# Renders SVG plots to PNG with resvg (the `resvg-cli` wheel from PyPI, in
# its own venv under target/), to look at them as a reader would.
#
#   scripts/render-plots.sh FILE.svg|DIR ...   PNG beside each SVG
#   scripts/render-plots.sh --docs             regenerate docs/img/*.png:
#       runs `morphosde demo` (d = 2, seed 0) and `demo --d 8` (for the
#       principal-component rollouts) into target/docs-demo{,-d8} and
#       renders their plots; about a minute after the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/render-venv
if [ ! -x "$venv/bin/resvg" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet resvg-cli
fi
font_args=()
for dir in /usr/share/fonts /usr/local/share/fonts; do
  [ -d "$dir" ] && font_args+=(--use-fonts-dir "$dir")
done
sans=$(fc-match -f '%{family[0]}' sans-serif 2>/dev/null || echo "DejaVu Sans")
render() {
  "$venv/bin/resvg" --sans-serif-family "$sans" "${font_args[@]}" "$1" "${2:-${1%.svg}.png}"
}
if [ "${1:-}" = "--docs" ]; then
  cargo build --release --quiet
  target/release/morphosde demo --quiet --out target/docs-demo >/dev/null
  target/release/morphosde demo --quiet --d 8 --out target/docs-demo-d8 >/dev/null
  mkdir -p docs/img
  for name in rollouts diffusion_backbone heterogeneity training calibration; do
    render "target/docs-demo/$name.svg" "docs/img/$name.png"
  done
  render target/docs-demo-d8/rollouts.svg docs/img/rollouts_d8.png
  ls -l docs/img
  exit 0
fi
[ $# -gt 0 ] || { echo "usage: $0 FILE.svg|DIR ... | --docs" >&2; exit 2; }
for arg in "$@"; do
  if [ -d "$arg" ]; then
    for f in "$arg"/*.svg; do render "$f"; echo "${f%.svg}.png"; done
  else
    render "$arg"; echo "${arg%.svg}.png"
  fi
done
