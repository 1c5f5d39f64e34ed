//! exec tracing: one event per exec, successful or failed, with nothing lost uncounted.
//!
//! Design (why it is split this way):
//! - `sys_enter_execve(at)` counts the attempt per uid and parks a small [`ExecInflight`] (the
//!   entry-time facts and the caller's pointers) in `EXEC_INFLIGHT`, **keyed by thread id**.
//!   Keyed by tid because two threads of one process may exec at once: with a per-process key,
//!   thread B's exec, failed because thread A's succeeded and killed it, would carry A's event
//!   with B's return code.
//! - A **successful** exec is reported from `sched:sched_process_exec`, which runs only when the
//!   exec succeeded and names the caller's old tid (`old_pid`): after an exec from a non-leader
//!   thread the task already carries the leader's pid, so `sys_exit` could not find its entry by
//!   tid. Its filename comes from the tracepoint record (kernel memory, the path the kernel
//!   opened) and its arguments from the new image (`mm->arg_start..arg_end`, just written by the
//!   kernel), as Tetragon does: neither depends on whether the caller's strings were paged in.
//!   This also reports execs whose syscall entry was not seen (32-bit callers, which the
//!   `syscalls:` tracepoints skip; execs the kernel starts; execs begun before attach).
//! - A **failed** exec is reported from `sys_exit_execve(at)` with the return code. Its strings
//!   are read there, from the caller's pointers, in the caller's unchanged image (checked by
//!   comparing `current->mm` with the entry's): whatever the kernel read itself is paged in by
//!   then, and each string that still cannot be read is flagged (`FLAG_FILENAME_FAULT`,
//!   `FLAG_ARGS_FAULT`), never silently empty. Reading at exit rather than at entry also keeps
//!   the in-flight entry at 64 bytes instead of ~5 KiB, so the map can be preallocated.
//! - `EXEC_INFLIGHT` is preallocated (a hash map without preallocation, written from
//!   tracepoints, WARNs on 5.10–6.0 kernels and is refused on PREEMPT_RT) and bounded; an insert
//!   uses `BPF_NOEXIST` and every failure is counted in `EXEC_LOST`.
//! - Events are built in a per-CPU scratch map (~5 KiB, far over the 512-byte stack) and only
//!   the used length (header + used arguments) is sent.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_EXIST, BPF_F_CURRENT_CPU, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_task, bpf_ktime_get_boot_ns, bpf_perf_event_output,
            bpf_probe_read_kernel_str, bpf_probe_read_user_str, bpf_ringbuf_output,
        },
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, PerfEventArray, RingBuf},
    programs::TracePointContext,
};
use mapscope_common::{
    exec::{
        ARG_MAX_LEN, ARGS_BUDGET, ARGS_BUF, EXEC_COUNTERS, ExecConfig, ExecCounter, ExecEvent,
        ExecInflight, ExecSyscall, ExecTransport, FILENAME_LEN, FLAG_ARGS_FAULT,
        FLAG_ARGS_TRUNCATED, FLAG_FILENAME_FAULT, FLAG_FILENAME_TRUNCATED, FLAG_PPID_UNKNOWN,
        FLAG_SKIP, HEADER_LEN, MAX_ARGS,
    },
    pidns::PidNs,
};
use mapscope_ebpf::{counter::atomic_add, pidns};

mapscope_ebpf::pidns_global!();

/// Execs per uid, counted at syscall entry (attempts, successful or not), or at the exec for
/// successful ones whose entry was not seen.
#[map(name = "EXEC_UIDS")]
static EXEC_UIDS: HashMap<u32, u64> = HashMap::with_max_entries(10240, 0);

/// Default transport. User space may resize it at load time.
#[map(name = "EXEC_RING")]
static EXEC_RING: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Alternative transport for kernels or consumers that want per-CPU perf buffers.
#[map(name = "EXEC_PERF")]
static EXEC_PERF: PerfEventArray<ExecEvent> = PerfEventArray::new(0);

/// Per-CPU counters indexed by `ExecCounter`: every event not delivered, and why.
#[map(name = "EXEC_LOST")]
static EXEC_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(EXEC_COUNTERS, 0);

#[map(name = "EXEC_CONFIG")]
static EXEC_CONFIG: Array<ExecConfig> = Array::with_max_entries(1, 0);

