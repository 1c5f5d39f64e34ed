//! A uprobe on libc `malloc`: calls and requested bytes per CPU and per process, and, when user
//! space enables stacks at load time, per (process, user stack) with the stack in a `StackTrace`
//! map. Failed stack captures are counted by cause, never dropped silently.
//!
//! Updates are locked adds even on the per-CPU value: uprobe programs run with migration
//! disabled but stay preemptible on PREEMPT kernels, so two tasks on one CPU could interleave a
//! plain read-modify-write. The per-CPU line is never shared, so the lock costs no contention.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::bpf_probe_read_user,
    macros::{map, uprobe},
    maps::{HashMap, LruHashMap, PerCpuArray, StackTrace},
    programs::{ProbeContext, tracing::StackIdContext as _},
};
use mapscope_common::malloc::{
    MAX_PROCESSES, MallocProcess, MallocRecord, OUTSIDE_PIDNS, STACK_ERRORS, StackError, StackKey,
};
use mapscope_ebpf::{counter::atomic_add, pidns};

/// One record per CPU.
#[map(name = "MALLOC_PCPU")]
static MALLOC_PCPU: PerCpuArray<MallocRecord> = PerCpuArray::with_max_entries(1, 0);

/// One record per process (tgid in mapscope's pid namespace; 0 for every task outside it),
/// bounded; LRU evicts the least recently active process.
#[map(name = "MALLOC_PROCS")]
static MALLOC_PROCS: LruHashMap<u32, MallocProcess> =
    LruHashMap::with_max_entries(MAX_PROCESSES, 0);

/// User stacks; user space sizes it at load time (one slot when stacks are off).
#[map(name = "MALLOC_STACKS")]
static MALLOC_STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

/// Calls and bytes per (process, stack, caller); sized by user space; a plain hash, so a full
/// map refuses new keys (counted) instead of silently evicting counts.
#[map(name = "MALLOC_STK_CNT")]
static MALLOC_STK_CNT: HashMap<StackKey, MallocRecord> = HashMap::with_max_entries(1, 0);

/// Failed stack captures by `StackError`.
#[map(name = "MALLOC_STK_ERR")]
static MALLOC_STK_ERR: PerCpuArray<u64> = PerCpuArray::with_max_entries(STACK_ERRORS, 0);

/// Nonzero: record stacks. Set at load time, so with stacks off the verifier drops that code.
#[unsafe(no_mangle)]
static MALLOC_STACKS_ON: Global<u32> = Global::new(0);

const EEXIST: i32 = 17;
const EFAULT: i32 = 14;
const ENOMEM: i32 = 12;

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
    let tgid = pidns::current_tgid(MAPSCOPE_PIDNS.load()).unwrap_or(OUTSIDE_PIDNS);
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
    if MALLOC_STACKS_ON.load() != 0 {
        record_stack(ctx, tgid, size);
    }
    Ok(0)
}

/// Counts this call under (process, user stack, caller).
#[inline(always)]
fn record_stack(ctx: &ProbeContext, tgid: u32, size: u64) {
    let stack_id = match ctx.get_stackid(&MALLOC_STACKS, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => id as u32,
        Err(e) => {
            failed(match -e {
                EEXIST => StackError::Collision,
                EFAULT => StackError::Unreadable,
                ENOMEM => StackError::StackMapFull,
                _ => StackError::Other,
            });
            return;
        }
    };
    // At malloc's first instruction the return address is the word at the stack pointer.
    // SAFETY: `regs` is the probe's pt_regs (the program's context, readable directly); the
    // user read goes through bpf_probe_read_user and fails cleanly.
    let caller =
        unsafe { bpf_probe_read_user((*ctx.regs).rsp as *const u64) }.unwrap_or_else(|_| {
            failed(StackError::CallerUnreadable);
            0
        });
    let key = StackKey {
        tgid,
        stack_id,
        caller,
    };
    if let Some(rec) = MALLOC_STK_CNT.get_ptr_mut(key) {
        add(rec, size);
        return;
    }
    let fresh = MallocRecord {
        calls: 1,
        bytes: size,
    };
    if MALLOC_STK_CNT
        .insert(key, fresh, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        return;
    }
    // Another thread of the process inserted the key first: add to its entry. Anything else is
    // a full map.
    match MALLOC_STK_CNT.get_ptr_mut(key) {
        Some(rec) => add(rec, size),
        None => failed(StackError::CountsFull),
    }
}

/// One more call of `size` bytes on a shared record.
#[inline(always)]
fn add(rec: *mut MallocRecord, size: u64) {
    // SAFETY: pointer from a successful lookup of a live map value; threads share it, so the
    // adds are atomic.
    unsafe {
        atomic_add(&raw mut (*rec).calls, 1);
        atomic_add(&raw mut (*rec).bytes, size);
    }
}

/// Counts one failed stack capture.
#[inline(always)]
fn failed(why: StackError) {
    if let Some(v) = MALLOC_STK_ERR.get_ptr_mut(why as u32) {
        // SAFETY: this CPU's slot of a live map value; locked like the other per-CPU adds here
        // (see the module comment).
        unsafe { atomic_add(v, 1) };
    }
}

mapscope_ebpf::pidns_global!();
mapscope_ebpf::license!();
