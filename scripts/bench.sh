#!/usr/bin/env bash
# Benchmarks side by side with the peers, in one command (issue 7):
#   sudo bash scripts/bench.sh [--quick]
# Installs the peers through scripts/setup.sh (bpftrace, libbpf-tools, xdp-tools, bpftool), builds
# release (and examples/bench.rs, the bench-only loader), runs every module scripts/bench/<area>.sh
# or .py (contract in the GUIDE / README "Benchmarks"), each under the kernel lock, and renders
# BENCHMARKS.md + BENCHMARKS.json from the modules' $BENCH_OUT/<area>.json.
#
# --quick: every module in its smoke mode (a few seconds each); results go to $BENCH_OUT only
# (target/bench-quick by default), never over the committed BENCHMARKS.md.
# Env: BENCH_OUT (module JSON dir), BENCH_ROUNDS (default 5), BENCH_ONLY (space-separated areas),
# BENCH_MD (where BENCHMARKS.md goes), BENCH_NO_SETUP=1 (skip setup.sh), BENCH_NO_BUILD=1 (use
# the release binaries already built, as `cargo test --release` leaves them), BENCH_NO_LOCK=1
# (the caller already holds /tmp/mapscope-kernel.lock, as tests/bench.rs does).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
QUICK=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $a (only --quick)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: must run as root (benchmarks load BPF programs); rerun with sudo" >&2
  exit 1
fi
if [ -d "$HOME/.cargo/bin" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
[ "${BENCH_NO_SETUP:-0}" = 1 ] || bash scripts/setup.sh

if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
  for b in target/release/mapscope target/release/examples/bench; do
    [ -x "$b" ] || { echo "bench: $b missing; build with cargo build --release --bin mapscope --example bench" >&2; exit 1; }
  done
else
  echo "bench: building release" >&2
  cargo build --release --quiet --bin mapscope --example bench
fi

if [ "$QUICK" = 1 ]; then
  OUT=${BENCH_OUT:-$REPO/target/bench-quick}
  MD=${BENCH_MD:-$OUT/BENCHMARKS.md}
else
  OUT=${BENCH_OUT:-$REPO/target/bench}
  MD=${BENCH_MD:-$REPO/BENCHMARKS.md}
fi
rm -rf "$OUT"
mkdir -p "$OUT"
export MAPSCOPE="$REPO/target/release/mapscope" MAPSCOPE_BENCH="$REPO/target/release/examples/bench"
export REPO BENCH_OUT="$OUT" BENCH_QUICK="$QUICK" BENCH_ROUNDS="${BENCH_ROUNDS:-5}"

failed=()
for module in scripts/bench/*.sh scripts/bench/*.py; do
  [ -e "$module" ] || continue
  area=$(basename "${module%.*}")
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $area "* ]]; then continue; fi
  case "$module" in *.py) run=(python3 "$module") ;; *) run=(bash "$module") ;; esac
  echo "bench: $area" >&2
  start=$(date +%s.%N)
  if [ "${BENCH_NO_LOCK:-0}" = 1 ]; then
    "${run[@]}" || failed+=("$area")
  else
    flock /tmp/mapscope-kernel.lock "${run[@]}" || failed+=("$area")
  fi
  echo "bench: $area took $(python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$start") s" >&2
done

python3 scripts/bench/lib/render.py "$OUT" "$MD" "$QUICK" "${failed[*]:-}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "bench: failed modules: ${failed[*]} (rows of the others are in $MD)" >&2
  exit 1
fi
