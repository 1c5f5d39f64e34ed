//! An open map: found by id, pin or name, with its metadata and the element operations
//! (get/set/del, push/pop/peek) that check sizes before the syscall and turn errno values into
//! messages naming the fix.

use std::{
    io,
    os::fd::{AsFd as _, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use super::{Error, MapKind, Result, objinfo, sys};

/// How the user names a map: `id N`, `pinned PATH` or `name NAME`, as bpftool does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapRef {
    Id(u32),
    Pinned(PathBuf),
    Name(String),
}

impl MapRef {
    /// Parses the two words of a map reference (`id 12`, `pinned /sys/fs/bpf/x`, `name foo`).
    pub fn parse(how: &str, what: &str) -> Result<Self> {
        match how {
            "id" => what.parse().map(MapRef::Id).map_err(|_| {
                Error::bad(format!(
                    "map id must be a number, got {what:?} (e.g. `id 12`)"
                ))
            }),
            "pinned" => Ok(MapRef::Pinned(PathBuf::from(what))),
            "name" => Ok(MapRef::Name(what.to_string())),
            other => Err(Error::bad(format!(
                "unknown map reference {other:?}: name the map with `id N`, `pinned PATH` or `name NAME`"
            ))),
        }
    }
}

/// What the kernel reports about a map (`bpf_map_info`), in the toolbox's terms.
#[derive(Clone, Debug)]
pub struct MapMeta {
    pub id: u32,
    pub kind: MapKind,
    pub name: String,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
}

impl From<objinfo::MapInfoRaw> for MapMeta {
    fn from(i: objinfo::MapInfoRaw) -> Self {
        Self {
            id: i.id,
            kind: MapKind(i.map_type),
            name: sys::c_str(&i.name),
            key_size: i.key_size,
            value_size: i.value_size,
            max_entries: i.max_entries,
            flags: i.map_flags,
            btf_id: i.btf_id,
            btf_key_type_id: i.btf_key_type_id,
            btf_value_type_id: i.btf_value_type_id,
        }
    }
}

/// Number of possible CPUs: per-CPU maps hold one value for each.
pub fn possible_cpus() -> Result<usize> {
    let path = "/sys/devices/system/cpu/possible";
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::sys(format!("reading {path}"), e))?;
    parse_cpu_ranges(&text).ok_or_else(|| Error::bad(format!("cannot parse {path}: {text:?}")))
}

/// `0-3,5` → 6: the highest CPU number plus one (per-CPU values are indexed by CPU number).
fn parse_cpu_ranges(text: &str) -> Option<usize> {
    let mut max = None;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next()?.trim().parse::<usize>().ok()?;
        max = max.max(Some(last));
    }
    max.map(|m| m + 1)
}

/// An open map.
pub struct MapHandle {
    fd: OwnedFd,
    pub meta: MapMeta,
    cpus: usize,
}

/// The three update modes of BPF_MAP_UPDATE_ELEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    /// Create or replace (`BPF_ANY`).
    Any = 0,
    /// Only create (`BPF_NOEXIST`).
    NoExist = 1,
    /// Only replace (`BPF_EXIST`).
    Exist = 2,
}

impl MapHandle {
    /// Opens the map `r` names.
    pub fn open(r: &MapRef) -> Result<Self> {
        match r {
            MapRef::Id(id) => Self::from_id(*id),
            MapRef::Pinned(path) => Self::from_pin(path),
            MapRef::Name(name) => Self::from_name(name),
        }
    }

