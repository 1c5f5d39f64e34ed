//! malloc calls and bytes from a uprobe on libc's `malloc`, per CPU and per process.

/// Calls and requested bytes; the per-CPU value of [`MAP_PER_CPU`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallocRecord {
    pub calls: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<MallocRecord>() == 16);

/// One process's totals; the value of [`MAP_PROCESSES`], keyed by tgid (`u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallocProcess {
    pub calls: u64,
    pub bytes: u64,
    /// Command name of the thread that called malloc last (so it follows an exec), NUL-padded.
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<MallocProcess>() == 32);

crate::impl_pod!(MallocRecord, MallocProcess);

/// `PerCpuArray<MallocRecord>` with one entry: no cross-CPU contention on the hot counter.
pub const MAP_PER_CPU: &str = "MALLOC_PCPU";
/// `LruHashMap<u32, MallocProcess>`: per process, bounded; the least recently active process
/// is evicted when a new one arrives at capacity.
pub const MAP_PROCESSES: &str = "MALLOC_PROCS";
/// Capacity of [`MAP_PROCESSES`].
pub const MAX_PROCESSES: u32 = 4096;
/// The uprobe program.
pub const PROG_MALLOC: &str = "malloc_enter";
