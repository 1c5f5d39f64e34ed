#!/usr/bin/env python3
"""Benchmark module: user-space CPU per exec event (what the tracer process burns to deliver
each event), mapscope exec --json / text / --post against libbpf-tools execsnoop.

Each round starts a tracer writing to a file (or posting to a receiver on 127.0.0.1 run by this
script), reads its utime+stime from /proc/PID/stat, makes N execs, waits until the tracer's CPU
time stops growing, reads it again: (Δ CPU) ÷ N. Afterwards the output is checked to hold all N
events, so a tracer that dropped events cannot look cheap.
Env: the contract's (MAPSCOPE, REPO, BENCH_OUT, BENCH_QUICK, BENCH_ROUNDS)."""
import http.server, json, os, subprocess, sys, threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib as b

e = b.env()
b.need("execsnoop", "bpftool", "cc")
N = 200 if e["quick"] else 5000
exe = b.compile_c(os.path.join(b.HERE, "spawn.c"), e["tmp"])

received = {"events": 0}


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received["events"] += sum(1 for ev in json.loads(body).get("events", [])
                                  if ev.get("comm") == "true")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{srv.server_address[1]}/events"
spool = os.path.join(e["tmp"], "spool")
TRACERS = {
    "json": [e["mapscope"], "exec", "--json"],
    "text": [e["mapscope"], "exec"],
    "post": [e["mapscope"], "exec", "--post", url, "--spool-dir", spool],
    "execsnoop": ["execsnoop"],
}
modes = list(TRACERS)


def is_true(mode, line):
    """An event of the workload's /bin/true (matched by comm: the first exec after a vfork can
    come without argv when its pages are not yet faulted in)."""
    cols = line.split()
    if mode == "json":
        return '"comm":"true"' in line
    if mode == "text":
        return len(cols) > 1 and cols[1] == "true"
    return len(cols) > 0 and cols[0] == "true"


cpu = {m: [] for m in modes}
true = lambda: subprocess.run(["/bin/true"])
with b.BpfStats():
    for r in range(e["rounds"]):
        for mode in b.rotated(modes, r):
            out = os.path.join(e["tmp"], f"{mode}.out")
            before_tracer = b.prog_stats()
            t = b.Tracer(TRACERS[mode], "", e["tmp"], stdout=out, settle=0)
            try:
                b.wait_running(before_tracer, true, mode)
                b.wait_cpu_quiet(t, quiet=0.2 if e["quick"] else 0.6)
                received["events"] = 0
                c0 = t.cpu_ticks()
                b.Workload(exe, N).run()
                # --post holds an event up to 500 ms for its batch, then posts: wait past that.
                c1 = b.wait_cpu_quiet(t, quiet=0.7 if e["quick"] else 1.2)
            finally:
                t.stop()
            got = received["events"] if mode == "post" else sum(1 for l in open(out) if is_true(mode, l))
            if got < N:
                sys.exit(f"exec-cpu: {mode} delivered {got} of {N} events")
            cpu[mode].append((c1 - c0) * b.TICK_US / N)
srv.shutdown()
med = {m: b.median(v) for m, v in cpu.items()}
rows = [b.row(f"user-space CPU per exec event, mapscope exec {'--json' if m == 'json' else '(text)' if m == 'text' else '--post (HTTP sink)'}",
              med[m], "libbpf-tools execsnoop (text)", med["execsnoop"], "µs/event", "lower",
              "utime+stime of the tracer process over the run ÷ events")
        for m in ["json", "text", "post"]]
b.write(e, "exec-cpu", "exec events: user-space CPU per event (mapscope exec vs execsnoop)", rows, [
    f"{N} execs per round, {e['rounds']} interleaved round(s), medians; output to a file (--post: a receiver on 127.0.0.1 in the bench script)",
    f"/proc/PID/stat counts CPU in {b.TICK_US / 1000:.0f} ms ticks: ±1 tick is ±{b.TICK_US / N:.1f} µs/event at this N",
    "transport: ring buffer (mapscope's default); execsnoop uses a perf buffer",
])
