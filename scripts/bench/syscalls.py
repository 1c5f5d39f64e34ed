#!/usr/bin/env python3
"""Benchmark module: what counting every syscall costs, all processes.

A workload makes N getpgid() calls; each round runs it untraced, under the floor (an empty raw
tracepoint on sys_enter, examples/bench.rs), under `mapscope syscalls`, libbpf-tools `syscount`
and bpftrace counting by syscall id, in rotating order. Rows: the workload's rate as a fraction
of the untraced rate, and kernel ns per syscall from kernel.bpf_stats_enabled (run_time_ns /
run_cnt of the tracer's programs over the workload).

What ns/run compares (checked with `bpftool prog show` while each tracer runs): syscount loads
two tracepoint programs even without -L (sys_enter stores a start timestamp in a hash map for
every syscall, sys_exit counts), each runs once per syscall, so its figure is enter + exit.
mapscope's tail-called handlers never show runs of their own (a tail call jumps into the next
program inside the caller's run), so sc_dispatch's run time already holds the handler's. Both
figures are all of the tracer's BPF work per syscall. Not in either: the kernel's work around
the program; for syscount's (non-raw) tracepoints that includes filling a trace record per
call, which the rate-kept rows do see.
Env: the contract's (MAPSCOPE, REPO, BENCH_OUT, BENCH_QUICK, BENCH_ROUNDS)."""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib as b

e = b.env()
b.need("syscount", "bpftrace", "bpftool", "cc")
N = 20000 if e["quick"] else 2000000
exe = b.compile_c(os.path.join(b.HERE, "getpgid.c"), e["tmp"])
TRACERS = {
    "untraced": None,
    "floor": [e["bench"], "floor"],
    "mapscope": [e["mapscope"], "syscalls", "--interval", "3600"],
    "syscount": ["syscount"],
    "bpftrace": ["bpftrace", "-e", "tracepoint:raw_syscalls:sys_enter { @[args->id] = count(); }"],
}
modes = list(TRACERS) if not e["quick"] else ["untraced", "floor", "mapscope", "syscount"]
kept, ns, med = b.tracing_overhead(e, TRACERS, modes, exe, N, lambda: os.getpgid(0))
rows = []
for peer, label in [("syscount", "libbpf-tools syscount"), ("bpftrace", "bpftrace @[args->id] = count()"),
                    ("floor", "empty raw tracepoint (floor)")]:
    if peer in modes:
        rows.append(b.row(f"getpgid rate kept while counting all syscalls (vs {peer})", kept["mapscope"], label,
                          kept[peer], "× untraced", "higher",
                          "1.0 = no slowdown" if peer != "floor" else "the cheapest hook possible: nothing beats it"))
for peer, label in [("syscount", "libbpf-tools syscount"), ("bpftrace", "bpftrace"),
                    ("floor", "empty raw tracepoint (floor)")]:
    if peer in modes:
        rows.append(b.row(f"kernel ns per syscall (bpf_stats, vs {peer})", ns["mapscope"], label, ns[peer],
                          "ns/run", "lower",
                          "mapscope: sc_dispatch incl. its tail-called handler; syscount: enter + exit programs"))
b.write(e, "syscalls", "Syscall counting overhead (mapscope syscalls vs syscount, bpftrace, floor)", rows, [
    f"workload: {N} getpgid() calls, untraced {med['untraced'] / 1e6:.2f} M calls/s; {e['rounds']} interleaved round(s), medians",
    "ns/run: kernel.bpf_stats_enabled=1, Σ run_time_ns of the tracer's programs ÷ run_cnt of the busiest, over the workload",
    "like for like: syscount loads sys_enter and sys_exit even without -L (both run every syscall, both summed); "
    "mapscope's tail-called handlers run inside sc_dispatch's run, so its run time is the whole per-syscall cost; "
    "tracepoint (non-raw) record building is outside bpf_stats for syscount, inside the rate-kept rows",
    "all tracers count every process's syscalls, as they would by default",
])
