//! Syscall counting through a tail-call dispatcher (learning-ebpf chapter 2's `sys_enter`
//! dispatcher, made into a syscount-style counter).
//!
//! The dispatcher (`sc_dispatch`, raw tracepoint `sys_enter`) applies the [`Filter`] and tail
//! calls through [`MAP_DISPATCH`] by syscall number. User space fills every slot: syscalls in
//! [`Handled`] get a dedicated program, every other slot gets `sc_default`. So a tail call that
//! comes back to the dispatcher is a real failure (emptied slot, out-of-range number), and is
//! counted in [`MAP_STATS`].
//!
//! Numbers are the x86_64 syscall table; user space refuses to run on other architectures.
//! 32-bit (ia32 compat) syscalls use the i386 table: the dispatcher counts them apart, in
//! [`MAP_COMPAT`], and never through the jump table.

/// Slots in the dispatch table and in the per-syscall counters. x86_64 numbers end below 470;
/// 512 leaves room for new syscalls without making the per-CPU map large.
pub const SYSCALL_SLOTS: u32 = 512;

/// Names of the maps, shared so user space looks up exactly what the kernel declares.
/// Kept under 16 bytes: the kernel truncates longer names (BPF_OBJ_NAME_LEN).
/// `ProgramArray` indexed by syscall number.
pub const MAP_DISPATCH: &str = "SC_DISPATCH";
/// `PerCpuArray<u64>` indexed by syscall number: calls seen by the handlers.
pub const MAP_COUNTS: &str = "SC_COUNTS";
/// `PerCpuArray<HandlerRecord>` indexed by [`Handled`]: the dedicated handlers' own counters.
pub const MAP_HANDLED: &str = "SC_HANDLED";
/// `PerCpuArray<u64>` indexed by [`DispatchStat`].
pub const MAP_STATS: &str = "SC_STATS";
/// `Array<Filter>` with one entry, written by user space at run time.
pub const MAP_FILTER: &str = "SC_FILTER";
/// `PerCpuArray<u64>` indexed by i386 syscall number: calls made by 32-bit (compat) tasks.
pub const MAP_COMPAT: &str = "SC_COMPAT";

/// `Global<u32>`: byte offset of `thread_info.status` inside `task_struct` (from kernel BTF),
/// where x86 keeps `TS_COMPAT`; [`OFFSET_UNKNOWN`] disables compat detection.
pub const GLOBAL_TASK_STATUS_OFF: &str = "SC_TASK_STATUS_OFF";
/// `Global<u32>`: byte offset of `task_struct.tgid` (from kernel BTF), read directly by the
/// dispatcher instead of calling `bpf_get_current_pid_tgid`; [`OFFSET_UNKNOWN`] keeps the helper.
pub const GLOBAL_TASK_TGID_OFF: &str = "SC_TASK_TGID_OFF";
/// A `task_struct` offset global when kernel BTF did not give it.
pub const OFFSET_UNKNOWN: u32 = u32::MAX;
/// [`GLOBAL_TASK_STATUS_OFF`] when the offset is unknown.
pub const COMPAT_UNKNOWN: u32 = OFFSET_UNKNOWN;
/// x86's `TS_COMPAT` bit of `thread_info.status`: a 32-bit syscall is in progress.
pub const TS_COMPAT: u32 = 0x0002;

/// Program names (the Rust function names in `mapscope-ebpf/src/syscalls.rs`), ≤ 15 bytes.
pub const PROG_DISPATCH: &str = "sc_dispatch";
/// Counts syscalls that have no dedicated handler.
pub const PROG_DEFAULT: &str = "sc_default";
/// execve and execveat.
pub const PROG_EXECVE: &str = "sc_execve";
/// timer_create … timer_delete.
pub const PROG_TIMER: &str = "sc_timer";
/// open and openat; counts O_CREAT opens.
pub const PROG_OPEN: &str = "sc_open";
/// read and write; sums the requested byte counts.
pub const PROG_RW: &str = "sc_rw";

/// Which tasks the dispatcher counts. Written by user space into [`MAP_FILTER`] at any time.
///
/// `flags` is a set of `FILTER_*` bits; with no bit set every task is counted. With both bits
/// set a task must match both (AND).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub flags: u32,
    /// Process id as user space means it: the thread-group id, so every thread of the process,
    /// numbered in the pid namespace the object was loaded for (`mapscope_common::pidns`).
    pub tgid: u32,
    /// The task's command name (`/proc/PID/task/TID/comm`), NUL-padded, compared whole.
    pub comm: [u8; 16],
    /// A process never counted, whatever the flags (0: none), numbered like `tgid`. mapscope puts
    /// its own pid here: its map reads every interval would otherwise top its own table.
    pub exclude_tgid: u32,
    /// Explicit padding to a multiple of 8 bytes; always 0.
    pub reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Filter>() == 32);