#[map(name = "EXEC_SCRATCH")]
static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Execs between syscall entry and outcome, by tid. Preallocated (flags 0); user space sizes it
/// at load time for the execs a host really has in flight at once.
#[map(name = "EXEC_INFLIGHT")]
static EXEC_INFLIGHT: HashMap<u32, ExecInflight> = HashMap::with_max_entries(4096, 0);

// Offsets of the syscall arguments in the tracepoint record (see
// /sys/kernel/tracing/events/syscalls/sys_enter_execve*/format): after the 8-byte common header
// and the syscall number come the arguments, 8 bytes each, from offset 16.
const EXECVE_FILENAME: usize = 16;
const EXECVE_ARGV: usize = 24;
const EXECVEAT_FILENAME: usize = 24;
const EXECVEAT_ARGV: usize = 32;
/// `long ret` in sys_exit_* records.
const EXIT_RET: usize = 16;
/// `__data_loc char[] filename` (offset in the low 16 bits, length in the high 16) and
/// `pid_t old_pid` in sched_process_exec records, unchanged since the tracepoint appeared.
const SCHED_EXEC_FILENAME: usize = 8;
const SCHED_EXEC_OLD_PID: usize = 16;

const EEXIST: i32 = 17;

#[tracepoint]
pub fn exec_enter(ctx: TracePointContext) -> u32 {
    if let Err(c) = on_enter(&ctx, ExecSyscall::Execve, EXECVE_FILENAME, EXECVE_ARGV) {
        count(c);
    }
    0
}

#[tracepoint]
pub fn execat_enter(ctx: TracePointContext) -> u32 {
    if let Err(c) = on_enter(
        &ctx,
        ExecSyscall::Execveat,
        EXECVEAT_FILENAME,
        EXECVEAT_ARGV,
    ) {
        count(c);
    }
    0
}

#[tracepoint]
pub fn exec_done(ctx: TracePointContext) -> u32 {
    if let Err(c) = on_exec(&ctx) {
        count(c);
    }
    0
}

#[tracepoint]
pub fn exec_exit(ctx: TracePointContext) -> u32 {
    if let Err(c) = on_exit(&ctx) {
        count(c);
    }
    0
}

#[tracepoint]
pub fn execat_exit(ctx: TracePointContext) -> u32 {
    if let Err(c) = on_exit(&ctx) {
        count(c);
    }
    0
}

/// Parks the entry-time facts; an `Err` names the counter of the event that could not be.
fn on_enter(
    ctx: &TracePointContext,
    syscall: ExecSyscall,
    filename_off: usize,
    argv_off: usize,
) -> Result<(), ExecCounter> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let uid_gid = bpf_get_current_uid_gid();
    let uid = uid_gid as u32;
    count_uid(uid);

    let cfg = EXEC_CONFIG.get(0).ok_or(ExecCounter::LostRead)?;
    // SAFETY: offsets come from the tracepoint format; read_at bounds-checks via the helper.
    let filename_ptr: u64 =
        unsafe { ctx.read_at(filename_off) }.map_err(|_| ExecCounter::LostRead)?;
    // SAFETY: as above.
    let argv_ptr: u64 = unsafe { ctx.read_at(argv_off) }.map_err(|_| ExecCounter::LostRead)?;

    let mut entry = ExecInflight {
        // SAFETY: no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        filename_ptr,
        argv_ptr,
        mm: current_mm(cfg),
        uid,
        gid: (uid_gid >> 32) as u32,
        syscall: syscall as u32,
        ..ExecInflight::default()
    };
    // Filtered-out and out-of-namespace execs are tracked too (with FLAG_SKIP), so their
    // outcome is recognised and not mistaken for an exec whose entry was not seen.
    let ids = pidns::current_pid_tgid(MAPSCOPE_PIDNS.load());
    match ids {
        Some((pid, tgid)) if !(cfg.filter_uid_enabled != 0 && cfg.filter_uid != uid) => {
            entry.tid = pid;
            entry.pid = tgid;
            match parent_tgid(cfg) {
                Some(p) => entry.ppid = p,
                None => entry.flags |= FLAG_PPID_UNKNOWN,
            }
        }
        Some(_) => entry.flags |= FLAG_SKIP,
        None => {
            entry.flags |= FLAG_SKIP;
            if !(cfg.filter_uid_enabled != 0 && cfg.filter_uid != uid) {
                count(ExecCounter::OutsidePidns);
            }
        }
    }

    match EXEC_INFLIGHT.insert(tid, entry, BPF_NOEXIST as u64) {
        Ok(()) => Ok(()),
        Err(e) if e == -EEXIST => {
            // This thread's previous exec never reached an outcome we saw: its event is lost.
            if let Some(old) = EXEC_INFLIGHT.get_ptr(tid)
                // SAFETY: pointer from a successful lookup; only this thread uses its entry.
                && unsafe { (*old).flags } & FLAG_SKIP == 0
            {
                count(ExecCounter::LostInflightReplaced);
            }
            EXEC_INFLIGHT
                .insert(tid, entry, BPF_EXIST as u64)
                .map_err(|_| ExecCounter::LostInflightFull)
        }
        Err(_) if entry.flags & FLAG_SKIP != 0 => Ok(()),
        Err(_) => Err(ExecCounter::LostInflightFull),
    }
}

