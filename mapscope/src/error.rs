//! The library's error type. Every variant that a user can cause names the fix in its message,
//! because the CLI prints it as the one-line diagnostic.

use std::io;

/// Everything mapscope's library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "missing privileges: mapscope needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN \
         (missing {missing}); run it with sudo"
    )]
    Privileges { missing: String },

    #[error("kernel lacks {feature}: {fix}")]
    KernelFeature {
        feature: &'static str,
        fix: &'static str,
    },

    #[error("unknown interface {name:?}: pick one from `ip link show`")]
    UnknownInterface { name: String },

    #[error("no default route to pick an interface from: name one with --iface")]
    NoDefaultRoute,

    #[error("the driver of {iface} does not support native XDP: use --mode skb")]
    XdpNativeUnsupported { iface: String },

    #[error(
        "this mapscope binary carries no kernel programs (built with AYA_BUILD_SKIP=1): \
         rebuild it without AYA_BUILD_SKIP"
    )]
    NoEmbeddedObject,

    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),

    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },

    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },

    #[error("{name} is missing from the eBPF object (build mismatch)")]
    MissingObject { name: &'static str },

    #[error("no process with pid {pid}: pass the pid of a running process (see `ps -e`)")]
    UnknownPid { pid: u32 },

    #[error("{pid} is a thread of process {tgid}: pass the process id {tgid} instead")]
    ThreadId { pid: u32, tgid: u32 },

    #[error(
        "unknown syscall name {name:?}: use an x86_64 syscall name such as openat \
         (`mapscope syscalls --list` prints them all)"
    )]
    UnknownSyscall { name: String },

    #[error(
        "--comm {comm:?} is {len} bytes but the kernel keeps at most 15 of a command name: \
         pass the first 15 bytes"
    )]
    CommTooLong { comm: String, len: usize },

    #[error(
        "{target} has no libc to probe ({why}): malloc is counted in a shared libc, so pick a \
         dynamically linked program or a running process that uses one"
    )]
    NoLibc { target: String, why: String },

    #[error(
        "{what} is only supported on x86_64 (this is {arch}): its syscall numbers are x86_64's"
    )]
    UnsupportedArch {
        what: &'static str,
        arch: &'static str,
    },

    #[error(
        "/proc belongs to another pid namespace than mapscope's (/proc/self is {seen}, mapscope's \
         pid is {pid}), so pids would name other processes: mount a /proc for this namespace \
         (`unshare --pid --fork --mount-proc`, or nsenter without --no-fork)"
    )]
    ProcOfAnotherPidNs { seen: String, pid: u32 },

    #[error(
        "process {pid} lives in a pid namespace nested inside mapscope's, where the kernel cannot \
         number it: run mapscope in the process's namespace (`nsenter --target {pid} --pid \
         --mount mapscope …`) or on the host"
    )]
    NestedPidNs { pid: u32 },

    #[error(
        "cannot read {path} ({reason}): pass the path of an existing program, e.g. \
         --bin \"$(command -v NAME)\""
    )]
    BinaryUnreadable { path: String, reason: String },

    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("{0}")]
    InvalidArgument(String),
}

/// Shorthand used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done, in cilium/ebpf's "doing x: cause" style.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// An error with all its causes on one line ("reading x: No such file or directory"), for the
/// library's own stderr reports; the CLI gets the same from anyhow's `{:#}`.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// The OS error number buried anywhere in an error's source chain, so callers can tell EPERM or
/// EBUSY apart without matching every aya error variant.
pub fn os_error(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(code) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_causes() {
        let e = Error::io("reading /x", io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            one_line(&e),
            "reading /x: No such file or directory (os error 2)"
        );
        assert_eq!(os_error(&e), Some(libc::ENOENT));
    }
}
