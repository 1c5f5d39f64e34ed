//! Syscall counting through tail calls (learning-ebpf chapter 2): `sc_dispatch` runs on every
//! `sys_enter`, applies the user-space filter and jumps through `SC_DISPATCH` by syscall number
//! to a per-syscall program. The handlers count; the dispatcher only counts what went wrong.
//!
//! 32-bit (ia32 compat) syscalls arrive on the same `sys_enter` with i386 numbers: the dispatcher
//! recognises them by the task's `TS_COMPAT` status bit (what the kernel's `in_ia32_syscall()`
//! tests) and counts them in their own table, `SC_COMPAT`, never as x86_64 numbers.
//!
//! The hot path makes one helper call before its tail call: `bpf_get_current_task_btf`; the
//! task's tgid and `TS_COMPAT` bit are then plain BTF-checked loads at offsets user space takes
//! from kernel BTF, instead of `bpf_get_current_pid_tgid` + `bpf_get_current_task` +
//! `bpf_probe_read_kernel` (three calls, with every kernel return behind a return thunk on the
//! machines measured: 157 → 90 ns per syscall, see scripts/bench/HISTORY.md).
//!
//! Per-CPU maps are updated with plain adds: BPF programs on the syscall tracepoints run with
//! preemption disabled (even since syscall tracepoints became faultable in 6.x, the kernel wraps
//! perf and BPF syscall probes in `guard(preempt_notrace)`, because per-CPU data needs it), and
//! the kernel does not nest one program on a CPU, so nothing else touches this CPU's slot.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel},
    macros::{map, raw_tracepoint},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::RawTracePointContext,
};
use mapscope_common::syscalls::{
    DISPATCH_STATS, DispatchStat, FILTER_COMM, FILTER_TGID, Filter, HANDLED_SLOTS, Handled,
    HandlerRecord, OFFSET_UNKNOWN, SYSCALL_SLOTS, TS_COMPAT,
};
use mapscope_ebpf::pidns;

/// Jump table indexed by syscall number; filled by user space, which must keep an fd to it open
/// (the kernel empties a program array when its last user reference goes away).
#[map(name = "SC_DISPATCH")]
static SC_DISPATCH: ProgramArray = ProgramArray::with_max_entries(SYSCALL_SLOTS, 0);

/// Calls per syscall number, per CPU.
#[map(name = "SC_COUNTS")]
static SC_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(SYSCALL_SLOTS, 0);

/// The dedicated handlers' own counters, indexed by `Handled`.
#[map(name = "SC_HANDLED")]
static SC_HANDLED: PerCpuArray<HandlerRecord> = PerCpuArray::with_max_entries(HANDLED_SLOTS, 0);

/// Dispatch failures, indexed by `DispatchStat`.
#[map(name = "SC_STATS")]
static SC_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DISPATCH_STATS, 0);

/// Which tasks to count; one entry, rewritten by user space whenever it likes.
#[map(name = "SC_FILTER")]
static SC_FILTER: Array<Filter> = Array::with_max_entries(1, 0);

/// Calls per i386 syscall number made by 32-bit (compat) tasks, per CPU.
#[map(name = "SC_COMPAT")]
static SC_COMPAT: PerCpuArray<u64> = PerCpuArray::with_max_entries(SYSCALL_SLOTS, 0);

/// Byte offset of `thread_info.status` in `task_struct`, from the running kernel's BTF, set at
/// load time; `OFFSET_UNKNOWN` when it could not be found (compat syscalls are then not told
/// apart, and user space says so). Read-only: the verifier sees a constant, checks the load at
/// that offset against BTF, and prunes the branch not taken.
#[unsafe(no_mangle)]
static SC_TASK_STATUS_OFF: Global<u32> = Global::new(OFFSET_UNKNOWN);

/// Byte offset of `task_struct.tgid`, from kernel BTF, set at load time; `OFFSET_UNKNOWN` falls
/// back to `bpf_get_current_pid_tgid` (one helper call more per syscall).
#[unsafe(no_mangle)]
static SC_TASK_TGID_OFF: Global<u32> = Global::new(OFFSET_UNKNOWN);

/// The current task as a BTF pointer: loads through it need no helper call.
type Task = *const u8;

