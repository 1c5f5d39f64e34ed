#!/usr/bin/env python3
"""Benchmark module: ring buffer vs perf buffer, records/s delivered with zero loss, the loss
curve above it, and user CPU per record, for 64 B and 1 KiB records.

examples/bench.rs drives a bench-only producer (tc classifier in mapscope-ebpf/src/bench.rs)
through BPF_PROG_RUN `repeat` at an offered rate and reads the records back with mapscope's
own reader (exec/reader.rs Buffers: AsyncFd, drain per wake, consumer in the same loop, as
`mapscope exec` reads) on one thread, whose CPU
time per delivered record is the CPU row. Both transports get the same total buffer memory
(1 MiB ring; 1 MiB / nproc per CPU for perf). Also: the ring with wake-up batching
(BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP every 64th record).
Env: the contract's (MAPSCOPE, REPO, BENCH_OUT, BENCH_QUICK, BENCH_ROUNDS)."""
import json, os, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib as b

e = b.env()
RATES = [100000] if e["quick"] else [50000, 100000, 200000, 400000, 800000, 1600000, 3200000]
SECONDS = 0.05 if e["quick"] else 0.5
CONFIGS = [("ring", 64, 0), ("perf", 64, 0), ("ring", 1024, 0), ("perf", 1024, 0), ("ring", 64, 64)]
res = {}
for r in range(e["rounds"]):
    for rate in RATES:
        for kind, size, wake in b.rotated(CONFIGS, r):
            out = subprocess.run([e["bench"], "transport", "--kind", kind, "--size", str(size), "--rate", str(rate),
                                  "--seconds", str(SECONDS), "--wakeup-every", str(wake)], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"transport: bench transport failed: {out.stderr.strip()}")
            res.setdefault((kind, size, wake, rate), []).append(json.loads(out.stdout))


def med(kind, size, wake, rate, key):
    return b.median([x[key] for x in res[(kind, size, wake, rate)]])


def loss(kind, size, wake, rate):
    return b.median([x["lost"] / x["produced"] for x in res[(kind, size, wake, rate)]])


def zero_loss_max(kind, size, wake):
    ok = [rate for rate in RATES if loss(kind, size, wake, rate) == 0]
    return max(ok) if ok else 0


rows = []
for size in [64, 1024]:
    rows.append(b.row(f"highest offered rate delivered with zero loss, {size} B records", zero_loss_max("ring", size, 0),
                      "perf buffer", zero_loss_max("perf", size, 0), "records/s", "higher",
                      f"mapscope column: ring buffer; rates tried: {', '.join(f'{x // 1000}k' for x in RATES)}"))
    for rate in RATES:
        rows.append(b.row(f"lost fraction at {rate // 1000}k records/s offered, {size} B", loss("ring", size, 0, rate),
                          "perf buffer", loss("perf", size, 0, rate), "lost/produced", "lower", "the loss curve"))
    mid = RATES[min(2, len(RATES) - 1)]
    rows.append(b.row(f"reader CPU per record at {mid // 1000}k records/s, {size} B", med("ring", size, 0, mid, "reader_cpu_ns_per_event"),
                      "perf buffer", med("perf", size, 0, mid, "reader_cpu_ns_per_event"), "ns/record", "lower",
                      "one reader thread: wake-ups, drain, copy, consume"))
mid = RATES[min(2, len(RATES) - 1)]
rows.append(b.row(f"ring reader CPU per record at {mid // 1000}k/s, 64 B, wake-up every 64th record vs every record",
                  med("ring", 64, 64, mid, "reader_cpu_ns_per_event"), "ring, default wake-ups",
                  med("ring", 64, 0, mid, "reader_cpu_ns_per_event"), "ns/record", "lower",
                  "BPF_RB_NO_WAKEUP + BPF_RB_FORCE_WAKEUP every 64th: up to 63 records wait for the next wake-up"))
rows.append(b.row("highest zero-loss rate, 64 B, wake-up every 64th record vs every record", zero_loss_max("ring", 64, 64),
                  "ring, default wake-ups", zero_loss_max("ring", 64, 0), "records/s", "higher",
                  "records still waiting at the end (no final wake-up) are not counted as lost"))
b.write(e, "transport", "Ring buffer vs perf buffer: delivery without loss, loss curve, reader CPU", rows, [
    f"each point: {SECONDS} s of records at the offered rate, {e['rounds']} round(s), medians; producer paced by BPF_PROG_RUN repeat chunks",
    "1 MiB of buffer for each transport (ring: one shared; perf: split per CPU); loss = ring reservations that failed / PERF_RECORD_LOST counts",
    "the reader is mapscope's own (exec/reader.rs Buffers, generic over its decoder), with a decoder that copies the record instead of the exec decoder",
])
