//! Maps the map-toolbox tests create and fill themselves through raw bpf() calls, independent of
//! mapscope's own syscall layer, so a layout bug there cannot hide behind a matching bug here.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

pub const HASH: u32 = 1;
pub const ARRAY: u32 = 2;
pub const PERCPU_HASH: u32 = 5;
pub const PERCPU_ARRAY: u32 = 6;
pub const LRU_HASH: u32 = 9;
pub const LPM_TRIE: u32 = 11;
pub const QUEUE: u32 = 22;
pub const STACK: u32 = 23;

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_MAP_DELETE_ELEM: i64 = 3;
const BPF_OBJ_PIN: i64 = 6;
const BPF_BTF_LOAD: i64 = 18;

fn bpf<A>(cmd: i64, attr: &mut A) -> std::io::Result<i64> {
    // SAFETY: `attr` is a #[repr(C)] prefix of union bpf_attr with pointers to live buffers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<A>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
}

#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Number of possible CPUs (per-CPU values hold one 8-byte-aligned copy each).
pub fn cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    text.trim()
        .split(',')
        .map(|p| p.rsplit('-').next().unwrap().parse::<usize>().unwrap())
        .max()
        .unwrap()
        + 1
}

/// BTF type ids of a map's key and value, with the loaded BTF object.
pub struct MapBtf {
    pub fd: OwnedFd,
    pub key: u32,
    pub value: u32,
}

/// A map created by the test and pinned at a unique path; unpinned and closed on drop.
pub struct TestMap {
    pub fd: OwnedFd,
    pub pin: PathBuf,
    pub kind: u32,
    pub value_size: usize,
}

/// Prefix of every pin the tests make, so a crashed run's leftovers are recognisable.
pub const PIN_PREFIX: &str = "/sys/fs/bpf/mapscope-test-";

impl TestMap {
    /// Creates a map (LPM tries get BPF_F_NO_PREALLOC) and pins it.
    pub fn new(tag: &str, kind: u32, key: u32, value: u32, entries: u32) -> Self {
        Self::with_btf(tag, kind, key, value, entries, None)
    }

    /// Like `new`, naming the map `tag` (≤ 15 bytes) and attaching BTF key/value types.
    pub fn with_btf(
        tag: &str,
        kind: u32,
        key: u32,
        value: u32,
        entries: u32,
        btf: Option<&MapBtf>,
    ) -> Self {
        let mut attr = CreateAttr {
            map_type: kind,
            key_size: key,
            value_size: value,
            max_entries: entries,
            map_flags: if kind == LPM_TRIE { 1 } else { 0 },
            ..Default::default()
        };
        attr.map_name[..tag.len()].copy_from_slice(tag.as_bytes());
        if let Some(b) = btf {
            attr.btf_fd = b.fd.as_raw_fd() as u32;
            attr.btf_key_type_id = b.key;
            attr.btf_value_type_id = b.value;
        }
        let rc = bpf(BPF_MAP_CREATE, &mut attr).expect("creating test map");
        // SAFETY: BPF_MAP_CREATE returned a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(rc as i32) };
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let pin = PathBuf::from(format!(
            "{PIN_PREFIX}{}-{}-{tag}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&pin);
        let path = CString::new(pin.to_str().unwrap()).unwrap();
        #[repr(C)]
        struct Obj {
            path: u64,
            fd: u32,
            flags: u32,
        }
        let mut obj = Obj {
            path: path.as_ptr() as u64,
            fd: fd.as_raw_fd() as u32,
            flags: 0,
        };
        bpf(BPF_OBJ_PIN, &mut obj).expect("pinning test map");
        Self {
            fd,
            pin,
            kind,
            value_size: value as usize,
        }
    }

    /// The pin path as a string, for command lines.
    pub fn path(&self) -> &str {
        self.pin.to_str().unwrap()
    }

    fn per_cpu(&self) -> bool {
        matches!(self.kind, PERCPU_HASH | PERCPU_ARRAY)
    }

    /// Bytes of one lookup: every CPU's copy for per-CPU maps.
    pub fn value_len(&self) -> usize {
        if self.per_cpu() {
            self.value_size.next_multiple_of(8) * cpus()
        } else {
            self.value_size
        }
    }

    fn elem(&self, key: Option<&[u8]>, value: u64, flags: u64) -> ElemAttr {
        ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            pad: 0,
            key: key.map_or(0, |k| k.as_ptr() as u64),
            value,
            flags,
        }
    }

    /// Writes a full value (all CPUs' copies for per-CPU maps).
    pub fn update(&self, key: &[u8], value: &[u8]) {
        self.try_update(key, value).expect("update");
    }

    /// Like `update`, returning the error (a full map, for writers that churn).
    pub fn try_update(&self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        assert_eq!(value.len(), self.value_len());
        let mut a = self.elem(Some(key), value.as_ptr() as u64, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
    }

    /// Pushes onto a queue/stack.
    pub fn push(&self, value: &[u8]) {
        let mut a = self.elem(None, value.as_ptr() as u64, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).expect("push");
    }

    /// The full value of `key`, None when absent.
    pub fn lookup(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut v = vec![0u8; self.value_len()];
        let mut a = self.elem(Some(key), v.as_mut_ptr() as u64, 0);
        bpf(BPF_MAP_LOOKUP_ELEM, &mut a).ok().map(|_| v)
    }

    /// Deletes `key` (true when it existed).
    pub fn delete(&self, key: &[u8]) -> bool {
        let mut a = self.elem(Some(key), 0, 0);
        bpf(BPF_MAP_DELETE_ELEM, &mut a).is_ok()
    }
}

impl Drop for TestMap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pin);
    }
}