/// A successful exec (`sched_process_exec`): reports it with the kernel's filename and the new
/// image's arguments.
fn on_exec(ctx: &TracePointContext) -> Result<(), ExecCounter> {
    let cfg = EXEC_CONFIG.get(0).ok_or(ExecCounter::LostRead)?;
    // SAFETY: offset from the sched_process_exec format.
    let old_pid: u32 =
        unsafe { ctx.read_at(SCHED_EXEC_OLD_PID) }.map_err(|_| ExecCounter::LostRead)?;
    let ev = scratch()?;
    if let Some(entry) = EXEC_INFLIGHT.get_ptr(old_pid) {
        // SAFETY: pointer from a successful lookup; only this thread uses its entry.
        let entry = unsafe { &*entry };
        let skip = entry.flags & FLAG_SKIP != 0;
        if !skip {
            fill_from_entry(ev, entry);
        }
        let _ = EXEC_INFLIGHT.remove(old_pid);
        if skip {
            return Ok(());
        }
    } else {
        // Not seen at entry: count it now, and apply the same filters with today's ids.
        let uid_gid = bpf_get_current_uid_gid();
        let uid = uid_gid as u32;
        count_uid(uid);
        if cfg.filter_uid_enabled != 0 && cfg.filter_uid != uid {
            return Ok(());
        }
        let Some((_, tgid)) = pidns::current_pid_tgid(MAPSCOPE_PIDNS.load()) else {
            return Err(ExecCounter::OutsidePidns);
        };
        let h = &mut ev.hdr;
        // SAFETY: no preconditions.
        h.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
        h.pid = tgid;
        // The exec made the caller the process's only thread, under the process's id.
        h.tid = tgid;
        h.uid = uid;
        h.gid = (uid_gid >> 32) as u32;
        h.syscall = ExecSyscall::Unseen as u32;
        h.flags = 0;
        match parent_tgid(cfg) {
            Some(p) => h.ppid = p,
            None => {
                h.ppid = 0;
                h.flags |= FLAG_PPID_UNKNOWN;
            }
        }
    }
    ev.hdr.retval = 0;
    ev.hdr.comm = bpf_get_current_comm().unwrap_or([0; 16]);

    // SAFETY: offset from the sched_process_exec format.
    let loc: u32 = unsafe { ctx.read_at(SCHED_EXEC_FILENAME) }.unwrap_or(0);
    let (off, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
    // SAFETY: the source is inside the tracepoint record (kernel memory), read through the
    // checked helper; the destination is the event's own buffer with its exact length.
    let n = unsafe {
        bpf_probe_read_kernel_str(
            ev.hdr.filename.as_mut_ptr().cast(),
            FILENAME_LEN as u32,
            ctx.as_ptr().cast::<u8>().wrapping_add(off).cast(),
        )
    };
    if n <= 0 {
        ev.hdr.filename[0] = 0;
        ev.hdr.flags |= FLAG_FILENAME_FAULT;
    } else if len > FILENAME_LEN {
        ev.hdr.flags |= FLAG_FILENAME_TRUNCATED;
    }
    read_image_args(cfg, ev);
    send(ctx, ev)
}

/// A failed exec (`sys_exit_execve(at)` with a negative return): reports it with the caller's
/// strings. A successful exit finds nothing: `sched_process_exec` took its entry.
fn on_exit(ctx: &TracePointContext) -> Result<(), ExecCounter> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(entry) = EXEC_INFLIGHT.get_ptr(tid) else {
        return Ok(());
    };
    // SAFETY: pointer from a successful lookup; only this thread uses its entry. Copied (64
    // bytes) so the entry can be freed before the event is built.
    let entry = unsafe { *entry };
    let _ = EXEC_INFLIGHT.remove(tid);
    // SAFETY: offset from the sys_exit_* format.
    let ret = unsafe { ctx.read_at::<i64>(EXIT_RET) }.map_err(|_| ExecCounter::LostRead)?;
    if ret == 0 {
        return Err(ExecCounter::Stale);
    }
    if entry.flags & FLAG_SKIP != 0 {
        return Ok(());
    }
    let cfg = EXEC_CONFIG.get(0).ok_or(ExecCounter::LostRead)?;
    let ev = scratch()?;
    fill_from_entry(ev, &entry);
    ev.hdr.retval = ret as i32;
    ev.hdr.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // A failure after the point of no return leaves a new, half-built image: the caller's
    // pointers no longer mean anything there.
    if current_mm(cfg) != entry.mm {
        ev.hdr.filename[0] = 0;
        ev.hdr.flags |= FLAG_FILENAME_FAULT | FLAG_ARGS_FAULT;
        return send(ctx, ev);
    }
    // SAFETY: the destination is the event's own buffer with its exact length.
    let n = unsafe {
        bpf_probe_read_user_str(
            ev.hdr.filename.as_mut_ptr().cast(),
            FILENAME_LEN as u32,
            entry.filename_ptr as *const c_void,
        )
    };
    if n < 0 {
        ev.hdr.filename[0] = 0;
        ev.hdr.flags |= FLAG_FILENAME_FAULT;
    } else if n as usize >= FILENAME_LEN {
        ev.hdr.flags |= FLAG_FILENAME_TRUNCATED;
    }
    if entry.argv_ptr != 0 {
        read_args(ev, entry.argv_ptr as *const *const u8);
    }
    send(ctx, ev)
}

