//! Which pid namespace kernel programs report and compare process ids in.
//!
//! The kernel's `bpf_get_current_pid_tgid` always answers in the initial (host) pid namespace,
//! while a user inside a container passes, and reads, pids of the container's namespace. A family
//! that compares or reports pids takes a [`PidNs`] at load time (a read-only global named
//! [`GLOBAL`]) and asks the kernel helper in `mapscope-ebpf/src/pidns.rs` for the current task's
//! tgid *in that namespace* (`bpf_get_ns_current_pid_tgid`).

/// A pid namespace as `bpf_get_ns_current_pid_tgid` identifies it: the nsfs device and inode of
/// `/proc/self/ns/pid`. All zeros means the initial namespace, where no translation is needed
/// (and none is done, so the hot path stays one helper call).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidNs {
    /// The nsfs device in the kernel's own `dev_t` encoding (`major << 20 | minor`), which is
    /// not the encoding `stat(2)` returns.
    pub dev: u64,
    /// The namespace's inode number.
    pub ino: u64,
}

const _: () = assert!(core::mem::size_of::<PidNs>() == 16);

impl PidNs {
    /// The initial pid namespace: tgids are compared and reported as the host sees them.
    pub const INITIAL: PidNs = PidNs { dev: 0, ino: 0 };

    /// Whether this is the initial namespace (no translation).
    pub const fn is_initial(&self) -> bool {
        self.ino == 0
    }
}

crate::impl_pod!(PidNs);

/// Symbol name of the `Global<PidNs>` in each object that uses the helper; user space overrides
/// it at load time.
pub const GLOBAL: &str = "MAPSCOPE_PIDNS";