/// Removes pins a crashed earlier run of this test binary left behind (other pids' pins).
pub fn remove_stale_pins() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    let mine = format!("{PIN_PREFIX}{}-", std::process::id());
    for e in entries.flatten() {
        let p = e.path();
        let s = p.to_string_lossy();
        if s.starts_with(PIN_PREFIX) && !s.starts_with(&mine) {
            let pid: Option<u32> = s[PIN_PREFIX.len()..]
                .split('-')
                .next()
                .and_then(|p| p.parse().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// A little BTF writer: types are raw words, names go to the string section.
pub struct BtfBuilder {
    types: Vec<u32>,
    strings: Vec<u8>,
    next_id: u32,
}

impl BtfBuilder {
    pub fn new() -> Self {
        Self {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    /// Adds `name` to the string section and returns its offset.
    pub fn name(&mut self, name: &str) -> u32 {
        let off = self.strings.len() as u32;
        self.strings.extend(name.as_bytes());
        self.strings.push(0);
        off
    }

    /// Appends one type's words and returns its id.
    pub fn add(&mut self, words: &[u32]) -> u32 {
        self.types.extend(words);
        self.next_id += 1;
        self.next_id - 1
    }

    /// Loads the BTF into the kernel.
    pub fn load(&self) -> OwnedFd {
        let tb: Vec<u8> = self.types.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut blob = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24u32,
            0,
            tb.len() as u32,
            tb.len() as u32,
            self.strings.len() as u32,
        ] {
            blob.extend(v.to_le_bytes());
        }
        blob.extend(tb);
        blob.extend(&self.strings);
        let mut log = vec![0u8; 64 * 1024];
        #[repr(C)]
        struct Load {
            btf: u64,
            log_buf: u64,
            btf_size: u32,
            log_size: u32,
            log_level: u32,
        }
        let mut attr = Load {
            btf: blob.as_ptr() as u64,
            log_buf: log.as_mut_ptr() as u64,
            btf_size: blob.len() as u32,
            log_size: log.len() as u32,
            log_level: 1,
        };
        match bpf(BPF_BTF_LOAD, &mut attr) {
            // SAFETY: BPF_BTF_LOAD returned a new fd we own.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
            Err(e) => panic!(
                "BTF_LOAD: {e}: {}",
                String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)])
            ),
        }
    }
}
