//! `map list` / `map show` records: what bpftool shows for a map (same JSON field names), plus the
//! programs using it, its pinned paths and, for mapscope's own maps, the owning family.

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{Error, MapHandle, Result, objinfo, own, sys};

/// Most entries visited when scanning bpffs for pins, so a huge pin tree can't stall `list`.
const MAX_PIN_SCAN: usize = 20_000;
/// Deepest directory level scanned below a bpffs mount.
const MAX_PIN_DEPTH: usize = 16;

/// A program that uses a map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgRef {
    pub id: u32,
    pub name: String,
}

/// One map, as `map list`/`map show` print it. The fields up to `btf_id` are bpftool's.
#[derive(Clone, Debug, Serialize)]
pub struct MapRecord {
    pub id: u32,
    /// bpftool's type name, or the number for a type newer than mapscope.
    #[serde(rename = "type")]
    pub kind: serde_json::Value,
    pub name: String,
    pub flags: u32,
    pub bytes_key: u32,
    pub bytes_value: u32,
    pub max_entries: u32,
    /// Memory charged to the map, from `/proc/self/fdinfo` (absent on kernels without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_memlock: Option<u64>,
    pub frozen: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btf_id: Option<u32>,
    /// Paths the map is pinned at on any bpffs mount (what `bpftool -f` adds).
    pub pinned: Vec<String>,
    /// Programs whose `map_ids` include this map.
    pub programs: Vec<ProgRef>,
    /// The mapscope family owning the map (by name prefix, or for `.rodata` by its programs),
    /// null for everyone else's.
    pub family: Option<&'static str>,
}

/// Who uses which map and where each is pinned, gathered once per `list`.
#[derive(Default)]
pub struct Inventory {
    programs: HashMap<u32, Vec<ProgRef>>,
    pins: HashMap<u32, Vec<PathBuf>>,
}

impl Inventory {
    /// Walks every program and every bpffs mount on the host.
    pub fn gather() -> Result<Self> {
        let mut inv = Inventory::default();
        let mut id = 0;
        while let Some(next) =
            sys::prog_next_id(id).map_err(|e| Error::sys("listing programs", e))?
        {
            id = next;
            // A program may unload between the two calls: skip it.
            let Ok(fd) = sys::prog_fd_by_id(next) else {
                continue;
            };
            let Ok(prog) = objinfo::prog_maps(fd.as_fd()) else {
                continue;
            };
            for map in &prog.map_ids {
                inv.programs.entry(*map).or_default().push(ProgRef {
                    id: prog.id,
                    name: prog.name.clone(),
                });
            }
        }
        let mut budget = MAX_PIN_SCAN;
        for mount in bpffs_mounts() {
            scan_pins(&mount, 0, &mut budget, &mut inv.pins);
        }
        for pins in inv.pins.values_mut() {
            pins.sort();
            pins.dedup();
        }
        Ok(inv)
    }

    /// The record for an open map.
    pub fn record(&self, map: &MapHandle) -> MapRecord {
        let m = &map.meta;
        let fdinfo = FdInfo::read(map.fd());
        MapRecord {
            id: m.id,
            kind: m.kind.name().map_or_else(
                || serde_json::Value::from(m.kind.0),
                serde_json::Value::from,
            ),
            name: m.name.clone(),
            flags: m.flags,
            bytes_key: m.key_size,
            bytes_value: m.value_size,
            max_entries: m.max_entries,
            bytes_memlock: fdinfo.memlock,
            frozen: fdinfo.frozen,
            btf_id: (m.btf_id != 0).then_some(m.btf_id),
            pinned: self
                .pins
                .get(&m.id)
                .map(|p| p.iter().map(|p| p.display().to_string()).collect())
                .unwrap_or_default(),
            family: own::family_of(
                &m.name,
                self.programs
                    .get(&m.id)
                    .into_iter()
                    .flatten()
                    .map(|p| p.name.as_str()),
            ),
            programs: self.programs.get(&m.id).cloned().unwrap_or_default(),
        }
    }
}

/// Every map on the host, in id order (maps that vanish while listing are skipped).
pub fn list() -> Result<Vec<MapRecord>> {
    let ids = super::handle::map_ids()?;
    let inv = Inventory::gather()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match MapHandle::from_id(id) {
            Ok(map) => out.push(inv.record(&map)),
            Err(Error::NoSuchId { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The fields bpftool reads from `/proc/self/fdinfo/<fd>`.
struct FdInfo {
    memlock: Option<u64>,
    frozen: u32,
}

impl FdInfo {
    fn read(fd: BorrowedFd<'_>) -> Self {
        let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
            .unwrap_or_default();
        Self::parse(&text)
    }

    fn parse(text: &str) -> Self {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Self {
            memlock: field("memlock"),
            frozen: field("frozen").unwrap_or(0) as u32,
        }
    }
}

/// Mount points of every bpffs visible to this process.
fn bpffs_mounts() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount = pre.split(' ').nth(4)?;
            (post.split(' ').next()? == "bpf").then(|| PathBuf::from(unescape(mount)))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// mountinfo escapes spaces and friends as `\040`-style octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Records every map pinned below `dir`, within the scan budget.
fn scan_pins(dir: &Path, depth: usize, budget: &mut usize, pins: &mut HashMap<u32, Vec<PathBuf>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        if ft.is_dir() {
            if depth < MAX_PIN_DEPTH {
                scan_pins(&path, depth + 1, budget, pins);
            }
        } else if ft.is_file()
            && let Ok(fd) = sys::obj_get(&path, sys::BPF_F_RDONLY)
            && sys::bpf_object_kind(fd.as_fd()).as_deref() == Some("bpf-map")
            && let Ok(info) = objinfo::map_info(fd.as_fd())
        {
            pins.entry(info.id).or_default().push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields() {
        let f =
            FdInfo::parse("pos:\t0\nflags:\t02000002\nmap_type:\t1\nmemlock:\t2320\nfrozen:\t1\n");
        assert_eq!(f.memlock, Some(2320));
        assert_eq!(f.frozen, 1);
        let f = FdInfo::parse("");
        assert_eq!((f.memlock, f.frozen), (None, 0));
    }

    #[test]
    fn mountinfo_unescapes_paths() {
        assert_eq!(unescape("/sys/fs/bpf"), "/sys/fs/bpf");
        assert_eq!(unescape("/mnt/my\\040bpf"), "/mnt/my bpf");
    }
}
