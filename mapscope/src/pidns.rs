//! The pid namespace mapscope filters and reports process ids in: the one its `/proc` shows, so
//! `--pid`, the pids in reports and `ps` agree, whether mapscope runs on the host or in a
//! container without `hostPID`.
//!
//! The kernel's `bpf_get_current_pid_tgid` always answers in the initial (host) namespace. In any
//! other namespace, a family loads with [`PidNamespace::kernel`] in its `MAPSCOPE_PIDNS` global
//! and the kernel helper (`mapscope-ebpf/src/pidns.rs`) translates with
//! `bpf_get_ns_current_pid_tgid`. That helper matches one namespace exactly, not the ones nested
//! below it, so [`PidNamespace::check_target`] refuses a `--pid` that lives in a nested namespace
//! instead of silently counting nothing.

use std::{fs, os::unix::fs::MetadataExt as _, sync::OnceLock};

use mapscope_common::pidns::{GLOBAL, PidNs};

use crate::{Error, Result};

/// Inode of the initial pid namespace (`PROC_PID_INIT_INO` in the kernel's `proc_ns.h`), fixed
/// by the kernel; every other namespace gets a dynamically allocated one.
pub const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// mapscope's pid namespace, as kernel programs need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidNamespace {
    kernel: PidNs,
    /// The namespace's inode (also for the initial one), for messages.
    inode: u64,
    /// mapscope's own pid in it.
    own_pid: u32,
}

impl PidNamespace {
    /// mapscope's namespace, found once: a process never changes pid namespace.
    pub fn current() -> Result<&'static PidNamespace> {
        static CURRENT: OnceLock<PidNamespace> = OnceLock::new();
        if let Some(ns) = CURRENT.get() {
            return Ok(ns);
        }
        let ns = Self::detect()?;
        Ok(CURRENT.get_or_init(|| ns))
    }

    fn detect() -> Result<Self> {
        let own_pid = std::process::id();
        // `/proc/self` names us in the namespace /proc was mounted for; `getpid()` in our own.
        // When they differ, pids read from /proc mean something else than pids the kernel
        // compares, and nothing mapscope prints could be trusted.
        // A /proc of a namespace we are not in has no `self` for us at all.
        let seen = fs::read_link("/proc/self")
            .ok()
            .map(|l| l.to_string_lossy().into_owned());
        if seen.as_deref().and_then(|s| s.parse::<u32>().ok()) != Some(own_pid) {
            return Err(Error::ProcOfAnotherPidNs {
                seen: seen.unwrap_or_else(|| "missing".to_string()),
                pid: own_pid,
            });
        }
        let meta = fs::metadata("/proc/self/ns/pid")
            .map_err(|e| Error::io("reading /proc/self/ns/pid", e))?;
        Ok(Self::from_stat(meta.dev(), meta.ino(), own_pid))
    }

    /// The namespace whose nsfs file has device `st_dev` (as `stat(2)` encodes it) and inode
    /// `ino`, for a process whose pid in it is `own_pid`.
    pub fn from_stat(st_dev: u64, ino: u64, own_pid: u32) -> Self {
        let kernel = if ino == PROC_PID_INIT_INO {
            PidNs::INITIAL
        } else {
            PidNs {
                dev: kernel_dev(st_dev),
                ino,
            }
        };
        Self {
            kernel,
            inode: ino,
            own_pid,
        }
    }

    /// Whether this is the host's namespace (pids need no translation).
    pub fn is_initial(&self) -> bool {
        self.kernel.is_initial()
    }

    /// What kernel programs load with, under [`GLOBAL`]; `'static` because aya's loader borrows
    /// global values for as long as it lives.
    pub fn kernel(&'static self) -> &'static PidNs {
        &self.kernel
    }

    /// mapscope's own pid in this namespace.
    pub fn own_pid(&self) -> u32 {
        self.own_pid
    }

    /// `pid:[inode]`, as `readlink /proc/self/ns/pid` prints it.
    pub fn describe(&self) -> String {
        format!("pid:[{}]", self.inode)
    }

    /// Refuses a pid the kernel helper cannot translate: a process (already known to exist)
    /// whose own pid namespace is nested below this one. `/proc/PID/status` lists one `NSpid`
    /// entry per namespace from /proc's down to the process's own.
    pub fn check_target(&self, pid: u32) -> Result<()> {
        if self.is_initial() {
            return Ok(());
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|_| Error::UnknownPid { pid })?;
        match nspid_depth(&status) {
            Some(depth) if depth > 1 => Err(Error::NestedPidNs { pid }),
            _ => Ok(()),
        }
    }
}

/// Sets the [`GLOBAL`] of a family's object to mapscope's namespace; use inside
/// `loader::load_with`.
pub fn configure(loader: &mut aya::EbpfLoader<'_>, ns: &'static PidNamespace) {
    loader.override_global(GLOBAL, ns.kernel(), true);
}

/// The kernel's `MKDEV(major, minor)` (20 minor bits) from glibc's `stat` encoding, which splits
/// major and minor differently: `bpf_get_ns_current_pid_tgid` compares the former.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let (major, minor) = (libc::major(st_dev) as u64, libc::minor(st_dev) as u64);
    (major << 20) | minor
}

/// Number of entries on the `NSpid:` line of a `/proc/PID/status`.
fn nspid_depth(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_namespace_needs_no_translation() {
        let ns = PidNamespace::from_stat(4, PROC_PID_INIT_INO, 42);
        assert!(ns.is_initial());
        assert_eq!(ns.kernel, PidNs::INITIAL);
        assert_eq!(ns.own_pid(), 42);
        assert_eq!(ns.describe(), "pid:[4026531836]");
        assert!(
            ns.check_target(1 << 23).is_ok(),
            "nothing to check on the host"
        );
    }

    #[test]
    fn other_namespace_carries_kernel_dev_and_inode() {
        // nsfs is 0:4 on most kernels; a made-up major checks the re-encoding.
        let st_dev = libc::makedev(0, 4);
        let ns = PidNamespace::from_stat(st_dev, 4_026_532_999, 1);
        assert!(!ns.is_initial());
        assert_eq!(
            ns.kernel,
            PidNs {
                dev: 4,
                ino: 4_026_532_999
            }
        );
        assert_eq!(kernel_dev(libc::makedev(259, 3)), (259 << 20) | 3);
        assert_eq!(kernel_dev(libc::makedev(8, 300)), (8 << 20) | 300);
    }

    #[test]
    fn nspid_depth_counts_namespaces() {
        assert_eq!(nspid_depth("Name:\tx\nNSpid:\t4242\n"), Some(1));
        assert_eq!(nspid_depth("NSpid:\t4242\t17\t1\n"), Some(3));
        assert_eq!(nspid_depth("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_is_found() {
        let ns = PidNamespace::current().unwrap();
        assert_eq!(ns.own_pid(), std::process::id());
        let ino = fs::metadata("/proc/self/ns/pid").unwrap().ino();
        assert_eq!(ns.is_initial(), ino == PROC_PID_INIT_INO);
    }
}
