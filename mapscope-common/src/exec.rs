//! exec tracing: the event the kernel sends per exec, what it keeps between syscall entry and
//! the exec's outcome, its counters and its configuration.

/// Most arguments captured per *failed* exec, read from the caller's argv (a successful exec's
/// arguments are read as one block from the new image, bounded only by [`ARGS_BUDGET`]).
pub const MAX_ARGS: u32 = 20;
/// Total argument bytes captured per exec (NUL separators included).
pub const ARGS_BUDGET: usize = 4096;
/// Longest single argument read from a failed exec's argv; a longer one is cut and the event
/// marked truncated.
pub const ARG_MAX_LEN: usize = 512;
/// The argument buffer: the budget plus room for one maximal read starting just inside it, so
/// the verifier can prove every read stays in bounds without relating offset and length.
pub const ARGS_BUF: usize = ARGS_BUDGET + ARG_MAX_LEN;
/// Filename bytes captured (NUL included).
pub const FILENAME_LEN: usize = 512;
/// `TASK_COMM_LEN` in the kernel.
pub const COMM_LEN: usize = 16;

/// `flags` bit: the filename did not fit in [`FILENAME_LEN`].
pub const FLAG_FILENAME_TRUNCATED: u32 = 1 << 0;
/// `flags` bit: an argument was cut, or arguments beyond [`MAX_ARGS`] or [`ARGS_BUDGET`] were
/// left out.
pub const FLAG_ARGS_TRUNCATED: u32 = 1 << 1;
/// `flags` bit: reading the arguments failed (a bad or not-yet-paged-in user pointer); what was
/// read before the failure is kept.
pub const FLAG_ARGS_FAULT: u32 = 1 << 2;
/// `flags` bit: the parent could not be read (offsets unknown, or it has no pid in mapscope's
/// pid namespace): `ppid` is 0.
pub const FLAG_PPID_UNKNOWN: u32 = 1 << 3;
/// `flags` bit: the filename could not be read from the caller's memory; `filename` is empty.
pub const FLAG_FILENAME_FAULT: u32 = 1 << 4;
/// In-flight only: the exec is tracked so its outcome is recognised, but sends no event (uid
/// filter, or a task outside mapscope's pid namespace).
pub const FLAG_SKIP: u32 = 1 << 31;

/// Which syscall started the exec.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecSyscall {
    Execve = 0,
    Execveat = 1,
    /// A successful exec whose syscall entry was not seen: a 32-bit (compat) caller, whose
    /// syscalls the `syscalls:` tracepoints skip, an exec the kernel started itself, or one that
    /// was already under way when tracing began.
    Unseen = 2,
}

/// The fixed part of an event; the used part of `args` follows it directly.
///
/// The kernel sends `size_of::<ExecHeader>() + args_len` bytes, not the whole [`ExecEvent`],
/// so a buffer holds as many events as their real size allows.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecHeader {
    /// `bpf_ktime_get_boot_ns()` at syscall entry (CLOCK_BOOTTIME, which keeps counting during
    /// suspend), or at the exec for [`ExecSyscall::Unseen`].
    pub ktime_ns: u64,
    /// Process id (tgid) in mapscope's pid namespace.
    pub pid: u32,
    /// Thread id that called exec, in mapscope's pid namespace.
    pub tid: u32,
    /// Parent's tgid in mapscope's pid namespace (see the kernel module for how it is read).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The syscall's return: 0 on success, -errno on failure.
    pub retval: i32,
    /// An [`ExecSyscall`] value.
    pub syscall: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Arguments captured in `args` (informational; user space splits `args` at its NULs).
    pub args_count: u32,
    /// Bytes of `args` in use: NUL-terminated arguments back to back (the last one without its
    /// NUL when the block was cut at [`ARGS_BUDGET`]).
    pub args_len: u32,
    /// Task name after the exec (the new program's, or the caller's when it failed).
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; FILENAME_LEN],
}

/// Bytes of an event before its arguments.
pub const HEADER_LEN: usize = core::mem::size_of::<ExecHeader>();

const _: () = assert!(HEADER_LEN == 48 + COMM_LEN + FILENAME_LEN);
const _: () = assert!(HEADER_LEN.is_multiple_of(8));

/// One exec as the kernel builds it (in a per-CPU scratch map: ~5 KiB is far over the 512-byte
/// BPF stack). Only the first `HEADER_LEN + hdr.args_len` bytes are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub hdr: ExecHeader,
    pub args: [u8; ARGS_BUF],
}

/// The largest event the kernel sends.
pub const EVENT_MAX_LEN: usize = core::mem::size_of::<ExecEvent>();

const _: () = assert!(EVENT_MAX_LEN == HEADER_LEN + ARGS_BUF);
const _: () = assert!(EVENT_MAX_LEN.is_multiple_of(8));

crate::impl_pod!(ExecHeader, ExecEvent);

