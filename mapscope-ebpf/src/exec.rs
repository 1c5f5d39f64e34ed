//! exec tracing: `sys_enter_execve(at)` counts the exec per uid and captures the event;
//! `sys_exit_execve(at)` adds the return code and the new comm and sends it to user space
//! through the ring buffer (default) or the perf event array.
//!
//! The event (~5 KiB) never touches the 512-byte stack: it is built in a per-CPU scratch map
//! and parked in a hash map keyed by tgid between entry and exit. Keyed by tgid rather than tid
//! because an exec from a non-leader thread returns as the leader (de_thread takes its pid).
#![no_std]
#![no_main]

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_CURRENT_CPU, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_task, bpf_ktime_get_ns, bpf_perf_event_output, bpf_probe_read_user_str,
        },
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, PerfEventArray, RingBuf},
    programs::TracePointContext,
};
use mapscope_common::exec::{
    ARG_MAX_LEN, ARGS_BUDGET, ExecConfig, ExecEvent, ExecSyscall, ExecTransport, FILENAME_LEN,
    FLAG_ARGS_FAULT, FLAG_ARGS_TRUNCATED, FLAG_FILENAME_TRUNCATED, FLAG_PPID_UNKNOWN, MAX_ARGS,
};
use mapscope_ebpf::counter::atomic_add;

/// Execs per uid, counted at syscall entry (attempts, successful or not).
#[map(name = "EXEC_UIDS")]
static EXEC_UIDS: HashMap<u32, u64> = HashMap::with_max_entries(10240, 0);

/// Default transport. User space may resize it at load time.
#[map(name = "EXEC_RING")]
static EXEC_RING: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Alternative transport for kernels or consumers that want per-CPU perf buffers.
#[map(name = "EXEC_PERF")]
static EXEC_PERF: PerfEventArray<ExecEvent> = PerfEventArray::new(0);

/// Events that could not be delivered, per CPU: never dropped silently.
#[map(name = "EXEC_LOST")]
static EXEC_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "EXEC_CONFIG")]
static EXEC_CONFIG: Array<ExecConfig> = Array::with_max_entries(1, 0);

#[map(name = "EXEC_SCRATCH")]
static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Not preallocated: memory is used only by execs actually in flight.
#[map(name = "EXEC_INFLIGHT")]
static EXEC_INFLIGHT: HashMap<u32, ExecEvent> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

// Offsets of the syscall arguments in the tracepoint record (see
// /sys/kernel/tracing/events/syscalls/sys_enter_execve*/format): after the 8-byte common header
// and the syscall number come the arguments, 8 bytes each, from offset 16.
const EXECVE_FILENAME: usize = 16;
const EXECVE_ARGV: usize = 24;
const EXECVEAT_FILENAME: usize = 24;
const EXECVEAT_ARGV: usize = 32;
/// `long ret` in sys_exit_* records.
const EXIT_RET: usize = 16;

#[tracepoint]
pub fn exec_enter(ctx: TracePointContext) -> u32 {
    if on_enter(&ctx, ExecSyscall::Execve, EXECVE_FILENAME, EXECVE_ARGV).is_err() {
        count_lost();
    }
    0
}

#[tracepoint]
pub fn execat_enter(ctx: TracePointContext) -> u32 {
    let _ = on_enter(
        &ctx,
        ExecSyscall::Execveat,
        EXECVEAT_FILENAME,
        EXECVEAT_ARGV,
    );
    0
}

#[tracepoint]
pub fn exec_exit(ctx: TracePointContext) -> u32 {
    on_exit(&ctx);
    0
}

#[tracepoint]
pub fn execat_exit(ctx: TracePointContext) -> u32 {
    on_exit(&ctx);
    0
}

/// Captures the event; an `Err` (a failed read of the tracepoint record or a missing map entry)
/// means it could not be, and the caller counts it as lost.
fn on_enter(
    ctx: &TracePointContext,
    syscall: ExecSyscall,
    filename_off: usize,
    argv_off: usize,
) -> Result<(), i64> {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let uid_gid = bpf_get_current_uid_gid();
    let uid = uid_gid as u32;
    count_uid(uid);

    let cfg = EXEC_CONFIG.get(0).ok_or(0i64)?;
    if cfg.filter_uid_enabled != 0 && cfg.filter_uid != uid {
        return Ok(());
    }
    let ev = EXEC_SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: per-CPU scratch value. Syscall tracepoint programs run with preemption disabled
    // (see syscalls.rs) and don't nest on one CPU, so no other exec can touch it meanwhile.
    let ev = unsafe { &mut *ev };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    ev.ktime_ns = unsafe { bpf_ktime_get_ns() };
    ev.pid = tgid;
    ev.tid = id as u32;
    ev.uid = uid;
    ev.gid = (uid_gid >> 32) as u32;
    ev.retval = 0;
    ev.syscall = syscall as u32;
    ev.flags = 0;
    ev.args_count = 0;
    ev.args_len = 0;
    ev.comm = [0; 16];
    ev.ppid = match parent_tgid(cfg) {
        Some(p) => p,
        None => {
            ev.flags |= FLAG_PPID_UNKNOWN;
            0
        }
    };

    // SAFETY: offsets come from the tracepoint format; read_at bounds-checks via the helper.
    let filename: *const u8 = unsafe { ctx.read_at(filename_off) }.map_err(i64::from)?;
    // SAFETY: the destination is the map value's own buffer with its exact length.
    let n = unsafe {
        bpf_probe_read_user_str(
            ev.filename.as_mut_ptr().cast(),
            FILENAME_LEN as u32,
            filename.cast(),
        )
    };
    if n < 0 {
        ev.filename[0] = 0;
    } else if n as usize >= FILENAME_LEN {
        ev.flags |= FLAG_FILENAME_TRUNCATED;
    }

    // SAFETY: as above.
    let argv: *const *const u8 = unsafe { ctx.read_at(argv_off) }.map_err(i64::from)?;
    read_args(ev, argv);

    // Two threads of one process exec'ing at once share the tgid key: the later one replaces
    // the earlier, whose event is then counted as lost rather than vanishing.
    if EXEC_INFLIGHT.get_ptr(tgid).is_some() {
        count_lost();
    }
    if park(tgid, ev).is_err() {
        count_lost();
    }
    Ok(())
}

