//! malloc calls and bytes from a uprobe on libc's `malloc`, per CPU and per process, and, with
//! stacks enabled, per (process, user stack): who allocates.

/// Calls and requested bytes; the per-CPU value of [`MAP_PER_CPU`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallocRecord {
    pub calls: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<MallocRecord>() == 16);

/// One process's totals; the value of [`MAP_PROCESSES`], keyed by tgid (`u32`) in the pid
/// namespace mapscope was loaded for (see `pidns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallocProcess {
    pub calls: u64,
    pub bytes: u64,
    /// Command name of the thread that called malloc last (so it follows an exec), NUL-padded.
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<MallocProcess>() == 32);

/// Key of [`MAP_STACK_COUNTS`]: one process, one user stack.
///
/// `caller` is the return address malloc will return to, read from the top of the user stack
/// at malloc's first instruction: a frame-pointer walk from there starts at the *caller's* frame
/// and so skips the caller itself, unless the kernel adds it (Linux 6.11+ does when the probed
/// instruction is `push %rbp` or `endbr64`). User space inserts it after malloc's own frame when
/// the stack does not already hold it. Part of the key, so two callers sharing the rest of a
/// stack stay apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackKey {
    /// Process id, numbered like [`MAP_PROCESSES`]' keys.
    pub tgid: u32,
    /// Id in [`MAP_STACKS`] (`bpf_get_stackid` with `BPF_F_USER_STACK`).
    pub stack_id: u32,
    /// The return address at the top of the stack; 0 when it could not be read.
    pub caller: u64,
}

const _: () = assert!(core::mem::size_of::<StackKey>() == 16);

crate::impl_pod!(MallocRecord, MallocProcess, StackKey);

/// Why a stack could not be counted; the index into [`MAP_STACK_ERRORS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// `-EEXIST`: the stack's hash bucket holds another stack (a collision; the table fills).
    Collision = 0,
    /// `-EFAULT`: the kernel could not walk the user stack at all.
    Unreadable = 1,
    /// `-ENOMEM`: no free slot left in [`MAP_STACKS`].
    StackMapFull = 2,
    /// Any other error from `bpf_get_stackid`.
    Other = 3,
    /// [`MAP_STACK_COUNTS`] is full: a new (process, stack) could not be added.
    CountsFull = 4,
    /// The caller's return address could not be read (counted, with `caller` 0).
    CallerUnreadable = 5,
}

/// Number of [`StackError`] slots.
pub const STACK_ERRORS: u32 = 6;

impl StackError {
    /// All kinds, in index order.
    pub const ALL: [StackError; STACK_ERRORS as usize] = [
        StackError::Collision,
        StackError::Unreadable,
        StackError::StackMapFull,
        StackError::Other,
        StackError::CountsFull,
        StackError::CallerUnreadable,
    ];
}

/// `PerCpuArray<MallocRecord>` with one entry: no cross-CPU contention on the hot counter.
pub const MAP_PER_CPU: &str = "MALLOC_PCPU";
/// `LruHashMap<u32, MallocProcess>`: per process, bounded; the least recently active process
/// is evicted when a new one arrives at capacity.
pub const MAP_PROCESSES: &str = "MALLOC_PROCS";
/// The [`MAP_PROCESSES`] key of tasks outside the pid namespace mapscope reports in (a
/// container's mapscope seeing a host process that shares the probed libc); no process has pid 0.
pub const OUTSIDE_PIDNS: u32 = 0;
/// Capacity of [`MAP_PROCESSES`].
pub const MAX_PROCESSES: u32 = 4096;
/// The uprobe program.
pub const PROG_MALLOC: &str = "malloc_enter";

/// `StackTrace` map of user stacks (sized at load time; one entry when stacks are off).
pub const MAP_STACKS: &str = "MALLOC_STACKS";
/// `HashMap<StackKey, MallocRecord>`: calls and bytes per (process, stack), bounded, never
/// evicting (a full map is counted as [`StackError::CountsFull`]).
pub const MAP_STACK_COUNTS: &str = "MALLOC_STK_CNT";
/// `PerCpuArray<u64>` indexed by [`StackError`].
pub const MAP_STACK_ERRORS: &str = "MALLOC_STK_ERR";
/// `Global<u32>`: nonzero records stacks. A load-time constant, so with stacks off the verifier
/// removes the stack code from the probe altogether.
pub const GLOBAL_STACKS_ON: &str = "MALLOC_STACKS_ON";
