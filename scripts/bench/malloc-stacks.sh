#!/usr/bin/env bash
# Benchmark module (contract: GUIDE "Benchmark contract", run by scripts/bench.sh under the kernel
# lock): what recording malloc stacks costs the traced program.
#
# A workload (malloc-stacks-workload.c) makes N malloc+free pairs through two call paths and
# times itself. Each round runs it, interleaved:
#   untraced | mapscope malloc --pid (counters) | mapscope malloc --stacks --pid |
#   bpftrace -p PID 'uprobe:LIBC:malloc { @[ustack] = count(); }'
# and the rows are medians over rounds of the workload's malloc rate. Every tracer is scoped to
# the workload's pid, so they pay for the same uprobe hits.
#
# Env: MAPSCOPE (release binary), REPO, BENCH_OUT (writes malloc-stacks.json), BENCH_QUICK (1:
# tiny counts, same path), BENCH_ROUNDS (default 5).
set -euo pipefail

: "${MAPSCOPE:?path of the mapscope release binary}"
: "${BENCH_OUT:?directory for malloc-stacks.json}"
REPO="${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}"
ROUNDS="${BENCH_ROUNDS:-5}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then N=20000; ROUNDS=1; else N=1000000; fi

work="$(mktemp -d)"
tracer=""
cleanup() {
  if [ -n "$tracer" ]; then kill "$tracer" 2>/dev/null || true; wait "$tracer" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cc -O2 -fno-omit-frame-pointer -o "$work/workload" "$REPO/scripts/bench/malloc-stacks-workload.c"

# waits until FILE contains TEXT (a tracer's "attached" line), at most 30 s
wait_for() {
  local file=$1 text=$2
  for _ in $(seq 300); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "malloc-stacks bench: tracer never said '$text':" >&2
  cat "$file" >&2
  return 1
}

# run MODE: one timed workload run under MODE, prints mallocs per second
run() {
  local mode=$1
  rm -f "$work/go" "$work/log"
  mkfifo "$work/go"
  "$work/workload" "$N" <"$work/go" >"$work/ns" &
  local pid=$!
  exec 3>"$work/go"   # opens the fifo: the workload starts and blocks in read()
  case "$mode" in
    untraced) ;;
    counters)
      "$MAPSCOPE" malloc --pid "$pid" --interval 3600 >/dev/null 2>"$work/log" &
      tracer=$!; wait_for "$work/log" "counting" ;;
    stacks)
      "$MAPSCOPE" malloc --stacks --pid "$pid" --interval 3600 >/dev/null 2>"$work/log" &
      tracer=$!; wait_for "$work/log" "counting" ;;
    bpftrace)
      local libc
      libc=$(awk '$6 ~ /libc\.so/ {print $6; exit}' "/proc/$pid/maps")
      bpftrace -p "$pid" -e "uprobe:$libc:malloc { @[ustack] = count(); }" >"$work/log" 2>&1 &
      tracer=$!; wait_for "$work/log" "Attaching"; sleep 1 ;;
  esac
  printf g >&3
  exec 3>&-
  wait "$pid"
  if [ -n "$tracer" ]; then
    kill -INT "$tracer" 2>/dev/null || true
    wait "$tracer" 2>/dev/null || true
    tracer=""
  fi
  python3 -c "import sys; print($N / (int(open(sys.argv[1]).read()) / 1e9))" "$work/ns"
}

modes=(untraced counters stacks bpftrace)
for round in $(seq "$ROUNDS"); do
  for mode in "${modes[@]}"; do
    echo "$mode $(run "$mode")" >>"$work/rates"
  done
done

python3 - "$work/rates" "$BENCH_OUT/malloc-stacks.json" "$N" "$ROUNDS" <<'EOF'
import json, statistics, sys
rates, out, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
by = {}
for line in open(rates):
    mode, rate = line.split()
    by.setdefault(mode, []).append(float(rate))
med = {m: statistics.median(v) / 1e6 for m, v in by.items()}
r = lambda a, b: round(a / b, 3) if b else None
rows = [
    {"what": "malloc rate, counters only (malloc --pid) vs untraced",
     "mapscope": round(med["counters"], 3), "peer": "untraced", "peer_value": round(med["untraced"], 3),
     "unit": "M mallocs/s", "better": "higher", "ratio": r(med["counters"], med["untraced"]),
     "note": "the uprobe itself: a trap into the kernel per call"},
    {"what": "malloc rate, stacks on (malloc --stacks --pid)",
     "mapscope": round(med["stacks"], 3), "peer": "bpftrace @[ustack] = count()",
     "peer_value": round(med["bpftrace"], 3), "unit": "M mallocs/s", "better": "higher",
     "ratio": r(med["stacks"], med["bpftrace"]),
     "note": "both walk the user stack with bpf_get_stackid; mapscope also counts bytes, per process and per CPU"},
    {"what": "malloc rate with stacks on / off (mapscope)",
     "mapscope": r(med["stacks"], med["counters"]), "peer": None, "peer_value": None,
     "unit": "ratio", "better": "higher", "ratio": None,
     "note": "what recording the stack adds to each traced malloc"},
]
json.dump({
    "area": "malloc-stacks",
    "title": "malloc stacks: traced program's malloc rate (M mallocs/s)",
    "rows": rows,
    "notes": [
        f"workload: {n} malloc+free pairs through two call paths (frame pointers), median of {rounds} interleaved rounds",
        "every tracer is scoped to the workload's pid (mapscope --pid, bpftrace -p)",
        "2 shared cores: ratios, not absolute rates, are the claim",
    ],
}, open(out, "w"), indent=1)
EOF
echo "malloc-stacks bench: wrote $BENCH_OUT/malloc-stacks.json" >&2
