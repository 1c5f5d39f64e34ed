//! Bench-only loader for `mapscope-ebpf/src/bench.rs` (run by the modules in `scripts/bench/`;
//! never part of the `mapscope` binary):
//!
//! - `bench floor` attaches an empty raw tracepoint on `sys_enter` until SIGINT/SIGTERM, the
//!   cheapest hook any syscall tracer could have;
//! - `bench maps --repeat R` runs one-counter XDP programs (shared atomic `Array`, `PerCpuArray`,
//!   and an empty one) through `BPF_PROG_RUN` from 1..=nproc threads pinned to distinct CPUs, and
//!   times reading (summing) the per-CPU counter from user space;
//! - `bench transport --kind ring|perf --size 64|1024 --rate R --seconds S [--wakeup-every N]` drives a record
//!   producer through `BPF_PROG_RUN` at R records/s and reads the records back with
//!   `mapscope exec`'s own reader ([`mapscope::exec::reader::Buffers`]), a decoder that copies
//!   each record standing in for the exec decoder.
//!
//! Every result is one JSON line on stdout.

use std::{
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{RawTracePoint, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
    util::{nr_cpus, online_cpus},
};
use mapscope::exec::reader::Buffers;
use serde_json::json;

/// The bench object build.rs leaves beside the families' objects.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench"));

/// A 64-byte Ethernet-sized frame: XDP test runs need at least an Ethernet header.
const FRAME: [u8; 64] = [0u8; 64];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .ok_or_else(|| anyhow!("usage: bench floor | maps | transport [options]"))?;
    let opt = |name: &str, default: &str| -> String {
        rest.iter()
            .position(|a| a == name)
            .and_then(|i| rest.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    match cmd.as_str() {
        "floor" => floor(),
        "maps" => maps(
            opt("--repeat", "1000000").parse()?,
            opt("--reads", "10000").parse()?,
        ),
        "transport" => transport(
            &opt("--kind", "ring"),
            opt("--size", "64").parse()?,
            opt("--rate", "100000").parse()?,
            opt("--seconds", "1").parse()?,
            opt("--wakeup-every", "0").parse()?,
        ),
        other => bail!("unknown bench mode {other:?} (floor, maps or transport)"),
    }
}

fn load(ring_bytes: Option<u32>) -> anyhow::Result<Ebpf> {
    load_with(ring_bytes, 0)
}

fn load_with(ring_bytes: Option<u32>, wakeup_every: u64) -> anyhow::Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("the bench object is a stub (built with AYA_BUILD_SKIP); rebuild without it");
    }
    let mut loader = EbpfLoader::new();
    if let Some(bytes) = ring_bytes {
        loader.map_max_entries("BENCH_RING", bytes);
    }
    loader.override_global("BENCH_WAKEUP_EVERY", &wakeup_every, true);
    loader.load(OBJECT).context("loading the bench object")
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("{name} missing from the bench object"))?
        .try_into()?;
    prog.load().with_context(|| format!("loading {name}"))?;
    Ok(prog)
}

/// Attaches the empty sys_enter program and waits for SIGINT/SIGTERM.
fn floor() -> anyhow::Result<()> {
    let mut ebpf = load(None)?;
    let prog: &mut RawTracePoint = ebpf
        .program_mut("bench_floor")
        .ok_or_else(|| anyhow!("bench_floor missing"))?
        .try_into()?;
    prog.load().context("loading bench_floor")?;
    prog.attach("sys_enter").context("attaching bench_floor")?;
    eprintln!("bench floor: attached");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: u32) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Median ns per run of `prog` on each of `threads` pinned threads running at once.