/// What the kernel keeps per thread between syscall entry and the exec's outcome: the entry-time
/// facts and the caller's pointers, not the strings (see the kernel module for why).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecInflight {
    /// `bpf_ktime_get_boot_ns()` at entry.
    pub ktime_ns: u64,
    /// The caller's `filename` pointer.
    pub filename_ptr: u64,
    /// The caller's `argv` pointer.
    pub argv_ptr: u64,
    /// `current->mm` at entry (0 when unknown): a failed exec's strings are read only from the
    /// same image they were passed in.
    pub mm: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub syscall: u32,
    /// `FLAG_PPID_UNKNOWN` and `FLAG_SKIP`.
    pub flags: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<ExecInflight>() == 64);

crate::impl_pod!(ExecInflight);

/// Slots of [`MAP_EXEC_LOST`]: why an event was lost, or (the last slots) what was left out on
/// purpose. Every path that ends without an event for an exec it saw counts in one of them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecCounter {
    /// The ring buffer was full or perf output failed.
    LostOutput = 0,
    /// The in-flight map was full at syscall entry: the exec could not be tracked.
    LostInflightFull = 1,
    /// A thread's earlier exec was still in flight at its next entry (it never returned): that
    /// older event is lost.
    LostInflightReplaced = 2,
    /// The tracepoint record or the configuration could not be read.
    LostRead = 3,
    /// Not lost: an exec (counted at entry, or at the exec when its entry was not seen) of a
    /// task with no pid in mapscope's pid namespace, which is not reported.
    OutsidePidns = 4,
    /// Not lost: an in-flight entry found at a successful exit (already reported by
    /// `sched_process_exec`; should stay 0).
    Stale = 5,
}

/// Slots in [`MAP_EXEC_LOST`].
pub const EXEC_COUNTERS: u32 = 6;
/// The slots below this one count lost events.
pub const EXEC_LOST_SLOTS: u32 = 4;

/// Run-time settings user space writes into [`MAP_EXEC_CONFIG`] before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// Byte offset of `real_parent` in `struct task_struct` (from the running kernel's BTF).
    pub real_parent_off: u32,
    /// Byte offset of `tgid` in `struct task_struct`.
    pub tgid_off: u32,
    /// Nonzero: both offsets are valid.
    pub offsets_valid: u32,
    /// Nonzero: only send events for `filter_uid` (counters still count every uid).
    pub filter_uid_enabled: u32,
    pub filter_uid: u32,
    /// Which transport carries events: an [`ExecTransport`] value.
    pub transport: u32,
    /// Byte offset of `mm` in `struct task_struct`.
    pub task_mm_off: u32,
    /// Byte offset of `arg_start` in `struct mm_struct` (`arg_end` follows it).
    pub mm_arg_start_off: u32,
    /// Byte offset of `arg_end` in `struct mm_struct`.
    pub mm_arg_end_off: u32,
    /// Nonzero: the three offsets above are valid.
    pub image_offsets_valid: u32,
    /// Byte offset of `group_leader` in `struct task_struct`.
    pub group_leader_off: u32,
    /// Byte offset of `thread_pid` in `struct task_struct`.
    pub thread_pid_off: u32,
    /// Byte offset of `level` in `struct pid`.
    pub pid_level_off: u32,
    /// Byte offset of `numbers` (the `struct upid` array) in `struct pid`.
    pub pid_numbers_off: u32,
    /// Byte offset of `ns.inum` in `struct pid_namespace`.
    pub pidns_inum_off: u32,
    /// Nonzero: the pid offsets above are valid, so a parent can be named in mapscope's pid
    /// namespace when that is not the initial one.
    pub pidns_offsets_valid: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<ExecConfig>() == 68);

crate::impl_pod!(ExecConfig);

/// How events reach user space.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecTransport {
    RingBuf = 0,
    PerfEventArray = 1,
}

/// Count of execs per uid (`HashMap<u32, u64>`), hello-map style.
pub const MAP_EXEC_UIDS: &str = "EXEC_UIDS";
/// Events, default transport (`RingBuf`).
pub const MAP_EXEC_RING: &str = "EXEC_RING";
/// Events, alternative transport (`PerfEventArray`).
pub const MAP_EXEC_PERF: &str = "EXEC_PERF";
/// Per-CPU counters indexed by [`ExecCounter`]: events that could not be delivered, and why.
pub const MAP_EXEC_LOST: &str = "EXEC_LOST";
/// One-entry `Array<ExecConfig>`.
pub const MAP_EXEC_CONFIG: &str = "EXEC_CONFIG";
/// Per-CPU scratch space for building an [`ExecEvent`] off the stack.
pub const MAP_EXEC_SCRATCH: &str = "EXEC_SCRATCH";
/// [`ExecInflight`] per thread between syscall entry and the exec's outcome, keyed by tid.
pub const MAP_EXEC_INFLIGHT: &str = "EXEC_INFLIGHT";
