//! Where a user-space address lives: the mapped file (module) and the offset in that file, from
//! the process's `/proc/PID/maps`.
//!
//! This is the step that must happen while the process lives; symbolizing a (module, offset)
//! can wait and needs only the file. So each process's mappings are read the first time one of
//! its stacks is seen and kept: stacks recorded just before the process exited still resolve to
//! module + offset (and to symbols, as long as the file is there). A table is read again when an
//! address falls outside it (a library loaded later, or an exec).
//!
//! Modules are identified by the device and inode the maps line shows (as `libc::in_use` does),
//! so one file seen by many processes, or in several mount namespaces, is one module and one
//! entry in the symbol cache.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

/// A mapped file, as one or more processes map it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The path as the process sees it (what reports print), or a pseudo name (`[vdso]`).
    pub path: PathBuf,
    /// The path mapscope opens to read its symbols: `path`, or through `/proc/PID/root` when
    /// the process lives in another mount namespace; `None` for pseudo mappings.
    pub open_path: Option<PathBuf>,
}

impl Module {
    /// The file name, for compact tables.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Index of a module in a [`ModuleCache`].
pub type ModuleId = usize;

/// An address resolved to a module and an offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// In `module`, at file offset `offset` (pseudo mappings: offset from their start).
    Module { module: ModuleId, offset: u64 },
    /// In no mapping mapscope knows of (the process exited before its mappings were read).
    Unknown { addr: u64 },
}

/// One line of `/proc/PID/maps` that maps something with a name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    file_offset: u64,
    module: ModuleId,
}

/// Module tables per process, and the modules themselves.
#[derive(Debug, Default)]
pub struct ModuleCache {
    modules: Vec<Module>,
    /// `(device, inode)` (or the pseudo name) -> module.
    by_identity: HashMap<(String, u64), ModuleId>,
    /// Sorted by start address, per pid as `/proc` numbers it.
    processes: HashMap<u32, Vec<Mapping>>,
    /// `/proc` to read maps from (tests point it elsewhere).
    proc_root: PathBuf,
}

/// Processes whose tables are kept at most; the oldest entries go first beyond that (a host
/// that forks thousands of short processes per interval would otherwise grow without bound).
const MAX_PROCESSES: usize = 8192;

impl ModuleCache {
    /// An empty cache reading `/proc`.
    pub fn new() -> Self {
        Self::with_proc(Path::new("/proc"))
    }

    fn with_proc(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            ..Self::default()
        }
    }

    /// The module `id` refers to.
    pub fn module(&self, id: ModuleId) -> &Module {
        &self.modules[id]
    }

    /// Resolves `addrs` of process `pid`, reading (or re-reading) its maps when needed. A
    /// process that is gone and was never read gives [`Location::Unknown`]s.
    pub fn locate(&mut self, pid: u32, addrs: &[u64]) -> Vec<Location> {
        let known = self.processes.contains_key(&pid);
        if !known || addrs.iter().any(|&a| self.find(pid, a).is_none()) {
            self.read(pid);
        }
        addrs
            .iter()
            .map(|&addr| match self.find(pid, addr) {
                Some(m) => Location::Module {
                    module: m.module,
                    offset: addr - m.start + m.file_offset,
                },
                None => Location::Unknown { addr },
            })
            .collect()
    }

    fn find(&self, pid: u32, addr: u64) -> Option<&Mapping> {
        let table = self.processes.get(&pid)?;
        let i = table.partition_point(|m| m.start <= addr);
        table[..i].last().filter(|m| addr < m.end)
    }

    /// Reads `/proc/PID/maps`; keeps the old table when the process is gone.
    fn read(&mut self, pid: u32) {
        let dir = self.proc_root.join(pid.to_string());
        let Ok(maps) = fs::read_to_string(dir.join("maps")) else {
            return;
        };
        let own_ns = fs::read_link(self.proc_root.join("self/ns/mnt")).ok();
        let same_ns = own_ns.is_some() && own_ns == fs::read_link(dir.join("ns/mnt")).ok();
        let mut table = Vec::new();
        for line in maps.lines() {
            let Some(p) = parse_line(line) else { continue };
            let identity = if p.path.starts_with('/') {
                (p.dev.to_string(), p.inode)
            } else {
                (p.path.to_string(), 0)
            };
            let module = match self.by_identity.get(&identity) {
                Some(&id) => id,
                None => {
                    let path = PathBuf::from(p.path);
                    let open_path = p.path.starts_with('/').then(|| {
                        if same_ns {
                            path.clone()
                        } else {
                            dir.join("root")
                                .join(path.strip_prefix("/").unwrap_or(&path))
                        }
                    });
                    self.modules.push(Module { path, open_path });
                    self.by_identity.insert(identity, self.modules.len() - 1);
                    self.modules.len() - 1
                }
            };
            table.push(Mapping {
                start: p.start,
                end: p.end,
                file_offset: if p.path.starts_with('/') { p.offset } else { 0 },
                module,
            });
        }
        table.sort_by_key(|m| m.start);
        if self.processes.len() >= MAX_PROCESSES && !self.processes.contains_key(&pid) {
            // No order is kept; dropping any table only costs a re-read (or offsets for a
            // process that exited meanwhile).
            if let Some(&victim) = self.processes.keys().next() {
                self.processes.remove(&victim);
            }
        }
        self.processes.insert(pid, table);
    }
}