/// O_CREAT on x86_64 (and every other architecture but alpha/parisc/sparc/mips).
const O_CREAT: u64 = 0o100;

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sc_dispatch(ctx: RawTracePointContext) -> u32 {
    match try_dispatch(&ctx) {
        Ok(r) => r,
        Err(r) => r,
    }
}

fn try_dispatch(ctx: &RawTracePointContext) -> Result<u32, u32> {
    // SAFETY: helper without arguments; never NULL for the running task.
    let task: Task = unsafe { bpf_get_current_task_btf() }
        .cast::<u8>()
        .cast_const();
    if !wanted(ctx, task) {
        return Ok(0);
    }
    if in_compat_syscall(task) {
        // i386 numbers: the handlers behind the jump table read x86_64 numbers and registers.
        match slot(ctx) {
            Some(slot) => bump(&SC_COMPAT, slot),
            None => bump(&SC_STATS, DispatchStat::CompatOutOfRange as u32),
        }
        return Ok(0);
    }
    let Some(slot) = slot(ctx) else {
        bump(&SC_STATS, DispatchStat::OutOfRange as u32);
        return Err(1);
    };
    // SAFETY: the context is the one this program was called with; on success control never
    // returns here, on failure nothing was changed.
    unsafe { SC_DISPATCH.tail_call(ctx, slot) };
    bump(&SC_STATS, DispatchStat::TailCallFailed as u32);
    Err(1)
}

/// Whether the current task passes the user-space filter. No filter entry means count all.
#[inline(always)]
fn wanted(ctx: &RawTracePointContext, task: Task) -> bool {
    let Some(filter) = SC_FILTER.get(0) else {
        return true;
    };
    // In mapscope's pid namespace: `None` for a task outside it, which no pid can name.
    let tgid = current_tgid(task);
    if filter.exclude_tgid != 0 && tgid == Some(filter.exclude_tgid) {
        return false;
    }
    if filter.flags & FILTER_TGID != 0 && tgid != Some(filter.tgid) {
        return false;
    }
    if filter.flags & FILTER_COMM != 0 {
        let Ok(comm) = ctx.command() else {
            return false;
        };
        // Two u64 compares instead of a 16-step byte loop: fewer instructions to verify.
        let (a, b) = (u128::from_ne_bytes(comm), u128::from_ne_bytes(filter.comm));
        if a as u64 != b as u64 || (a >> 64) as u64 != (b >> 64) as u64 {
            return false;
        }
    }
    true
}

/// The current task's tgid in mapscope's pid namespace (`pidns::current_tgid`): in the initial
/// namespace a load of `task->tgid` (what `bpf_get_current_pid_tgid` returns in its high half),
/// elsewhere the namespace helper.
#[inline(always)]
fn current_tgid(task: Task) -> Option<u32> {
    let ns = MAPSCOPE_PIDNS.load();
    let off = SC_TASK_TGID_OFF.load();
    if ns.is_initial() && off != OFFSET_UNKNOWN {
        return Some(task_u32(task, off));
    }
    pidns::current_tgid(ns)
}

/// Whether the current syscall is a 32-bit one (int 0x80, sysenter, or a compat task's
/// syscall): `current->thread_info.status & TS_COMPAT`, as the kernel's `in_ia32_syscall()`.
#[inline(always)]
fn in_compat_syscall(task: Task) -> bool {
    let off = SC_TASK_STATUS_OFF.load();
    if off == OFFSET_UNKNOWN {
        return false;
    }
    task_u32(task, off) & TS_COMPAT != 0
}

/// The `u32` field at byte `off` of the current task. `off` is a load-time constant the
/// verifier checks against `task_struct`'s BTF (a u32-sized member there, or no load).
#[inline(always)]
fn task_u32(task: Task, off: u32) -> u32 {
    // SAFETY: `task` is the running task (a trusted BTF pointer); the verifier turns the load
    // into a fault-safe one and rejects an offset that is not a 4-byte member of task_struct.
    unsafe { core::ptr::read_volatile(task.wrapping_add(off as usize).cast::<u32>()) }
}

/// The syscall number as a table index, if it is inside the table.
#[inline(always)]
fn slot(ctx: &RawTracePointContext) -> Option<u32> {
    let nr: i64 = ctx.arg(1);
    (0..i64::from(SYSCALL_SLOTS))
        .contains(&nr)
        .then_some(nr as u32)
}