/// The per-CPU scratch event.
#[inline(always)]
fn scratch() -> Result<&'static mut ExecEvent, ExecCounter> {
    let ev = EXEC_SCRATCH.get_ptr_mut(0).ok_or(ExecCounter::LostRead)?;
    // SAFETY: per-CPU scratch value. Tracepoint programs run with preemption disabled (see
    // syscalls.rs) and the kernel does not nest tracing programs on one CPU, so nothing else
    // touches it while this program runs.
    Ok(unsafe { &mut *ev })
}

#[inline(always)]
fn fill_from_entry(ev: &mut ExecEvent, entry: &ExecInflight) {
    let h = &mut ev.hdr;
    h.ktime_ns = entry.ktime_ns;
    h.pid = entry.pid;
    h.tid = entry.tid;
    h.ppid = entry.ppid;
    h.uid = entry.uid;
    h.gid = entry.gid;
    h.syscall = entry.syscall;
    h.flags = entry.flags & FLAG_PPID_UNKNOWN;
    h.args_count = 0;
    h.args_len = 0;
}

/// Sends the header and the used part of the arguments.
#[inline(always)]
fn send(ctx: &TracePointContext, ev: &mut ExecEvent) -> Result<(), ExecCounter> {
    let mut used = ev.hdr.args_len as u64;
    if used > ARGS_BUF as u64 {
        used = ARGS_BUF as u64;
    }
    let size = HEADER_LEN as u64 + used;
    let data = core::ptr::from_mut(ev).cast::<c_void>();
    let transport = EXEC_CONFIG.get(0).map_or(0, |c| c.transport);
    // Both helpers are called directly: aya's wrappers send size_of::<T>() and, for perf,
    // discard the result. The map statics are repr(transparent) over their definitions.
    let rc = if transport == ExecTransport::PerfEventArray as u32 {
        // SAFETY: valid context and map; the source is a map value of at least `size` bytes.
        unsafe {
            bpf_perf_event_output(
                ctx.as_ptr(),
                core::ptr::from_ref(&EXEC_PERF).cast_mut().cast::<c_void>(),
                BPF_F_CURRENT_CPU,
                data,
                size,
            )
        }
    } else {
        // SAFETY: as above.
        unsafe {
            bpf_ringbuf_output(
                core::ptr::from_ref(&EXEC_RING).cast_mut().cast::<c_void>(),
                data,
                size,
                0,
            )
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ExecCounter::LostOutput)
    }
}

