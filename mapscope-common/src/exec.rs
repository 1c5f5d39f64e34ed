//! exec tracing: the event the kernel sends per execve/execveat, and its configuration.

/// Most arguments captured per exec (after argv[0]… up to this many entries in all).
pub const MAX_ARGS: u32 = 20;
/// Total argument bytes captured per exec (NUL separators included).
pub const ARGS_BUDGET: usize = 4096;
/// Longest single argument read; a longer one is cut and the event marked truncated.
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
/// `flags` bit: an argument was cut at [`ARG_MAX_LEN`], or arguments beyond [`MAX_ARGS`] or
/// [`ARGS_BUDGET`] were left out.
pub const FLAG_ARGS_TRUNCATED: u32 = 1 << 1;
/// `flags` bit: reading argv failed part-way (bad user pointer); what was read is kept.
pub const FLAG_ARGS_FAULT: u32 = 1 << 2;
/// `flags` bit: the parent could not be read (offsets unknown): `ppid` is 0.
pub const FLAG_PPID_UNKNOWN: u32 = 1 << 3;

/// Which syscall started the exec.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecSyscall {
    Execve = 0,
    Execveat = 1,
}

/// One exec, sent to user space at `sys_exit_*` with the return code filled in.
///
/// About 5 KiB: far over the 512-byte BPF stack, so the kernel builds it in a per-CPU scratch
/// map and keeps it in a hash map between syscall entry and exit. Fixed-size fields first, the
/// large buffers last.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    /// `bpf_ktime_get_ns()` at syscall entry (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id that called exec.
    pub tid: u32,
    /// Parent's tgid, read from `task->real_parent` (see the kernel module for why).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The syscall's return: 0 on success, -errno on failure.
    pub retval: i32,
    /// An [`ExecSyscall`] value.
    pub syscall: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Arguments captured in `args`.
    pub args_count: u32,
    /// Bytes of `args` in use: NUL-terminated arguments back to back.
    pub args_len: u32,
    /// Task name after the exec (the new program's, or the caller's when it failed).
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; FILENAME_LEN],
    pub args: [u8; ARGS_BUF],
}

const _: () = assert!(core::mem::size_of::<ExecEvent>() == 48 + COMM_LEN + FILENAME_LEN + ARGS_BUF);
const _: () = assert!(core::mem::size_of::<ExecEvent>().is_multiple_of(8));

crate::impl_pod!(ExecEvent);

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
}

const _: () = assert!(core::mem::size_of::<ExecConfig>() == 24);

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
/// Per-CPU count of events that could not be delivered (ring full, perf output failed, too many
/// execs in flight).
pub const MAP_EXEC_LOST: &str = "EXEC_LOST";
/// One-entry `Array<ExecConfig>`.
pub const MAP_EXEC_CONFIG: &str = "EXEC_CONFIG";
/// Per-CPU scratch space for building an [`ExecEvent`] off the stack.
pub const MAP_EXEC_SCRATCH: &str = "EXEC_SCRATCH";
/// Events between syscall entry and exit, keyed by tgid.
pub const MAP_EXEC_INFLIGHT: &str = "EXEC_INFLIGHT";
