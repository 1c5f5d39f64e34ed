#!/usr/bin/env bash
# Benchmark module (contract in the README's benchmark section): events per second one mapscope
# publishes into a local `nats-server -js` through the NATS JetStream sink (one message per
# event, each awaiting its JetStream ack, at most 256 in flight, file storage), beside the HTTP
# sink of the same pipeline posting the same events to a local receiver. The `nats` CLI (and so
# `nats bench`) is not packaged in Debian, hence the HTTP sink as the peer.
#
# The events come from examples/sink_rate.rs (exec-shaped JSON, ~400 bytes), not the kernel, so
# this measures the sink, not the exec tracer; it needs no root and no kernel lock.
# Env: MAPSCOPE (unused: the workload is the sink_rate example, built here), REPO, BENCH_OUT
# (writes nats-sink.json), BENCH_QUICK=1 (2 000 events, one round), BENCH_ROUNDS (default 5).
set -euo pipefail

: "${BENCH_OUT:?directory for nats-sink.json}"
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
BENCH_QUICK=${BENCH_QUICK:-0}
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
if [ "$BENCH_QUICK" = 1 ]; then EVENTS=2000; ROUNDS=1; else EVENTS=50000; ROUNDS=$BENCH_ROUNDS; fi
command -v nats-server >/dev/null || { echo "nats-sink: nats-server missing (scripts/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$BENCH_OUT"

(cd "$REPO" && cargo build --release --quiet --example sink_rate)
RATE="$REPO/target/release/examples/sink_rate"

WORK=$(mktemp -d /tmp/mapscope-bench-nats.XXXXXX)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$PORT" -js -sd "$WORK/store" >/dev/null 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.05; done

RATE="$RATE" URL="nats://127.0.0.1:$PORT" EVENTS="$EVENTS" ROUNDS="$ROUNDS" WORK="$WORK" \
  BENCH_OUT="$BENCH_OUT" python3 - <<'PY'
import json, os, statistics, subprocess

rate, url, n, rounds, work = (os.environ[k] for k in ("RATE", "URL", "EVENTS", "ROUNDS", "WORK"))
n, rounds = int(n), int(rounds)

def run(kind, r):
    spool = os.path.join(work, f"spool-{kind}-{r}")
    argv = [rate, "nats", url, str(n), spool] if kind == "nats" else [rate, "http", str(n), spool]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["events_per_s"]

samples = {"nats": [], "http": []}
for r in range(rounds):
    # Interleaved, alternating order so drift on a shared machine hits both alike.
    for kind in (("nats", "http") if r % 2 == 0 else ("http", "nats")):
        samples[kind].append(run(kind, r))
med = {k: statistics.median(v) for k, v in samples.items()}
result = {
    "area": "nats-sink",
    "title": "NATS JetStream sink",
    "rows": [{
        "what": f"events/s published into a local nats-server -js (file store), {n} events, each acked",
        "mapscope": round(med["nats"], 1),
        "peer": "mapscope HTTP sink to a local receiver (same pipeline, batches of 100)",
        "peer_value": round(med["http"], 1),
        "unit": "events/s", "better": "higher",
        "ratio": round(med["nats"] / med["http"], 3),
        "note": f"median of {rounds} interleaved rounds; one JetStream message and ack per event vs one POST per 100 events",
    }],
    "notes": [
        "The nats CLI (nats bench) is not in Debian, so the peer is mapscope's own HTTP sink to a local receiver.",
        "Events are synthetic exec-shaped JSON pushed through the sink library (mapscope/examples/sink_rate.rs).",
        f"samples nats={samples['nats']} http={samples['http']}",
    ],
}
with open(os.path.join(os.environ["BENCH_OUT"], "nats-sink.json"), "w") as f:
    json.dump(result, f, indent=2)
print(json.dumps(result["rows"][0]))
PY