/// The fields of one maps line that matter here.
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    start: u64,
    end: u64,
    offset: u64,
    dev: &'a str,
    inode: u64,
    /// Without a ` (deleted)` marker; empty lines (anonymous memory) are skipped.
    path: &'a str,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    // start-end perms offset dev inode, single spaces, then padding and the path.
    let mut f = line.splitn(6, ' ');
    let (range, _perms, offset, dev, inode) =
        (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let path = f.next()?.trim_start();
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    if path.is_empty() {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(Line {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev,
        inode: inode.parse().ok()?,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 1234                       /opt/app/bin
55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 1234                       /opt/app/bin
7f1e2a000000-7f1e2a028000 r--p 00000000 fe:01 5678                       /usr/lib/libc.so.6
7f1e2a028000-7f1e2a1bd000 r-xp 00028000 fe:01 5678                       /usr/lib/libc.so.6 (deleted)
7f1e2a1bd000-7f1e2a1c0000 rw-p 00000000 00:00 0 
7ffd5c000000-7ffd5c021000 rw-p 00000000 00:00 0                          [stack]
7ffd5c1fe000-7ffd5c200000 r-xp 00000000 00:00 0                          [vdso]
";

    fn fake_proc(pid: u32, maps: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("maps"), maps).unwrap();
        root
    }

    #[test]
    fn parses_lines_with_and_without_paths() {
        let l = parse_line(MAPS.lines().nth(3).unwrap()).unwrap();
        assert_eq!(
            l,
            Line {
                start: 0x7f1e2a028000,
                end: 0x7f1e2a1bd000,
                offset: 0x28000,
                dev: "fe:01",
                inode: 5678,
                path: "/usr/lib/libc.so.6",
            }
        );
        assert_eq!(parse_line(MAPS.lines().nth(4).unwrap()), None);
        assert_eq!(
            parse_line(MAPS.lines().nth(6).unwrap()).unwrap().path,
            "[vdso]"
        );
    }

    #[test]
    fn addresses_become_file_offsets_in_one_module_per_file() {
        let proc = fake_proc(42, MAPS);
        let mut cache = ModuleCache::with_proc(proc.path());
        let got = cache.locate(42, &[0x7f1e2a028010, 0x55d0c0a01234, 0x7f1e2a000100, 0x10]);
        let Location::Module {
            module: libc,
            offset,
        } = got[0]
        else {
            panic!("{got:?}")
        };
        assert_eq!(offset, 0x28010);
        assert_eq!(cache.module(libc).path, Path::new("/usr/lib/libc.so.6"));
        assert_eq!(cache.module(libc).name(), "libc.so.6");
        assert_eq!(
            got[1],
            Location::Module {
                module: cache.by_identity[&("fe:01".into(), 1234)],
                offset: 0x1234
            }
        );
        assert_eq!(
            got[2],
            Location::Module {
                module: libc,
                offset: 0x100
            },
            "same file, same module"
        );
        assert_eq!(got[3], Location::Unknown { addr: 0x10 });
        let vdso = cache.locate(42, &[0x7ffd5c1fe010]);
        let Location::Module { module, offset } = vdso[0] else {
            panic!()
        };
        assert_eq!(
            (cache.module(module).path.to_str(), offset),
            (Some("[vdso]"), 0x10)
        );
        assert_eq!(cache.module(module).open_path, None);
    }

    #[test]
    fn a_process_gone_keeps_the_table_read_while_it_lived() {
        let proc = fake_proc(7, MAPS);
        let mut cache = ModuleCache::with_proc(proc.path());
        assert!(matches!(
            cache.locate(7, &[0x55d0c0a00010])[0],
            Location::Module { .. }
        ));
        fs::remove_dir_all(proc.path().join("7")).unwrap();
        // An address outside the table forces a re-read, which fails: the old table stays.
        let got = cache.locate(7, &[0x55d0c0a01010, 0x1]);
        assert!(
            matches!(got[0], Location::Module { offset: 0x1010, .. }),
            "{got:?}"
        );
        assert_eq!(got[1], Location::Unknown { addr: 0x1 });
        // Never read at all: unknown.
        assert_eq!(
            cache.locate(8, &[0x55d0c0a01010])[0],
            Location::Unknown {
                addr: 0x55d0c0a01010
            }
        );
    }
}
