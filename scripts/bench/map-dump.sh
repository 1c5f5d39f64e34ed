#!/usr/bin/env bash
# Benchmark module (contract in the README's benchmark section): `mapscope map dump --json` of a
# 1 000 000-entry hash (u32 -> u64) against `bpftool -j map dump` of the same map in the same run,
# wall time and peak RSS, plus mapscope's batch walk against its own get_next_key walk.
#
# Env: MAPSCOPE (release binary), REPO, BENCH_OUT (writes map-dump.json there), BENCH_QUICK=1
# (10 000 entries, one round), BENCH_ROUNDS (interleaved rounds, median taken; default 5).
# It touches the kernel: scripts/bench.sh runs it under /tmp/mapscope-kernel.lock; standalone, run
#   flock /tmp/mapscope-kernel.lock env MAPSCOPE=target/release/mapscope REPO=. BENCH_OUT=/tmp \
#     BENCH_QUICK=0 bash scripts/bench/map-dump.sh
set -euo pipefail

: "${MAPSCOPE:?path of the mapscope release binary}"
: "${BENCH_OUT:?directory for map-dump.json}"
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
BENCH_QUICK=${BENCH_QUICK:-0}
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
if [ "$BENCH_QUICK" = 1 ]; then ENTRIES=10000; ROUNDS=1; else ENTRIES=1000000; ROUNDS=$BENCH_ROUNDS; fi
command -v bpftool >/dev/null || { echo "map-dump: bpftool missing (scripts/setup.sh installs it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "map-dump: GNU time missing (scripts/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$BENCH_OUT"

PIN=/sys/fs/bpf/mapscope-bench-map-dump-$$
cleanup() { rm -f "$PIN"; }
trap cleanup EXIT INT TERM

# The map: created and pinned by `mapscope map create`, filled by the hidden `map fill` (batch
# updates: keys 0..N-1, values key*7+1), so both tools read exactly the same kernel object.
"$MAPSCOPE" map create "$PIN" type hash key 4 value 8 entries "$ENTRIES" name ms_bench_dump >/dev/null
"$MAPSCOPE" map fill pinned "$PIN" --count "$ENTRIES" 2>/dev/null

PIN="$PIN" ENTRIES="$ENTRIES" ROUNDS="$ROUNDS" BENCH_OUT="$BENCH_OUT" MAPSCOPE="$MAPSCOPE" python3 - <<'PY'
import json, os, statistics, subprocess, tempfile, time

pin, n, rounds = os.environ["PIN"], int(os.environ["ENTRIES"]), int(os.environ["ROUNDS"])
ms = os.environ["MAPSCOPE"]
devnull = os.open(os.devnull, os.O_WRONLY)
rss_file = tempfile.NamedTemporaryFile(prefix="map-dump-rss-", delete=False).name

def measure(argv):
    """Wall seconds and peak RSS (MiB) of one run writing to /dev/null. RSS comes from GNU time
    (a small C parent): a child forked from this Python process would inherit Python's RSS,
    which Linux carries into the exec'd program's maximum."""
    t0 = time.monotonic()
    res = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file] + argv, stdout=devnull)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"map-dump: {argv} failed")
    with open(rss_file) as f:
        return wall, int(f.read().split()[-1]) / 1024.0

def count(argv):
    out = subprocess.run(argv, check=True, capture_output=True).stdout
    return len(json.loads(out))

cmds = {
    "batch": [ms, "map", "dump", "pinned", pin, "--json"],
    "next_key": [ms, "map", "dump", "pinned", pin, "--json", "--method", "next-key"],
    "bpftool": ["bpftool", "-j", "map", "dump", "pinned", pin],
}
# Same entries from every reader before anything is timed.
for name, argv in cmds.items():
    got = count(argv)
    if got != n:
        raise SystemExit(f"map-dump: {name} read {got} entries, expected {n}")

samples = {k: [] for k in cmds}
order = list(cmds)
for r in range(rounds):
    # Interleaved, rotating order so drift on a shared machine hits every reader alike.
    for name in order[r % 3:] + order[:r % 3]:
        samples[name].append(measure(cmds[name]))

med = {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for k, v in samples.items()}
label = f"{n:,}".replace(",", " ")
rows = [
    {"what": f"map dump --json, {label}-entry hash (u32→u64), wall time",
     "mapscope": round(med["batch"][0], 4), "peer": "bpftool -j map dump",
     "peer_value": round(med["bpftool"][0], 4), "unit": "s", "better": "lower",
     "ratio": round(med["batch"][0] / med["bpftool"][0], 3),
     "note": "target ≤ 0.2× bpftool; output to /dev/null"},
    {"what": f"map dump --json, {label}-entry hash, peak RSS",
     "mapscope": round(med["batch"][1], 1), "peer": "bpftool -j map dump",
     "peer_value": round(med["bpftool"][1], 1), "unit": "MiB", "better": "lower",
     "ratio": round(med["batch"][1] / med["bpftool"][1], 3),
     "note": "streamed: mapscope's RSS does not grow with the map (1 MiB batch buffers)"},
    {"what": f"batch lookups vs get_next_key inside mapscope, {label} entries",
     "mapscope": round(med["batch"][0], 4), "peer": "mapscope --method next-key",
     "peer_value": round(med["next_key"][0], 4), "unit": "s", "better": "lower",
     "ratio": round(med["batch"][0] / med["next_key"][0], 3),
     "note": "batch: ~n/16384 bpf() calls; next-key: 3 per entry (get_next_key, restart check, lookup)"},
]
result = {
    "area": "map-dump",
    "title": "Map toolbox: dumping a large hash map (mapscope map dump vs bpftool)",
    "rows": rows,
    "notes": [
        f"{rounds} interleaved round(s), medians; both tools read the same pinned map, filled by `mapscope map fill` (batch update).",
        "Wall time includes process start and JSON formatting; output goes to /dev/null so the disk is not measured.",
        "Peak RSS (max resident set) of each run from GNU time's %M.",
        "2 shared cores: ratios, not absolute times, are the claim.",
    ],
}
with open(os.path.join(os.environ["BENCH_OUT"], "map-dump.json"), "w") as f:
    json.dump(result, f, indent=1, ensure_ascii=False)
os.unlink(rss_file)
for r in rows:
    print(f"map-dump: {r['what']}: mapscope {r['mapscope']} {r['unit']} vs {r['peer']} {r['peer_value']} {r['unit']} (ratio {r['ratio']})")
PY