/// Copies the event from scratch into the in-flight map. It is passed by reference on purpose:
/// by value, the ~5 KiB event would be copied onto the 512-byte stack.
#[inline(always)]
fn park(tgid: u32, ev: &ExecEvent) -> Result<(), i32> {
    EXEC_INFLIGHT.insert(tgid, ev, 0)
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
                ev.flags |= FLAG_ARGS_FAULT;
                return;
            }
        };
        if arg.is_null() {
            return;
        }
        // SAFETY: reading a field of our own map value; volatile only to drop range tracking.
        let off = unsafe { core::ptr::read_volatile(&ev.args_len) } as usize;
        if off >= ARGS_BUDGET {
            ev.flags |= FLAG_ARGS_TRUNCATED;
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
            ev.flags |= FLAG_ARGS_FAULT;
            return;
        }
        if n as usize >= ARG_MAX_LEN {
            ev.flags |= FLAG_ARGS_TRUNCATED;
        }
        // An empty argument still takes its NUL.
        ev.args_len = (start + (n as usize).max(1)) as u32;
        ev.args_count += 1;
        i += 1;
    }
    // SAFETY: as above.
    if let Ok(next) = unsafe { bpf_probe_read_user(argv.wrapping_add(i)) }
        && !next.is_null()
    {
        ev.flags |= FLAG_ARGS_TRUNCATED;
    }
}

/// The parent's tgid: `current->real_parent->tgid`, what getppid() returns.
///
/// Without kprobes or fentry (absent or EPERM on our kernels) and with aya unable to emit CO-RE
/// relocations from Rust, the offsets of `real_parent` and `tgid` are looked up by user space
/// in the running kernel's BTF and passed in `EXEC_CONFIG`; the pointers are then followed with
/// `bpf_probe_read_kernel`, which is safe even if an offset were wrong. Reading it here, at the
/// exec, is race-free, unlike /proc/PID/stat in user space after the process may have exited.
#[inline(always)]
fn parent_tgid(cfg: &ExecConfig) -> Option<u32> {
    if cfg.offsets_valid == 0 {
        return None;
    }
    // SAFETY: bpf_get_current_task has no preconditions; every dereference goes through
    // bpf_probe_read_kernel, which fails cleanly on a bad address.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let parent: *const u8 =
            bpf_probe_read_kernel(task.wrapping_add(cfg.real_parent_off as usize).cast()).ok()?;
        let tgid: i32 =
            bpf_probe_read_kernel(parent.wrapping_add(cfg.tgid_off as usize).cast()).ok()?;
        Some(tgid as u32)
    }
}

fn on_exit(ctx: &TracePointContext) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(ev) = EXEC_INFLIGHT.get_ptr_mut(tgid) else {
        return;
    };
    // SAFETY: pointer from a successful lookup; only this task touches its own entry.
    let ev = unsafe { &mut *ev };
    // SAFETY: offset from the sys_exit_* format.
    ev.retval = unsafe { ctx.read_at::<i64>(EXIT_RET) }.unwrap_or(0) as i32;
    if let Ok(comm) = bpf_get_current_comm() {
        ev.comm = comm;
    }
    let transport = EXEC_CONFIG.get(0).map_or(0, |c| c.transport);
    let sent = if transport == ExecTransport::PerfEventArray as u32 {
        // PerfEventArray::output discards the helper's result, so call it directly to count
        // failures. The map static is repr(transparent) over its definition.
        // SAFETY: valid context, map and a map-value source of the stated size.
        unsafe {
            bpf_perf_event_output(
                ctx.as_ptr(),
                core::ptr::from_ref(&EXEC_PERF).cast_mut().cast::<c_void>(),
                BPF_F_CURRENT_CPU,
                core::ptr::from_mut(ev).cast(),
                size_of::<ExecEvent>() as u64,
            ) == 0
        }
    } else {
        EXEC_RING.output::<ExecEvent>(&*ev, 0).is_ok()
    };
    if !sent {
        count_lost();
    }
    let _ = EXEC_INFLIGHT.remove(tgid);
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

fn count_lost() {
    if let Some(c) = EXEC_LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

mapscope_ebpf::license!();
