//! Bench-only programs (`scripts/bench.sh`, loaded by `mapscope/examples/bench.rs`; never by the
//! product): the cheapest possible syscall hook (a floor for the tracing-overhead table), one
//! counter in a shared atomic `Array` versus a `PerCpuArray` (seed 001's claim, run through
//! `BPF_PROG_RUN` from pinned threads), and fixed-size record producers for the ring buffer and
//! the perf buffer, also driven by `BPF_PROG_RUN` so user space controls the offered rate. The
//! producers are tc classifiers, not XDP: an XDP test run with `repeat > 1` flips a static key
//! (`bpf_prog_change_xdp`) on every call, which costs ~17 ms here and would cap the offered rate.
#![no_std]
#![no_main]

use aya_ebpf::{
    Global,
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_OK, xdp_action},
    macros::{classifier, map, raw_tracepoint, xdp},
    maps::{Array, PerCpuArray, PerfEventArray, RingBuf},
    programs::{RawTracePointContext, TcContext, XdpContext},
};
use mapscope_ebpf::counter::atomic_add;

/// Record sizes the producers emit (bytes): a small event and an exec-sized one.
const SMALL: usize = 64;
const LARGE: usize = 1024;

/// One counter shared by every CPU: correct only with atomic adds, which bounce its cache line.
#[map(name = "BENCH_SHARED")]
static BENCH_SHARED: Array<u64> = Array::with_max_entries(1, 0);

/// One counter per CPU: plain adds, nothing shared; user space sums the CPUs when it reads.
#[map(name = "BENCH_PCPU")]
static BENCH_PCPU: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Ring buffer the producers write into; user space sizes it at load time.
#[map(name = "BENCH_RING")]
static BENCH_RING: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Perf buffers the 64-byte producer writes into (one per CPU, opened by user space).
#[map(name = "BENCH_PERF64")]
static BENCH_PERF64: PerfEventArray<[u8; SMALL]> = PerfEventArray::new(0);

/// Perf buffers the 1 KiB producer writes into.
#[map(name = "BENCH_PERF1K")]
static BENCH_PERF1K: PerfEventArray<[u8; LARGE]> = PerfEventArray::new(0);

/// Per-CPU staging for perf records: a 1 KiB record does not fit on the 512-byte BPF stack.
#[map(name = "BENCH_SCRATCH")]
static BENCH_SCRATCH: PerCpuArray<[u8; LARGE]> = PerCpuArray::with_max_entries(1, 0);

/// Records the producers could not emit (ring full), per CPU; perf losses arrive as
/// PERF_RECORD_LOST in the buffer itself.
#[map(name = "BENCH_FULL")]
static BENCH_FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sequence numbers stamped into records, per CPU, so records are not all alike.
#[map(name = "BENCH_SEQ")]
static BENCH_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Ring-buffer wake-up batching: 0 keeps the kernel's default (wake the reader when it has
/// caught up); N > 0 submits with `BPF_RB_NO_WAKEUP` and forces a wake-up every Nth record.
/// Set by user space before loading.
#[unsafe(no_mangle)]
static BENCH_WAKEUP_EVERY: Global<u64> = Global::new(0);

/// The floor: the emptiest program a tracer could hang on every syscall entry.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn bench_floor(_ctx: RawTracePointContext) -> u32 {
    0
}

/// The cost of BPF_PROG_RUN itself, subtracted from the counter programs' numbers.
#[xdp]
pub fn bench_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// One locked add into the shared array per run.
#[xdp]
pub fn bench_shared(_ctx: XdpContext) -> u32 {
    if let Some(v) = BENCH_SHARED.get_ptr_mut(0) {
        // SAFETY: pointer from a successful lookup; valid while the program runs.
        unsafe { atomic_add(v, 1) };
    }
    xdp_action::XDP_PASS
}

/// One plain add into this CPU's slot per run.
#[xdp]
pub fn bench_pcpu(_ctx: XdpContext) -> u32 {
    if let Some(v) = BENCH_PCPU.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; XDP does not nest on one CPU, nothing else writes it.
        unsafe { *v += 1 };
    }
    xdp_action::XDP_PASS
}

/// The next sequence number on this CPU.
#[inline(always)]
fn next_seq() -> u64 {
    match BENCH_SEQ.get_ptr_mut(0) {
        Some(v) => {
            // SAFETY: this CPU's slot, as in bench_pcpu.
            unsafe {
                *v += 1;
                *v
            }
        }
        None => 0,
    }
}

#[inline(always)]
fn count_full() {
    if let Some(v) = BENCH_FULL.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, as in bench_pcpu.
        unsafe { *v += 1 };
    }
}

/// Reserves, stamps and submits one `N`-byte ring-buffer record (default wake-up policy).
#[inline(always)]
fn ring_record<const N: usize>() -> i32 {
    match BENCH_RING.reserve::<[u8; N]>(0) {
        Some(mut entry) => {
            let seq = next_seq();
            // SAFETY: the reservation is N bytes; the first eight hold the sequence number.
            unsafe { (entry.as_mut_ptr() as *mut u64).write_unaligned(seq) };
            let every = BENCH_WAKEUP_EVERY.load();
            let flags = match every {
                0 => 0,
                n if seq.is_multiple_of(n) => BPF_RB_FORCE_WAKEUP,
                _ => BPF_RB_NO_WAKEUP,
            };
            entry.submit(u64::from(flags));
        }
        None => count_full(),
    }
    TC_ACT_OK
}

/// Stamps and outputs one `N`-byte perf record (`N` ≤ LARGE) from the per-CPU staging area.
#[inline(always)]
fn perf_record<const N: usize>(ctx: &TcContext, perf: &PerfEventArray<[u8; N]>) -> i32 {
    let Some(buf) = BENCH_SCRATCH.get_ptr_mut(0) else {
        return TC_ACT_OK;
    };
    let seq = next_seq();
    // SAFETY: this CPU's staging slot (LARGE ≥ N bytes); no one else touches it while we run.
    let record = unsafe {
        (buf as *mut u64).write_unaligned(seq);
        &*(buf as *const [u8; N])
    };
    perf.output(ctx, record, 0);
    TC_ACT_OK
}

#[classifier]
pub fn bench_ring64(_ctx: TcContext) -> i32 {
    ring_record::<SMALL>()
}

#[classifier]
pub fn bench_ring1k(_ctx: TcContext) -> i32 {
    ring_record::<LARGE>()
}

#[classifier]
pub fn bench_perf64(ctx: TcContext) -> i32 {
    perf_record(&ctx, &BENCH_PERF64)
}

#[classifier]
pub fn bench_perf1k(ctx: TcContext) -> i32 {
    perf_record(&ctx, &BENCH_PERF1K)
}

mapscope_ebpf::license!();