    /// Wraps an fd the kernel gave us for a map.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        let meta: MapMeta = objinfo::map_info(fd.as_fd())
            .map_err(|e| Error::sys("reading map info", e))?
            .into();
        let cpus = if meta.kind.per_cpu() {
            possible_cpus()?
        } else {
            1
        };
        Ok(Self { fd, meta, cpus })
    }

    /// Opens map `id`.
    pub fn from_id(id: u32) -> Result<Self> {
        match sys::map_fd_by_id(id, 0) {
            Ok(fd) => Self::from_fd(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(Error::NoSuchId { id }),
            Err(e) => Err(Error::sys(format!("opening map id {id}"), e)),
        }
    }

    /// Opens the map pinned at `path`, refusing pins of programs and links.
    pub fn from_pin(path: &Path) -> Result<Self> {
        let fd = sys::obj_get(path, 0).map_err(|e| pin_error(path, e))?;
        match sys::bpf_object_kind(fd.as_fd()).as_deref() {
            Some("bpf-map") => Self::from_fd(fd),
            other => Err(Error::NotAMapPin {
                path: path.to_path_buf(),
                why: format!(
                    "pinned object is a {}, not a map",
                    other.unwrap_or("non-BPF file")
                ),
            }),
        }
    }

    /// Opens the one map called `name`; several maps of that name are an error listing them.
    pub fn from_name(name: &str) -> Result<Self> {
        let mut found = Vec::new();
        for id in map_ids()? {
            let Ok(fd) = sys::map_fd_by_id(id, 0) else {
                continue; // gone since we listed it
            };
            let Ok(info) = objinfo::map_info(fd.as_fd()) else {
                continue;
            };
            if sys::c_str(&info.name) == name {
                found.push((id, fd));
            }
        }
        match found.len() {
            0 => Err(Error::NoSuchName {
                name: name.to_string(),
            }),
            1 => Self::from_fd(found.pop().expect("one").1),
            n => Err(Error::AmbiguousName {
                name: name.to_string(),
                count: n,
                ids: found
                    .iter()
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The map's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `map 12 (name, hash)`, for messages.
    pub fn label(&self) -> String {
        format!(
            "map {} ({}{}{})",
            self.meta.id,
            self.meta.name,
            if self.meta.name.is_empty() { "" } else { ", " },
            self.meta.kind.display()
        )
    }

    /// Copies of each value in a lookup: the possible CPUs for per-CPU maps, else 1.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// Bytes between CPUs' copies in a per-CPU value (the kernel rounds each up to 8), or the
    /// value size.
    pub fn stride(&self) -> usize {
        if self.meta.kind.per_cpu() {
            (self.meta.value_size as usize).next_multiple_of(8)
        } else {
            self.meta.value_size as usize
        }
    }

    /// Bytes of one full lookup result.
    pub fn value_len(&self) -> usize {
        self.stride() * self.cpus
    }

    fn check_len(&self, what: &str, got: usize, want: u32, example: &str) -> Result<()> {
        if got == want as usize {
            return Ok(());
        }
        Err(Error::bad(format!(
            "{what} is {got} bytes but {} takes {want}-byte {what}s: give exactly {want} bytes \
             (e.g. `{what} {example}`)",
            self.label()
        )))
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if self.meta.kind.keyless() {
            return Err(self.unsupported("keys", "use `map push`, `map pop` or `map peek`"));
        }
        self.check_len(
            "key",
            key.len(),
            self.meta.key_size,
            &example(self.meta.key_size),
        )
    }

    fn unsupported(&self, op: &str, fix: &str) -> Error {
        Error::Unsupported {
            map: format!("map {}", self.meta.id),
            kind: self.meta.kind.display(),
            op: op.to_string(),
            fix: fix.to_string(),
        }
    }

    /// The value for `key` (all CPUs' copies for per-CPU maps).
    pub fn get(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.check_key(key)?;
        let mut value = vec![0u8; self.value_len()];
        sys::lookup(self.fd(), Some(key), &mut value).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound {
                what: format!("key {}", hex_words(key)),
                map: self.label(),
            },
            _ => self.op_error("lookup", e),
        })?;
        Ok(value)
    }

    /// Writes `value` (one copy; per-CPU maps get it on every CPU) under `key`.
    pub fn set(&self, key: &[u8], value: &[u8], mode: UpdateMode) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)?;
        let full = self.replicate(value);
        let words = hex_words(key);
        sys::update(self.fd(), Some(key), &full, mode as u64).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => Error::bad(format!(
                "key {words} already exists in {} and `noexist` was given: use `any` or \
                     `exist` to replace it",
                self.label()
            )),
            Some(libc::ENOENT) => Error::NotFound {
                what: format!("key {words} (`exist` only replaces)"),
                map: self.label(),
            },
            Some(libc::E2BIG) if self.meta.kind.indexed() => Error::bad(format!(
                "index {} is out of range for {} ({} entries)",
                super::typed::le_u64(key),
                self.label(),
                self.meta.max_entries
            )),
            Some(libc::E2BIG) => self.full(),
            _ => self.op_error("update", e),
        })
    }

    /// Deletes `key`.
    pub fn del(&self, key: &[u8]) -> Result<()> {
        self.check_key(key)?;
        sys::delete(self.fd(), key).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound {
                what: format!("key {}", hex_words(key)),
                map: self.label(),
            },
            Some(libc::EINVAL) if self.meta.kind.indexed() => self.unsupported(
                "deleting entries",
                "every index of an array always exists: set it to zero with `map set` instead",
            ),
            _ => self.op_error("delete", e),
        })
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        self.check_len(
            "value",
            value.len(),
            self.meta.value_size,
            &example(self.meta.value_size),
        )
    }

    fn replicate(&self, value: &[u8]) -> Vec<u8> {
        if !self.meta.kind.per_cpu() {
            return value.to_vec();
        }
        let mut full = vec![0u8; self.value_len()];
        for chunk in full.chunks_mut(self.stride()) {
            chunk[..value.len()].copy_from_slice(value);
        }
        full
    }

    fn check_keyless(&self, op: &str) -> Result<()> {
        if self.meta.kind.keyless() {
            Ok(())
        } else {
            Err(self.unsupported(
                op,
                "only queue and stack maps have push/pop/peek: use `map get`, `map set` or `map del`",
            ))
        }
    }

    /// Pushes `value` onto a queue or stack; `overwrite` drops the oldest entry when full.
    pub fn push(&self, value: &[u8], overwrite: bool) -> Result<()> {
        self.check_keyless("push")?;
        self.check_value(value)?;
        let flags = if overwrite {
            UpdateMode::Exist
        } else {
            UpdateMode::Any
        };
        sys::update(self.fd(), None, value, flags as u64).map_err(|e| match e.raw_os_error() {
            Some(libc::E2BIG) => Error::bad(format!(
                "{} is full ({} entries): pop entries first, or push with `exist` to overwrite the oldest",
                self.label(),
                self.meta.max_entries
            )),
            _ => self.op_error("push", e),
        })
    }

    /// Removes and returns the next value (oldest for a queue, newest for a stack).
    pub fn pop(&self) -> Result<Vec<u8>> {
        self.check_keyless("pop")?;
        let mut value = vec![0u8; self.meta.value_size as usize];
        sys::lookup_and_delete(self.fd(), None, &mut value)
            .map_err(|e| self.pop_error("pop", e))?;
        Ok(value)
    }

    /// Returns the next value without removing it.
    pub fn peek(&self) -> Result<Vec<u8>> {
        self.check_keyless("peek")?;
        let mut value = vec![0u8; self.meta.value_size as usize];
        sys::lookup(self.fd(), None, &mut value).map_err(|e| self.pop_error("peek", e))?;
        Ok(value)
    }

    fn pop_error(&self, op: &'static str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ENOENT) => Error::Empty {
                map: self.label(),
                op,
            },
            _ => self.op_error(op, e),
        }
    }

    fn full(&self) -> Error {
        Error::Full {
            map: self.label(),
            max_entries: self.meta.max_entries,
        }
    }

    fn op_error(&self, op: &str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP | sys::ENOTSUPP) => self.unsupported(
                &format!("{op} from user space"),
                "only the programs using it can do that",
            ),
            _ => Error::sys(format!("{op} in {}", self.label()), e),
        }
    }
}

