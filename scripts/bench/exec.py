#!/usr/bin/env python3
"""Benchmark module: what tracing execs costs the programs that exec, all processes.

A workload makes N vfork+execve(/bin/true) calls; each round runs it untraced, under
`mapscope exec --json` (ring buffer and perf buffer) and libbpf-tools `execsnoop`, output to
/dev/null, in rotating order. Rows: exec rate as a fraction of untraced, and kernel ns per exec
(enter + exit programs) from kernel.bpf_stats_enabled.
Env: the contract's (MAPSCOPE, REPO, BENCH_OUT, BENCH_QUICK, BENCH_ROUNDS)."""
import os, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib as b

e = b.env()
b.need("execsnoop", "bpftool", "cc")
N = 100 if e["quick"] else 3000
exe = b.compile_c(os.path.join(b.HERE, "spawn.c"), e["tmp"])
TRACERS = {
    "untraced": None,
    "ring": [e["mapscope"], "exec", "--json"],
    "perf": [e["mapscope"], "exec", "--json", "--transport", "perf"],
    "execsnoop": ["execsnoop"],
}
modes = list(TRACERS)
true = lambda: subprocess.run(["/bin/true"])
kept, ns, med = b.tracing_overhead(e, TRACERS, modes, exe, N, true, stdout=os.devnull)
rows = []
for m in ["ring", "perf"]:
    rows.append(b.row(f"exec rate kept while tracing execs, mapscope exec --json --transport {m}", kept[m],
                      "libbpf-tools execsnoop", kept["execsnoop"], "× untraced", "higher", "1.0 = no slowdown"))
for m in ["ring", "perf"]:
    rows.append(b.row(f"kernel ns per exec (enter + exit programs), transport {m}", ns[m],
                      "libbpf-tools execsnoop", ns["execsnoop"], "ns/exec", "lower",
                      "mapscope also reads argv (up to 4 KiB) and counts per uid"))
b.write(e, "exec", "exec tracing overhead (mapscope exec vs execsnoop)", rows, [
    f"workload: {N} vfork+execve(/bin/true) with 1 argument, untraced {med['untraced']:.0f} execs/s; {e['rounds']} interleaved round(s), medians",
    "output to /dev/null; ns/exec: kernel.bpf_stats_enabled=1, Σ run_time_ns of the tracer's programs ÷ run_cnt of the busiest",
])
