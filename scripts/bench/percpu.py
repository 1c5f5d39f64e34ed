#!/usr/bin/env python3
"""Benchmark module: one counter in a shared atomic Array vs a PerCpuArray (seed 001's claim).

examples/bench.rs runs bench-only XDP programs (mapscope-ebpf/src/bench.rs) through
BPF_PROG_RUN with `repeat` from 1..=nproc threads pinned to distinct CPUs, at once: ns per run
for an empty program, a locked add into the shared Array and a plain add into the PerCpuArray;
then the cost of reading each from user space (the per-CPU read copies and sums one value per
possible CPU). The harness runs unchanged on a many-core host: thread counts follow nproc.
Env: the contract's (MAPSCOPE, REPO, BENCH_OUT, BENCH_QUICK, BENCH_ROUNDS)."""
import json, os, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib as b

e = b.env()
repeat = 20000 if e["quick"] else 2000000
samples, reads = {}, []
for r in range(e["rounds"]):
    out = subprocess.run([e["bench"], "maps", "--repeat", str(repeat), "--reads", "2000" if e["quick"] else "20000"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"percpu: bench maps failed: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        j = json.loads(line)
        if j["mode"] == "maps":
            samples.setdefault(j["threads"], []).append(j)
        else:
            if not (j["shared_total"] == j["pcpu_total"] == j["expected_total"]):
                sys.exit(f"percpu: counters disagree with the runs made: {j}")
            reads.append(j)
rows = []
for threads in sorted(samples):
    s = samples[threads]
    med = {k: b.median([x[k] for x in s]) for k in ["bench_empty", "bench_shared", "bench_pcpu"]}
    rows.append(b.row(f"ns per counted packet, {threads} thread(s) on distinct CPUs", med["bench_pcpu"],
                      "shared Array, atomic add", med["bench_shared"], "ns/run", "lower",
                      f"empty program: {med['bench_empty']:.0f} ns/run (BPF_PROG_RUN's own cost)"))
rd = {k: b.median([x[k] for x in reads]) for k in ["array_read_ns", "pcpu_read_sum_ns"]}
ncpu = reads[0]["possible_cpus"]
rows.append(b.row(f"user-space read of the counter ({ncpu} possible CPUs; per-CPU: read + sum)", rd["pcpu_read_sum_ns"],
                  "shared Array read", rd["array_read_ns"], "ns/read", "lower",
                  "the per-CPU read copies one 8-byte value per possible CPU: grows linearly with the CPU count"))
b.write(e, "percpu", "Shared atomic Array vs PerCpuArray: one counter under BPF_PROG_RUN from pinned threads", rows, [
    f"repeat {repeat} runs per thread, {e['rounds']} round(s), medians; a 64-byte frame per run",
    f"this host has {os.cpu_count()} CPUs: with so few, the shared line bounces between two caches only, so contention is small; "
    "the module runs one more thread count per CPU on a bigger host, unchanged",
    "both counters are checked afterwards to hold exactly threads × repeat, summed over every thread count",
])