/// Every map id on the host, in id order.
pub fn map_ids() -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut id = 0;
    while let Some(next) = sys::map_next_id(id).map_err(|e| Error::sys("listing maps", e))? {
        ids.push(next);
        id = next;
    }
    Ok(ids)
}

fn pin_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotAMapPin {
            path: path.to_path_buf(),
            why: "no such pin: see `mapscope map list` for pinned paths".to_string(),
        },
        Some(libc::EINVAL | libc::EPERM | libc::ENOTDIR) if !super::pin::on_bpffs(path) => {
            Error::NotAMapPin {
                path: path.to_path_buf(),
                why: "not a BPF pin (it is not on a bpffs mount such as /sys/fs/bpf)".to_string(),
            }
        }
        _ => Error::sys(format!("opening pin {}", path.display()), e),
    }
}

/// `0x0a 0x00 0x00 0x01`: bytes as bpftool's hex words, for messages.
pub fn hex_words(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An example key or value of `size` bytes in the typed syntax.
fn example(size: u32) -> String {
    match size {
        1 => "u8:1".into(),
        2 => "u16:1".into(),
        4 => "u32:1".into(),
        8 => "u64:1".into(),
        n => format!("hex:{}", "00".repeat(n as usize)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ranges() {
        assert_eq!(parse_cpu_ranges("0-1\n"), Some(2));
        assert_eq!(parse_cpu_ranges("0\n"), Some(1));
        assert_eq!(parse_cpu_ranges("0-3,5,7-8"), Some(9));
        assert_eq!(parse_cpu_ranges("x"), None);
    }

    #[test]
    fn references() {
        assert_eq!(MapRef::parse("id", "12").unwrap(), MapRef::Id(12));
        assert_eq!(
            MapRef::parse("name", "XDP_STATS_ARR").unwrap(),
            MapRef::Name("XDP_STATS_ARR".into())
        );
        assert!(MapRef::parse("id", "x").is_err());
        assert!(MapRef::parse("tag", "1").is_err());
    }

    #[test]
    fn hex_words_and_examples() {
        assert_eq!(hex_words(&[10, 0, 255]), "0x0a 0x00 0xff");
        assert_eq!(example(4), "u32:1");
        assert_eq!(example(3), "hex:000000");
    }
}
