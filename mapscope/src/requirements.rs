//! What the running kernel and process must provide, as data in one table, checked before
//! anything is loaded so a missing piece becomes one clear message instead of a verifier dump.

use std::path::Path;

use crate::{Error, Result};

/// One thing a program family needs from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) to load programs and create maps.
    BpfPrivileges,
    /// CAP_NET_ADMIN (or CAP_SYS_ADMIN) to attach XDP.
    NetAdmin,
    /// Kernel BTF, for CO-RE relocations and tp_btf programs.
    Btf,
    /// tracefs mounted, for tracepoint attachment.
    Tracefs,
    /// bpffs mounted, for pinning.
    Bpffs,
}

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks every requirement and reports the first unmet one.
pub fn check(reqs: &[Requirement]) -> Result<()> {
    let caps = effective_caps()?;
    let mut missing = Vec::new();
    for req in reqs {
        match req {
            Requirement::BpfPrivileges => {
                if !has(caps, CAP_SYS_ADMIN) {
                    for (bit, name) in [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")] {
                        if !has(caps, bit) {
                            missing.push(name);
                        }
                    }
                }
            }
            Requirement::NetAdmin => {
                if !has(caps, CAP_NET_ADMIN) && !has(caps, CAP_SYS_ADMIN) {
                    missing.push("CAP_NET_ADMIN");
                }
            }
            Requirement::Btf => {
                if !Path::new("/sys/kernel/btf/vmlinux").exists() {
                    return Err(Error::KernelFeature {
                        feature: "BTF (/sys/kernel/btf/vmlinux)",
                        fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
                    });
                }
            }
            Requirement::Tracefs => tracefs(caps)?,
            Requirement::Bpffs => {
                if !is_bpffs(Path::new("/sys/fs/bpf")) {
                    return Err(Error::KernelFeature {
                        feature: "a mounted bpffs",
                        fix: "mount it with `mount -t bpf bpf /sys/fs/bpf`",
                    });
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Privileges {
            missing: missing.join(", "),
        })
    }
}

/// tracefs must be mounted and readable: attaching a tracepoint reads its id there. Without
/// root, tracefs is usually mode 700, which looks exactly like "not mounted" to a plain
/// `exists()`; tell the two apart and name the capability that fixes the permission.
fn tracefs(caps: u64) -> Result<()> {
    let mut denied = None;
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        match std::fs::metadata(Path::new(dir).join("events")) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                denied.get_or_insert(dir);
            }
            Err(_) => {}
        }
    }
    match denied {
        Some(dir) => Err(Error::Privileges {
            missing: tracefs_denied(dir, caps),
        }),
        None => Err(Error::KernelFeature {
            feature: "a mounted tracefs",
            fix: "mount it with `mount -t tracefs tracefs /sys/kernel/tracing`",
        }),
    }
}

fn tracefs_denied(dir: &str, caps: u64) -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let fix = if has(caps, CAP_DAC_READ_SEARCH) {
        "even with CAP_DAC_READ_SEARCH; check its mount options"
    } else {
        "add CAP_DAC_READ_SEARCH, or run as root"
    };
    format!("read access to tracefs at {dir}: permission denied for uid {uid}, {fix}")
}

fn has(caps: u64, bit: u32) -> bool {
    caps & (1u64 << bit) != 0
}

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("reading /proc/self/status", e))?;
    parse_cap_eff(&status)
        .ok_or_else(|| Error::InvalidArgument("no CapEff line in /proc/self/status".to_string()))
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

fn is_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let caps = parse_cap_eff(status).unwrap();
        assert!(has(caps, CAP_BPF));
        assert!(has(caps, CAP_NET_ADMIN));
        let none = parse_cap_eff("CapEff:\t0000000000000000\n").unwrap();
        assert!(!has(none, CAP_SYS_ADMIN));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn tracefs_permission_names_the_capability() {
        let without = tracefs_denied("/sys/kernel/tracing", 1 << CAP_BPF);
        assert!(
            without.starts_with(
                "read access to tracefs at /sys/kernel/tracing: permission denied for uid "
            ) && without.ends_with("add CAP_DAC_READ_SEARCH, or run as root"),
            "{without}"
        );
        let with = tracefs_denied("/sys/kernel/tracing", 1 << CAP_DAC_READ_SEARCH);
        assert!(with.ends_with("check its mount options"), "{with}");
    }
}