fn run_threads(prog: &Xdp, cpus: &[u32], threads: usize, repeat: u32) -> anyhow::Result<f64> {
    let barrier = Barrier::new(threads);
    let mut per_thread = std::thread::scope(|s| {
        let handles: Vec<_> = cpus[..threads]
            .iter()
            .map(|&cpu| {
                let barrier = &barrier;
                s.spawn(move || -> anyhow::Result<f64> {
                    pin(cpu)?;
                    barrier.wait();
                    let r = prog.test_run(TestRunOptions {
                        data_in: Some(&FRAME),
                        repeat,
                        ..TestRunOptions::default()
                    })?;
                    // The kernel reports the mean duration of one run.
                    Ok(r.duration.as_nanos() as f64)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("bench thread panicked"))?)
            .collect::<anyhow::Result<Vec<f64>>>()
    })?;
    per_thread.sort_by(f64::total_cmp);
    Ok(per_thread[per_thread.len() / 2])
}

fn maps(repeat: u32, reads: u32) -> anyhow::Result<()> {
    let mut ebpf = load(None)?;
    for name in ["bench_empty", "bench_shared", "bench_pcpu"] {
        xdp(&mut ebpf, name)?;
    }
    let cpus = online_cpus().map_err(|(what, e)| anyhow!("reading {what}: {e}"))?;
    for threads in 1..=cpus.len() {
        let mut row = json!({"mode": "maps", "threads": threads, "repeat": repeat});
        for name in ["bench_empty", "bench_shared", "bench_pcpu"] {
            let prog: &Xdp = ebpf.program(name).unwrap().try_into()?;
            row[name] = run_threads(prog, &cpus, threads, repeat)?.into();
        }
        println!("{row}");
    }
    // Every run above counted once: the totals prove each program did its add.
    let shared: Array<&MapData, u64> = Array::try_from(ebpf.map("BENCH_SHARED").unwrap())?;
    let pcpu: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(ebpf.map("BENCH_PCPU").unwrap())?;
    let t0 = Instant::now();
    for _ in 0..reads {
        std::hint::black_box(shared.get(&0, 0)?);
    }
    let array_read = t0.elapsed().as_nanos() as f64 / f64::from(reads);
    let t0 = Instant::now();
    let mut sum = 0;
    for _ in 0..reads {
        sum = pcpu
            .get(&0, 0)?
            .iter()
            .copied()
            .fold(0u64, u64::wrapping_add);
    }
    let pcpu_read = t0.elapsed().as_nanos() as f64 / f64::from(reads);
    let expected: u64 = (1..=cpus.len() as u64).sum::<u64>() * u64::from(repeat);
    println!(
        "{}",
        json!({"mode": "maps-read", "array_read_ns": array_read, "pcpu_read_sum_ns": pcpu_read,
               "possible_cpus": nr_cpus().map_err(|(w, e)| anyhow!("{w}: {e}"))?,
               "shared_total": shared.get(&0, 0)?, "pcpu_total": sum, "expected_total": expected})
    );
    Ok(())
}

/// CPU time (user + system) the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What the reader thread saw.
#[derive(Default)]
struct ReadStats {
    delivered: AtomicU64,
    perf_lost: AtomicU64,
    cpu_ns: AtomicU64,
}

fn transport(
    kind: &str,
    size: usize,
    rate: u64,
    seconds: f64,
    wakeup_every: u64,
) -> anyhow::Result<()> {
    let ring_bytes = 1u32 << 20;
    let ncpus = online_cpus().map_err(|(w, e)| anyhow!("{w}: {e}"))?.len();
    // The same total buffer memory for both transports: perf gets ring_bytes / nproc per CPU.
    let perf_pages = ((ring_bytes as usize / 4096) / ncpus)
        .next_power_of_two()
        .max(1);
    let perf_pages = if perf_pages * ncpus * 4096 > ring_bytes as usize {
        perf_pages / 2
    } else {
        perf_pages
    };
    let mut ebpf = load_with(Some(ring_bytes), wakeup_every)?;
    let (prog_name, map_name) = match (kind, size) {
        ("ring", 64) => ("bench_ring64", "BENCH_RING"),
        ("ring", 1024) => ("bench_ring1k", "BENCH_RING"),
        ("perf", 64) => ("bench_perf64", "BENCH_PERF64"),
        ("perf", 1024) => ("bench_perf1k", "BENCH_PERF1K"),
        _ => bail!("--kind ring|perf and --size 64|1024"),
    };
    let prog: &mut SchedClassifier = ebpf.program_mut(prog_name).unwrap().try_into()?;
    prog.load()
        .with_context(|| format!("loading {prog_name}"))?;
    let map = ebpf.take_map(map_name).unwrap();

    let stats = Arc::new(ReadStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = {
        let (stats, stop, kind) = (Arc::clone(&stats), Arc::clone(&stop), kind.to_string());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut buffers = if kind == "ring" {
                    Buffers::ring(map)?
                } else {
                    Buffers::perf(map, perf_pages)?
                };
                let _ = ready_tx.send(());
                let cpu0 = thread_cpu();
                let mut batch = Vec::new();
                let mut quiet = 0;
                // The consumer, in the reader's loop as in `mapscope exec`: count and drop each
                // wake-up's records, until the producer stopped and 100 ms passed without one.
                loop {
                    let copy = |rec: &[u8]| Some(Box::<[u8]>::from(rec));
                    match tokio::time::timeout(
                        Duration::from_millis(10),
                        buffers.read(&mut batch, copy),
                    )
                    .await
                    {
                        Ok(read) => {
                            read.context("polling the bench buffers")?;
                            for rec in batch.drain(..) {
                                std::hint::black_box(&rec);
                                stats.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                            quiet = 0;
                        }
                        Err(_) => {
                            if stop.load(Ordering::Relaxed) {
                                quiet += 1;
                                if quiet >= 10 {
                                    break;
                                }
                            }
                        }
                    }
                }
                stats
                    .cpu_ns
                    .store((thread_cpu() - cpu0).as_nanos() as u64, Ordering::Relaxed);
                stats.perf_lost.store(
                    buffers.stats().perf_lost.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                Ok::<_, anyhow::Error>(())
            })
        })
    };
    ready_rx
        .recv()
        .map_err(|_| anyhow!("reader thread failed to start"))?;

    // The producer: keeps `produced` at rate × elapsed, in runs of at most a millisecond's worth
    // (sleeps on this VM overshoot by milliseconds, so pacing follows the clock, not the sleeps).
    let prog: &SchedClassifier = ebpf.program(prog_name).unwrap().try_into()?;
    let total = (rate as f64 * seconds) as u64;
    let chunk = (rate / 1000).max(1);
    let start = Instant::now();
    let mut produced = 0u64;
    while produced < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        if due <= produced {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        let n = (due - produced).min(chunk) as u32;
        prog.test_run(TestRunOptions {
            data_in: Some(&FRAME),
            repeat: n,
            ..TestRunOptions::default()
        })?;
        produced += u64::from(n);
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow!("reader thread panicked"))??;

    let full: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(ebpf.map("BENCH_FULL").unwrap())?;
    let ring_full = full.get(&0, 0)?.iter().sum::<u64>();
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let lost = ring_full + stats.perf_lost.load(Ordering::Relaxed);
    let cpu_ns = stats.cpu_ns.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({"mode": "transport", "kind": kind, "size": size, "offered_rate": rate, "wakeup_every": wakeup_every,
               "produced": produced, "achieved_rate": produced as f64 / elapsed,
               "delivered": delivered, "lost": lost, "unaccounted": produced.saturating_sub(delivered + lost),
               "reader_cpu_ns_per_event": if delivered > 0 { cpu_ns as f64 / delivered as f64 } else { 0.0 },
               "ring_bytes": ring_bytes, "perf_pages_per_cpu": perf_pages})
    );
    Ok(())
}
