#!/usr/bin/env python3
"""Benchmark module: what counting malloc calls costs the traced program, against a bpftrace
uprobe doing the same counting (per CPU calls, total bytes), both scoped to the workload's pid.

The workload (malloc-stacks-workload.c) makes N malloc+free pairs after one byte on stdin; each
round runs it untraced, under `mapscope malloc --pid` and under bpftrace -p, in rotating order.
Env: the contract's (MAPSCOPE, REPO, BENCH_OUT, BENCH_QUICK, BENCH_ROUNDS)."""
import os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib as b

e = b.env()
b.need("bpftrace", "cc")
N = 20000 if e["quick"] else 1000000
exe = b.compile_c(os.path.join(os.path.dirname(b.HERE), "malloc-stacks-workload.c"), e["tmp"])
modes = ["untraced", "mapscope", "bpftrace"]
rate = {m: [] for m in modes}
for r in range(e["rounds"]):
    for mode in b.rotated(modes, r):
        w = b.Workload(exe, N)
        t = None
        try:
            # The workload is blocked on stdin once libc is mapped; before that, there is no
            # libc to probe yet.
            for _ in range(200):
                libc = next((l.split()[5] for l in open(f"/proc/{w.pid}/maps") if "libc.so" in l), None)
                if libc:
                    break
                time.sleep(0.01)
            if mode == "mapscope":
                t = b.Tracer([e["mapscope"], "malloc", "--pid", str(w.pid), "--interval", "3600"], "counting", e["tmp"])
            elif mode == "bpftrace":
                t = b.Tracer(["bpftrace", "-p", str(w.pid), "-e",
                              f"uprobe:{libc}:malloc {{ @calls[cpu] = count(); @bytes = sum(arg0); }}"],
                             "Attaching", e["tmp"], settle=1.0)
            rate[mode].append(w.run())
        finally:
            if t:
                t.stop()
            if w.p.poll() is None:
                w.p.kill()
med = {m: b.median(v) / 1e6 for m, v in rate.items()}
rows = [
    b.row("malloc rate while counting calls and bytes (uprobe on libc malloc)", med["mapscope"],
          "bpftrace @calls[cpu] = count(); @bytes = sum(arg0)", med["bpftrace"], "M mallocs/s", "higher",
          "both scoped to the workload's pid"),
    b.row("malloc rate kept vs untraced", med["mapscope"] / med["untraced"], "bpftrace",
          med["bpftrace"] / med["untraced"], "× untraced", "higher", "the uprobe trap dominates both"),
]
b.write(e, "malloc", "malloc counting overhead (mapscope malloc vs a bpftrace uprobe)", rows, [
    f"workload: {N} malloc+free pairs, untraced {med['untraced']:.1f} M/s; {e['rounds']} interleaved round(s), medians",
])