/// Adds one to a per-CPU `u64` counter.
#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(v) = map.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a live map value; see the module comment on per-CPU adds.
        unsafe { *v += 1 };
    }
}

/// Counts the syscall in `SC_COUNTS`: the common work of every handler.
#[inline(always)]
fn count(ctx: &RawTracePointContext) -> Result<u64, u32> {
    let nr: i64 = ctx.arg(1);
    let slot = u32::try_from(nr).map_err(|_| 1u32)?;
    bump(&SC_COUNTS, slot);
    Ok(nr as u64)
}

/// Counts a call of a dedicated handler's syscall and adds `detail` to its second counter.
#[inline(always)]
fn handled(nr: u64, detail: u64) -> Result<u32, u32> {
    let which = Handled::from_nr(nr).ok_or(1u32)?;
    if let Some(rec) = SC_HANDLED.get_ptr_mut(which as u32) {
        // SAFETY: per-CPU map value from a successful lookup; see the module comment.
        unsafe {
            (*rec).calls += 1;
            (*rec).detail += detail;
        }
    }
    Ok(0)
}

/// Syscall argument `n` (0, 1 or 2; 2 for anything larger, the handlers need no more) from the
/// saved user registers, x86_64 calling convention.
#[inline(always)]
fn syscall_arg(ctx: &RawTracePointContext, n: usize) -> Result<u64, u32> {
    let regs: *const pt_regs = ctx.arg(0);
    // SAFETY: `regs` is the kernel's pt_regs for this syscall (sys_enter's first argument); the
    // read goes through bpf_probe_read_kernel, so a bad pointer yields an error, not a fault.
    let value = unsafe {
        match n {
            0 => bpf_probe_read_kernel(&raw const (*regs).rdi),
            1 => bpf_probe_read_kernel(&raw const (*regs).rsi),
            _ => bpf_probe_read_kernel(&raw const (*regs).rdx),
        }
    };
    value.map_err(|_| 1u32)
}

/// Every syscall without a dedicated handler lands here.
#[raw_tracepoint]
pub fn sc_default(ctx: RawTracePointContext) -> u32 {
    match count(&ctx) {
        Ok(_) => 0,
        Err(r) => r,
    }
}

/// execve and execveat, the seed's "Executing a program".
#[raw_tracepoint]
pub fn sc_execve(ctx: RawTracePointContext) -> u32 {
    match count(&ctx).and_then(|nr| handled(nr, 0)) {
        Ok(r) => r,
        Err(r) => r,
    }
}

/// The timer family (timer_create 222 … timer_delete 226): one program, the syscall number
/// picks the counter, as the seed's `hello_timer` tells create from delete.
#[raw_tracepoint]
pub fn sc_timer(ctx: RawTracePointContext) -> u32 {
    match count(&ctx).and_then(|nr| handled(nr, 0)) {
        Ok(r) => r,
        Err(r) => r,
    }
}

/// open and openat; the second counter is how many asked for O_CREAT.
#[raw_tracepoint]
pub fn sc_open(ctx: RawTracePointContext) -> u32 {
    match try_open(&ctx) {
        Ok(r) => r,
        Err(r) => r,
    }
}

fn try_open(ctx: &RawTracePointContext) -> Result<u32, u32> {
    let nr = count(ctx)?;
    // open(path, flags, mode) vs openat(dirfd, path, flags, mode).
    let flags_arg = if nr == Handled::Open.nr() as u64 {
        1
    } else {
        2
    };
    let flags = syscall_arg(ctx, flags_arg).unwrap_or(0);
    handled(nr, u64::from(flags & O_CREAT != 0))
}

/// read and write; the second counter sums the byte counts asked for (the third argument),
/// which is what the caller requested, not what the kernel transferred.
#[raw_tracepoint]
pub fn sc_rw(ctx: RawTracePointContext) -> u32 {
    match try_rw(&ctx) {
        Ok(r) => r,
        Err(r) => r,
    }
}

fn try_rw(ctx: &RawTracePointContext) -> Result<u32, u32> {
    let nr = count(ctx)?;
    let requested = syscall_arg(ctx, 2).unwrap_or(0);
    handled(nr, requested)
}

mapscope_ebpf::pidns_global!();
mapscope_ebpf::license!();