/// Copies the new image's argument block (`mm->arg_start..arg_end`: NUL-terminated strings the
/// kernel has just written) in one read, up to [`ARGS_BUDGET`] bytes.
#[inline(always)]
fn read_image_args(cfg: &ExecConfig, ev: &mut ExecEvent) {
    ev.hdr.args_len = 0;
    ev.hdr.args_count = 0;
    if cfg.image_offsets_valid == 0 {
        ev.hdr.flags |= FLAG_ARGS_FAULT;
        return;
    }
    let mm = current_mm(cfg) as *const u8;
    // SAFETY: kernel pointers followed through the checked helper.
    let range = unsafe {
        bpf_probe_read_kernel::<u64>(mm.wrapping_add(cfg.mm_arg_start_off as usize).cast())
            .and_then(|s| {
                bpf_probe_read_kernel::<u64>(mm.wrapping_add(cfg.mm_arg_end_off as usize).cast())
                    .map(|e| (s, e))
            })
    };
    let Ok((start, end)) = range else {
        ev.hdr.flags |= FLAG_ARGS_FAULT;
        return;
    };
    if end <= start {
        return;
    }
    let mut len = end - start;
    if len > ARGS_BUDGET as u64 {
        len = ARGS_BUDGET as u64;
        ev.hdr.flags |= FLAG_ARGS_TRUNCATED;
    }
    // SAFETY: user memory read through the checked helper into the event's own buffer; `len`
    // is at most ARGS_BUDGET < ARGS_BUF.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            ev.args.as_mut_ptr().cast(),
            len as u32,
            start as *const c_void,
        )
    };
    if rc < 0 {
        ev.hdr.flags |= FLAG_ARGS_FAULT;
        return;
    }
    ev.hdr.args_len = len as u32;
}

/// Copies up to [`MAX_ARGS`] arguments, NUL-terminated and back to back, within [`ARGS_BUDGET`].
///
/// The running offset lives in the map value (`args_len`) and is re-read each iteration, as
/// libbpf-tools' execsnoop does: a value loaded from memory has no tracked range, so every
/// iteration looks the same to the verifier and its states are pruned instead of multiplying
/// (this cut load time severalfold). The bounds check plus mask then re-establish the range.
#[inline(always)]
fn read_args(ev: &mut ExecEvent, argv: *const *const u8) {
    let mut i: usize = 0;
    while i < MAX_ARGS as usize {
        // SAFETY: a user pointer read through the checked helper.
        let arg = match unsafe { bpf_probe_read_user(argv.wrapping_add(i)) } {
            Ok(p) => p,
            Err(_) => {
                ev.hdr.flags |= FLAG_ARGS_FAULT;
                return;
            }
        };
        if arg.is_null() {
            return;
        }
        // SAFETY: reading a field of our own map value; volatile only to drop range tracking.
        let off = unsafe { core::ptr::read_volatile(&ev.hdr.args_len) } as usize;
        if off >= ARGS_BUDGET {
            ev.hdr.flags |= FLAG_ARGS_TRUNCATED;
            return;
        }
        // The mask is a no-op (off < ARGS_BUDGET, a power of two) that lets the verifier prove
        // [start, start + ARG_MAX_LEN) lies inside the ARGS_BUDGET + ARG_MAX_LEN buffer.
        let start = off & (ARGS_BUDGET - 1);
        // SAFETY: the destination range is inside `ev.args`, as argued above.
        let n = unsafe {
            bpf_probe_read_user_str(
                ev.args.as_mut_ptr().wrapping_add(start).cast(),
                ARG_MAX_LEN as u32,
                arg.cast(),
            )
        };
        if n < 0 {
            ev.hdr.flags |= FLAG_ARGS_FAULT;
            return;
        }
        if n as usize >= ARG_MAX_LEN {
            ev.hdr.flags |= FLAG_ARGS_TRUNCATED;
        }
        // An empty argument still takes its NUL.
        ev.hdr.args_len = (start + (n as usize).max(1)) as u32;
        ev.hdr.args_count += 1;
        i += 1;
    }
    // SAFETY: as above.
    if let Ok(next) = unsafe { bpf_probe_read_user(argv.wrapping_add(i)) }
        && !next.is_null()
    {
        ev.hdr.flags |= FLAG_ARGS_TRUNCATED;
    }
}

