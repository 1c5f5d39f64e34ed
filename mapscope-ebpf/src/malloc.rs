//! A uprobe on libc `malloc`: calls and requested bytes per CPU and per process.
//!
//! Updates are locked adds even on the per-CPU value: uprobe programs run with migration
//! disabled but stay preemptible on PREEMPT kernels, so two tasks on one CPU could interleave a
//! plain read-modify-write. The per-CPU line is never shared, so the lock costs no contention.

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    macros::{map, uprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::ProbeContext,
};
use mapscope_common::malloc::{MAX_PROCESSES, MallocProcess, MallocRecord};

use crate::counter::atomic_add;

/// One record per CPU.
#[map(name = "MALLOC_PCPU")]
static MALLOC_PCPU: PerCpuArray<MallocRecord> = PerCpuArray::with_max_entries(1, 0);

/// One record per process (tgid), bounded; LRU evicts the least recently active process.
#[map(name = "MALLOC_PROCS")]
static MALLOC_PROCS: LruHashMap<u32, MallocProcess> =
    LruHashMap::with_max_entries(MAX_PROCESSES, 0);

#[uprobe]
pub fn malloc_enter(ctx: ProbeContext) -> u32 {
    match try_malloc_enter(&ctx) {
        Ok(r) => r,
        Err(r) => r,
    }
}

fn try_malloc_enter(ctx: &ProbeContext) -> Result<u32, u32> {
    // malloc(size_t size): the first argument register.
    let size: u64 = ctx.arg(0).ok_or(1u32)?;
    if let Some(rec) = MALLOC_PCPU.get_ptr_mut(0) {
        // SAFETY: pointer from a successful lookup of a live map value.
        unsafe {
            atomic_add(&raw mut (*rec).calls, 1);
            atomic_add(&raw mut (*rec).bytes, size);
        }
    }
    let tgid = ctx.tgid();
    let proc = match MALLOC_PROCS.get_ptr_mut(tgid) {
        Some(p) => p,
        None => {
            let fresh = MallocProcess {
                calls: 0,
                bytes: 0,
                comm: [0; 16],
            };
            // NOEXIST: if another thread of the process inserted first, keep its entry (and its
            // counts) and add to it below.
            let _ = MALLOC_PROCS.insert(tgid, fresh, u64::from(BPF_NOEXIST));
            MALLOC_PROCS.get_ptr_mut(tgid).ok_or(1u32)?
        }
    };
    // SAFETY: pointer from a successful lookup; threads of one process share the entry, so the
    // adds are atomic.
    unsafe {
        atomic_add(&raw mut (*proc).calls, 1);
        atomic_add(&raw mut (*proc).bytes, size);
    }
    // Refreshed on every call: a forked child's first mallocs happen under the parent's name,
    // and exec keeps the pid, so only the latest name is the right one. A reader may see a
    // torn name in the rare case two threads with different names race; counts are unaffected.
    if let Ok(comm) = ctx.command() {
        // SAFETY: pointer from a successful lookup; a plain 16-byte store.
        unsafe { (*proc).comm = comm };
    }
    Ok(0)
}