/// [`Filter::tgid`] is active.
pub const FILTER_TGID: u32 = 1 << 0;
/// [`Filter::comm`] is active.
pub const FILTER_COMM: u32 = 1 << 1;

/// A dedicated handler's own counter for one syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerRecord {
    /// Calls that reached the handler.
    pub calls: u64,
    /// Handler-specific second counter, see [`Handled::detail`].
    pub detail: u64,
}

const _: () = assert!(core::mem::size_of::<HandlerRecord>() == 16);

crate::impl_pod!(Filter, HandlerRecord);

/// Syscalls with a dedicated handler program; the value is the key into [`MAP_HANDLED`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Handled {
    Read = 0,
    Write = 1,
    Open = 2,
    Openat = 3,
    Execve = 4,
    Execveat = 5,
    TimerCreate = 6,
    TimerSettime = 7,
    TimerGettime = 8,
    TimerGetoverrun = 9,
    TimerDelete = 10,
}

/// Number of [`Handled`] syscalls, and so the number of entries in [`MAP_HANDLED`].
pub const HANDLED_SLOTS: u32 = 11;

impl Handled {
    /// All handled syscalls in key order.
    pub const ALL: [Handled; HANDLED_SLOTS as usize] = [
        Handled::Read,
        Handled::Write,
        Handled::Open,
        Handled::Openat,
        Handled::Execve,
        Handled::Execveat,
        Handled::TimerCreate,
        Handled::TimerSettime,
        Handled::TimerGettime,
        Handled::TimerGetoverrun,
        Handled::TimerDelete,
    ];

    /// The x86_64 syscall number.
    pub const fn nr(self) -> u32 {
        match self {
            Handled::Read => 0,
            Handled::Write => 1,
            Handled::Open => 2,
            Handled::Openat => 257,
            Handled::Execve => 59,
            Handled::Execveat => 322,
            Handled::TimerCreate => 222,
            Handled::TimerSettime => 223,
            Handled::TimerGettime => 224,
            Handled::TimerGetoverrun => 225,
            Handled::TimerDelete => 226,
        }
    }

    /// The handled syscall with x86_64 number `nr`, if any. Kernel handlers use it to find
    /// their counter slot, so it must stay a plain match (no tables the verifier cannot see).
    pub const fn from_nr(nr: u64) -> Option<Handled> {
        Some(match nr {
            0 => Handled::Read,
            1 => Handled::Write,
            2 => Handled::Open,
            257 => Handled::Openat,
            59 => Handled::Execve,
            322 => Handled::Execveat,
            222 => Handled::TimerCreate,
            223 => Handled::TimerSettime,
            224 => Handled::TimerGettime,
            225 => Handled::TimerGetoverrun,
            226 => Handled::TimerDelete,
            _ => return None,
        })
    }

    /// The program placed in this syscall's dispatch slot.
    pub const fn program(self) -> &'static str {
        match self {
            Handled::Read | Handled::Write => PROG_RW,
            Handled::Open | Handled::Openat => PROG_OPEN,
            Handled::Execve | Handled::Execveat => PROG_EXECVE,
            Handled::TimerCreate
            | Handled::TimerSettime
            | Handled::TimerGettime
            | Handled::TimerGetoverrun
            | Handled::TimerDelete => PROG_TIMER,
        }
    }

    /// What [`HandlerRecord::detail`] counts for this syscall, if anything.
    pub const fn detail(self) -> Option<&'static str> {
        match self {
            Handled::Read | Handled::Write => Some("bytes_requested"),
            Handled::Open | Handled::Openat => Some("o_creat"),
            _ => None,
        }
    }
}

/// Dispatcher outcomes that are not a successful jump; the value is the key into [`MAP_STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchStat {
    /// `bpf_tail_call` returned: the slot was empty (e.g. the table was emptied because its
    /// last user-space fd closed) or the tail-call limit was hit.
    TailCallFailed = 0,
    /// Syscall number outside `0..SYSCALL_SLOTS` (e.g. -1 from ptrace, or x32 numbers).
    OutOfRange = 1,
    /// A 32-bit (compat) syscall number outside `0..SYSCALL_SLOTS`.
    CompatOutOfRange = 2,
}

/// Number of [`DispatchStat`] entries.
pub const DISPATCH_STATS: u32 = 3;
