"""Shared pieces of the Python benchmark modules (contract: GUIDE "Benchmark contract").

Each module reads its environment with `env()`, starts tracers with `Tracer`, runs a workload
with `Workload`, reads per-program kernel time with `prog_stats()` and writes its JSON with
`write()`. Nothing here is a module itself (scripts/bench.sh runs only scripts/bench/*.sh|py).
"""
import json, os, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def env():
    """The contract's environment as a dict (with defaults for standalone runs)."""
    ms = os.environ.get("MAPSCOPE")
    out = os.environ.get("BENCH_OUT")
    if not ms or not out:
        sys.exit("bench: MAPSCOPE and BENCH_OUT must be set (scripts/bench.sh sets them)")
    os.makedirs(out, exist_ok=True)
    quick = os.environ.get("BENCH_QUICK", "0") == "1"
    return {
        "mapscope": ms,
        "bench": os.environ.get("MAPSCOPE_BENCH") or os.path.join(os.path.dirname(ms), "examples", "bench"),
        "repo": os.environ.get("REPO") or os.path.dirname(os.path.dirname(HERE)),
        "out": out,
        "quick": quick,
        "rounds": 1 if quick else int(os.environ.get("BENCH_ROUNDS", "5")),
        "tmp": tempfile.mkdtemp(prefix="mapscope-bench-"),
    }


def need(*tools):
    for t in tools:
        if subprocess.run(["sh", "-c", f"command -v {t}"], capture_output=True).returncode != 0:
            sys.exit(f"bench: {t} missing (scripts/setup.sh installs it)")


def compile_c(src, tmp):
    exe = os.path.join(tmp, os.path.basename(src)[:-2])
    subprocess.run(["cc", "-O2", "-fno-omit-frame-pointer", "-o", exe, src], check=True)
    return exe


class Workload:
    """A workload that waits for one byte on stdin, runs, and prints its elapsed ns."""

    def __init__(self, exe, n):
        self.n = n
        self.p = subprocess.Popen([exe, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.p.pid

    def run(self):
        """Starts it, waits, returns operations per second."""
        out, _ = self.p.communicate(b"g", timeout=600)
        if self.p.returncode != 0:
            sys.exit(f"bench: workload failed ({self.p.returncode})")
        return self.n / (int(out) / 1e9)


class Tracer:
    """A tracer process: started, waited for until `ready` shows on stdout/stderr, stopped with
    SIGINT (then SIGKILL) even on failure."""

    def __init__(self, argv, ready, tmp, stdout=None, settle=0.3):
        self.log = os.path.join(tmp, "tracer.log")
        self.out_path = stdout or os.devnull
        with open(self.log, "w") as log, open(self.out_path, "w") as out:
            self.p = subprocess.Popen(argv, stdout=out if stdout else log, stderr=log)
        self.pid = self.p.pid
        deadline = time.monotonic() + 60
        while True:
            text = open(self.log, errors="replace").read()
            if ready in text:
                break
            if self.p.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"bench: {argv[0]} never said {ready!r}:\n{text}")
            time.sleep(0.05)
        time.sleep(settle)

    def cpu_ticks(self):
        """utime + stime of the whole process (all threads), in clock ticks."""
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def prog_stats():
    """{prog id: (run_time_ns, run_cnt)} of every loaded BPF program (bpf_stats must be on)."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, check=True).stdout
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in json.loads(out)}


class BpfStats:
    """Turns kernel.bpf_stats_enabled on for its lifetime (restoring the old value)."""

    def __enter__(self):
        self.old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("1")
        return self

    def __exit__(self, *exc):
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(self.old)


def ns_per_run(before_tracer, before, after):
    """Kernel ns per event of the programs loaded since `before_tracer`, over before→after:
    all their run time divided by the busiest one's run count (a tracer's entry and exit
    programs each run once per event; tail-called programs are charged to their caller)."""
    new = [i for i in after if i not in before_tracer and i in before]
    t = sum(after[i][0] - before[i][0] for i in new)
    c = max((after[i][1] - before[i][1] for i in new), default=0)
    return t / c if c else None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rnd(x, n=3):
    return None if x is None else round(x, n)


def row(what, mapscope, peer, peer_value, unit, better, note="", ratio=None):
    if ratio is None and mapscope is not None and peer_value:
        ratio = mapscope / peer_value
    return {"what": what, "mapscope": rnd(mapscope), "peer": peer, "peer_value": rnd(peer_value),
            "unit": unit, "better": better, "ratio": rnd(ratio), "note": note}


def write(e, area, title, rows, notes):
    path = os.path.join(e["out"], f"{area}.json")
    with open(path, "w") as f:
        json.dump({"area": area, "title": title, "rows": rows, "notes": notes}, f, indent=1, ensure_ascii=False)
    for r in rows:
        print(f"{area}: {r['what']}: mapscope {r['mapscope']} vs {r['peer']} {r['peer_value']} {r['unit']} (ratio {r['ratio']})", file=sys.stderr)


def rotated(modes, r):
    """The round's order: rotated each round so drift hits every mode alike."""
    k = r % len(modes)
    return modes[k:] + modes[:k]


def wait_running(before_tracer, trigger, what, timeout=30):
    """Waits until a program loaded since `before_tracer` has run (bpf_stats on), calling
    `trigger()` meanwhile: proof the tracer is attached, for tracers that print nothing
    unbuffered when they are ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trigger()
        now = prog_stats()
        if any(now[i][1] > 0 for i in now if i not in before_tracer):
            return
        time.sleep(0.05)
    sys.exit(f"bench: {what} never ran a program")


def wait_cpu_quiet(tracer, quiet=1.0, timeout=60):
    """Waits until the tracer's CPU time stops growing for `quiet` seconds (it has handled
    everything), returns its ticks."""
    last, since = tracer.cpu_ticks(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = tracer.cpu_ticks()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def tracing_overhead(e, tracers, modes, exe, n, trigger, **tracer_kw):
    """Runs workload `exe` (n operations) untraced and under each tracer, rounds in rotating
    order, with kernel.bpf_stats_enabled on. Returns (rate kept vs "untraced", kernel ns/run,
    rate in operations/s), each a dict of medians by mode. `trigger` makes the tracer's programs
    run once, to tell when it is attached."""
    rate = {m: [] for m in modes}
    nsrun = {m: [] for m in modes}
    with BpfStats():
        for r in range(e["rounds"]):
            for mode in rotated(modes, r):
                t = None
                before_tracer = prog_stats()
                if tracers[mode]:
                    t = Tracer(tracers[mode], "", e["tmp"], settle=0, **tracer_kw)
                    wait_running(before_tracer, trigger, mode)
                try:
                    w = Workload(exe, n)
                    before = prog_stats()
                    rate[mode].append(w.run())
                    if t:
                        nsrun[mode].append(ns_per_run(before_tracer, before, prog_stats()))
                finally:
                    if t:
                        t.stop()
    med = {m: median(v) for m, v in rate.items()}
    kept = {m: med[m] / med["untraced"] for m in modes}
    ns = {m: median(nsrun[m]) for m in modes}
    return kept, ns, med