/// `current->mm`, or 0 when the offsets are unknown.
#[inline(always)]
fn current_mm(cfg: &ExecConfig) -> u64 {
    if cfg.image_offsets_valid == 0 {
        return 0;
    }
    // SAFETY: bpf_get_current_task has no preconditions; the read goes through the checked
    // helper.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        bpf_probe_read_kernel::<u64>(task.wrapping_add(cfg.task_mm_off as usize).cast())
            .unwrap_or(0)
    }
}

/// The parent's tgid as mapscope's pid namespace numbers it: what getppid() returns there.
///
/// Without kprobes or fentry (absent or EPERM on our kernels) and with aya unable to emit CO-RE
/// relocations from Rust, struct offsets are looked up by user space in the running kernel's
/// BTF and passed in `EXEC_CONFIG`; pointers are then followed with `bpf_probe_read_kernel`,
/// which is safe even if an offset were wrong. Reading it here, at the exec, is race-free,
/// unlike /proc/PID/stat in user space after the process may have exited.
///
/// Outside the initial namespace the parent's `struct pid` is read at the level of mapscope's
/// namespace (that of the current task's own `struct pid`, the task being in it):
/// `numbers[level]` if it belongs to mapscope's namespace. A parent above the namespace (the
/// container's init's parent) is 0, as getppid() says there.
#[inline(always)]
fn parent_tgid(cfg: &ExecConfig) -> Option<u32> {
    if cfg.offsets_valid == 0 {
        return None;
    }
    let ns: PidNs = MAPSCOPE_PIDNS.load();
    // SAFETY: bpf_get_current_task has no preconditions; every dereference goes through
    // bpf_probe_read_kernel, which fails cleanly on a bad address.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let parent: *const u8 =
            bpf_probe_read_kernel(task.wrapping_add(cfg.real_parent_off as usize).cast()).ok()?;
        if ns.is_initial() {
            let tgid: i32 =
                bpf_probe_read_kernel(parent.wrapping_add(cfg.tgid_off as usize).cast()).ok()?;
            return Some(tgid as u32);
        }
        if cfg.pidns_offsets_valid == 0 {
            return None;
        }
        // The current task is in mapscope's namespace exactly (its pid was translated), so
        // its own struct pid's level is the namespace's level.
        let own_pid: *const u8 =
            bpf_probe_read_kernel(task.wrapping_add(cfg.thread_pid_off as usize).cast()).ok()?;
        let ns_level: u32 =
            bpf_probe_read_kernel(own_pid.wrapping_add(cfg.pid_level_off as usize).cast()).ok()?;
        let leader: *const u8 =
            bpf_probe_read_kernel(parent.wrapping_add(cfg.group_leader_off as usize).cast())
                .ok()?;
        let pid: *const u8 =
            bpf_probe_read_kernel(leader.wrapping_add(cfg.thread_pid_off as usize).cast()).ok()?;
        let level: u32 =
            bpf_probe_read_kernel(pid.wrapping_add(cfg.pid_level_off as usize).cast()).ok()?;
        if ns_level > 32 {
            return None; // MAX_PID_NS_LEVEL: a wrong offset, not a namespace
        }
        if level < ns_level {
            return Some(0);
        }
        // struct upid { int nr; struct pid_namespace *ns; }: 16 bytes.
        let upid = pid
            .wrapping_add(cfg.pid_numbers_off as usize)
            .wrapping_add(16 * ns_level as usize);
        let nr: i32 = bpf_probe_read_kernel(upid.cast()).ok()?;
        let upid_ns: *const u8 = bpf_probe_read_kernel(upid.wrapping_add(8).cast()).ok()?;
        let inum: u32 =
            bpf_probe_read_kernel(upid_ns.wrapping_add(cfg.pidns_inum_off as usize).cast()).ok()?;
        (u64::from(inum) == ns.ino).then_some(nr as u32)
    }
}

fn count_uid(uid: u32) {
    if let Some(c) = EXEC_UIDS.get_ptr_mut(uid) {
        // SAFETY: pointer from a successful lookup into a live map value.
        unsafe { atomic_add(c, 1) };
        return;
    }
    if EXEC_UIDS.insert(uid, 1, BPF_NOEXIST as u64).is_err() {
        // Another CPU inserted this uid first: add to its entry instead.
        if let Some(c) = EXEC_UIDS.get_ptr_mut(uid) {
            // SAFETY: as above.
            unsafe { atomic_add(c, 1) };
        }
    }
}

fn count(c: ExecCounter) {
    if let Some(v) = EXEC_LOST.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        unsafe { *v += 1 };
    }
}

mapscope_ebpf::license!();
