//! "All processes": every distinct libc mapped by a running process, found by scanning
//! `/proc/*/maps`, each reachable from mapscope's mount namespace and identified by file.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use object::elf;

use super::{ElfKind, Libc, attach_path_of, file_elf_kind, is_libc_name, own_mount_ns};
use crate::{Error, Result};

/// A libc found mapped somewhere that cannot be probed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: String,
}

/// Every distinct libc mapped by a running process, as "all processes" means it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InUse {
    /// One per distinct file (device and inode as `/proc/PID/maps` shows them, which is the
    /// file the kernel places uprobes in, also under overlayfs), sorted by path.
    pub libcs: Vec<Libc>,
    /// Libcs that are mapped but cannot be probed (replaced on disk, another architecture).
    pub skipped: Vec<Skipped>,
}

/// Every distinct libc mapped by any process visible in `/proc` now: the host's glibc, the
/// libcs of containers (each image may bring its own), musl, copies loaded with
/// `LD_LIBRARY_PATH`. Two paths to one file (a bind mount, the same image layer in two
/// containers) are one libc: probing a file twice would count each call twice.
///
/// Processes that start later with a libc nobody mapped at this moment are not covered.
pub fn in_use() -> Result<InUse> {
    let own_ns = own_mount_ns();
    let own_kind = fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|exe| file_elf_kind(&exe));
    // File identity -> index in `found.libcs` (None: skipped).
    let mut seen: BTreeMap<(String, u64), Option<usize>> = BTreeMap::new();
    let mut found = InUse::default();
    let dir = fs::read_dir("/proc").map_err(|e| Error::io("listing /proc", e))?;
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // Our own process first: its libc is the one every earlier version of mapscope probed.
    pids.sort_by_key(|&p| (p != std::process::id(), p));
    for pid in pids {
        // Gone since the listing, or a kernel thread (empty maps): nothing to learn.
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for m in libcs_in_maps(&maps) {
            let id = (m.dev.to_string(), m.inode);
            if let Some(&i) = seen.get(&id) {
                // Prefer a path in our own mount namespace: it outlives any one process.
                if let Some(Some(found)) = i.map(|i: usize| found.libcs.get_mut(i))
                    && found.attach_path.starts_with("/proc/")
                    && attach_path_of(pid, Path::new(m.path), &own_ns) == Path::new(m.path)
                {
                    found.attach_path = PathBuf::from(m.path);
                }
                continue;
            }
            let path = PathBuf::from(m.path);
            if m.deleted {
                seen.insert(id, None);
                found.skipped.push(Skipped {
                    path,
                    why: format!("replaced on disk while pid {pid} still runs it"),
                });
                continue;
            }
            let attach_path = attach_path_of(pid, &path, &own_ns);
            let kind = file_elf_kind(&attach_path);
            if kind.is_none() || kind != own_kind {
                seen.insert(id, None);
                found.skipped.push(Skipped {
                    path,
                    why: format!(
                        "{} (as mapped by pid {pid}), unlike mapscope's: the probe reads \
                         malloc's argument where this architecture passes it",
                        kind.map_or_else(|| "unreadable ELF".to_string(), describe_kind)
                    ),
                });
                continue;
            }
            seen.insert(id, Some(found.libcs.len()));
            found.libcs.push(Libc { path, attach_path });
        }
    }
    found.libcs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn describe_kind((class, machine): ElfKind) -> String {
    let bits = if class == elf::ELFCLASS64 { 64 } else { 32 };
    let arch = match machine {
        elf::EM_386 => "i386",
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        _ => "another architecture",
    };
    format!("{bits}-bit {arch} ELF")
}

/// One libc mapping of a `/proc/PID/maps` text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapped<'a> {
    /// `major:minor` in hex, as the kernel prints it.
    dev: &'a str,
    inode: u64,
    /// Without the ` (deleted)` marker.
    path: &'a str,
    deleted: bool,
}

/// Every libc mapping of a `/proc/PID/maps` text, one per file.
fn libcs_in_maps(maps: &str) -> Vec<Mapped<'_>> {
    let mut out: Vec<Mapped<'_>> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode, single spaces, then padding and the path.
        let mut fields = line.splitn(6, ' ');
        let (Some(dev), Some(inode), Some(path)) = (fields.nth(3), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start();
        let (path, deleted) = match path.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (path, false),
        };
        let Ok(inode) = inode.parse() else { continue };
        if !path.starts_with('/') || !is_libc_name(path) {
            continue;
        }
        let m = Mapped {
            dev,
            inode,
            path,
            deleted,
        };
        if !out.iter().any(|o| o.dev == dev && o.inode == inode) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_distinct_libc_mapping_once_with_its_file_identity() {
        let maps = "\
7f00-7f01 r--p 00000000 fe:01 5678                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f01-7f02 r-xp 00028000 fe:01 5678                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f03-7f04 r-xp 00015000 fe:00 42                         /usr/lib/x86_64-linux-musl/libc.so
7f05-7f06 r-xp 00015000 00:2f 77                         /lib/libc.so.6 (deleted)
7f07-7f08 r-xp 00000000 fe:01 99                         /usr/lib/x86_64-linux-gnu/libm.so.6
7f09-7f0a rw-p 00000000 00:00 0 
";
        let got = libcs_in_maps(maps);
        assert_eq!(
            got,
            [
                Mapped {
                    dev: "fe:01",
                    inode: 5678,
                    path: "/usr/lib/x86_64-linux-gnu/libc.so.6",
                    deleted: false
                },
                Mapped {
                    dev: "fe:00",
                    inode: 42,
                    path: "/usr/lib/x86_64-linux-musl/libc.so",
                    deleted: false
                },
                Mapped {
                    dev: "00:2f",
                    inode: 77,
                    path: "/lib/libc.so.6",
                    deleted: true
                },
            ]
        );
    }

    #[test]
    fn this_process_libc_is_in_use_once() {
        let found = in_use().unwrap();
        let own = fs::canonicalize(super::super::for_self().unwrap().path).unwrap();
        let same: Vec<_> = found
            .libcs
            .iter()
            .filter(|l| fs::canonicalize(&l.attach_path).ok().as_ref() == Some(&own))
            .collect();
        assert_eq!(same.len(), 1, "{found:?}");
    }
}
