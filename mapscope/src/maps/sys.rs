//! The bpf() commands the map toolbox needs that aya 0.14 does not expose: batch lookups and
//! updates, element operations on any map by fd, ids, pins and object info. Each command gets a
//! small `#[repr(C)]` attr struct: a prefix of the kernel's `union bpf_attr` (the kernel zero-fills
//! the rest of the union when `size` is shorter). The layouts are checked against aya-obj's
//! bindgen copy of the kernel headers in the tests below. Object info lives in `objinfo.rs`.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
};

/// `enum bpf_cmd` values used here.
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub(super) enum Cmd {
    MapCreate = 0,
    MapLookupElem = 1,
    MapUpdateElem = 2,
    MapDeleteElem = 3,
    MapGetNextKey = 4,
    ObjPin = 6,
    ObjGet = 7,
    ProgGetNextId = 11,
    MapGetNextId = 12,
    ProgGetFdById = 13,
    MapGetFdById = 14,
    ObjGetInfoByFd = 15,
    BtfGetFdById = 19,
    MapLookupAndDeleteElem = 21,
    MapLookupBatch = 24,
    MapUpdateBatch = 26,
}

/// The kernel's internal "not supported" errno, which leaks out of batch commands on map types
/// without batch support (include/linux/errno.h).
pub const ENOTSUPP: i32 = 524;
/// `BPF_F_RDONLY` for BPF_OBJ_GET / BPF_MAP_GET_FD_BY_ID: read access is all a dump needs.
pub const BPF_F_RDONLY: u32 = 1 << 3;

/// Issues one bpf() command. `attr` must be one of the attr structs below.
pub(super) fn bpf<A>(cmd: Cmd, attr: &mut A) -> io::Result<i64> {
    // SAFETY: every `A` here is a `#[repr(C)]` prefix of `union bpf_attr` whose pointer fields
    // point at buffers that outlive the call and are as large as the kernel will access (the
    // callers size them from the map's key/value sizes); the kernel reads at most
    // `size_of::<A>()` bytes of `attr` and may write back into it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<A>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn new_fd(rc: i64) -> OwnedFd {
    // SAFETY: the commands that return a file descriptor return a new one we now own.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

fn ptr(buf: &[u8]) -> u64 {
    buf.as_ptr() as u64
}

fn opt_ptr(buf: Option<&[u8]>) -> u64 {
    buf.map_or(0, ptr)
}

/// BPF_MAP_CREATE: the fields up to `map_extra`.
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
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

/// What BPF_MAP_CREATE needs for a plain map (no BTF, no inner map).
#[derive(Clone, Debug, Default)]
pub struct CreateSpec {
    /// `enum bpf_map_type` value.
    pub map_type: u32,
    /// Bytes per key (0 for queue and stack).
    pub key_size: u32,
    /// Bytes per value.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub flags: u32,
    /// At most 15 bytes of `[A-Za-z0-9_.]`.
    pub name: String,
}

/// BPF_MAP_CREATE.
pub fn map_create(spec: &CreateSpec) -> io::Result<OwnedFd> {
    let mut attr = CreateAttr {
        map_type: spec.map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: spec.flags,
        ..Default::default()
    };
    let n = spec.name.len().min(15);
    attr.map_name[..n].copy_from_slice(&spec.name.as_bytes()[..n]);
    bpf(Cmd::MapCreate, &mut attr).map(new_fd)
}

/// BPF_MAP_*_ELEM and BPF_MAP_GET_NEXT_KEY: `value` doubles as `next_key`.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn elem(map: BorrowedFd<'_>, key: Option<&[u8]>, value: u64, flags: u64) -> ElemAttr {
    ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: opt_ptr(key),
        value,
        flags,
    }
}

/// BPF_MAP_LOOKUP_ELEM; `key` is None for queue/stack peek. `value` must hold the whole value
/// (every CPU's copy, 8-byte aligned each, for per-CPU maps).
pub fn lookup(map: BorrowedFd<'_>, key: Option<&[u8]>, value: &mut [u8]) -> io::Result<()> {
    let mut attr = elem(map, key, value.as_mut_ptr() as u64, 0);
    bpf(Cmd::MapLookupElem, &mut attr).map(drop)
}

/// BPF_MAP_UPDATE_ELEM with `BPF_ANY`/`BPF_NOEXIST`/`BPF_EXIST`; `key` is None for queue/stack push.
pub fn update(map: BorrowedFd<'_>, key: Option<&[u8]>, value: &[u8], flags: u64) -> io::Result<()> {
    let mut attr = elem(map, key, ptr(value), flags);
    bpf(Cmd::MapUpdateElem, &mut attr).map(drop)
}

/// BPF_MAP_DELETE_ELEM.
pub fn delete(map: BorrowedFd<'_>, key: &[u8]) -> io::Result<()> {
    let mut attr = elem(map, Some(key), 0, 0);
    bpf(Cmd::MapDeleteElem, &mut attr).map(drop)
}

/// BPF_MAP_LOOKUP_AND_DELETE_ELEM; `key` is None for queue/stack pop.
pub fn lookup_and_delete(
    map: BorrowedFd<'_>,
    key: Option<&[u8]>,
    value: &mut [u8],
) -> io::Result<()> {
    let mut attr = elem(map, key, value.as_mut_ptr() as u64, 0);
    bpf(Cmd::MapLookupAndDeleteElem, &mut attr).map(drop)
}

/// BPF_MAP_GET_NEXT_KEY: the key after `key` (the first key when None) into `next`; false at
/// the end of the map.
pub fn next_key(map: BorrowedFd<'_>, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    let mut attr = elem(map, key, next.as_mut_ptr() as u64, 0);
    match bpf(Cmd::MapGetNextKey, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// BPF_MAP_*_BATCH.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// One BPF_MAP_LOOKUP_BATCH call: up to `count` entries after the `in_batch` cursor (None: from
/// the start) into `keys`/`values`, the cursor for the next call into `out_batch`. Returns the
/// number of entries read and whether the map is exhausted (the kernel's ENOENT, which may come
/// with a last partial batch).
pub fn lookup_batch(
    map: BorrowedFd<'_>,
    in_batch: Option<&[u8]>,
    out_batch: &mut [u8],
    keys: &mut [u8],
    values: &mut [u8],
    count: u32,
) -> io::Result<(u32, bool)> {
    let mut attr = BatchAttr {
        in_batch: opt_ptr(in_batch),
        out_batch: out_batch.as_mut_ptr() as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    match bpf(Cmd::MapLookupBatch, &mut attr) {
        Ok(_) => Ok((attr.count, false)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((attr.count, true)),
        Err(e) => Err(e),
    }
}

/// BPF_MAP_UPDATE_BATCH of `count` packed keys and values; returns how many the kernel wrote
/// (all of them unless it failed part-way).
pub fn update_batch(
    map: BorrowedFd<'_>,
    keys: &[u8],
    values: &[u8],
    count: u32,
    elem_flags: u64,
) -> (u32, io::Result<()>) {
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: ptr(keys),
        values: ptr(values),
        count,
        map_fd: map.as_raw_fd() as u32,
        elem_flags,
        flags: 0,
    };
    let res = bpf(Cmd::MapUpdateBatch, &mut attr).map(drop);
    (attr.count, res)
}

/// BPF_OBJ_PIN / BPF_OBJ_GET.
#[repr(C)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

fn c_path(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt as _;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// BPF_OBJ_PIN: pins `fd` at `path` on a bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    bpf(Cmd::ObjPin, &mut attr).map(drop)
}

/// BPF_OBJ_GET: opens whatever is pinned at `path` (map, program or link).
pub fn obj_get(path: &Path, file_flags: u32) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags,
        path_fd: 0,
        _pad: 0,
    };
    bpf(Cmd::ObjGet, &mut attr).map(new_fd)
}

/// BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID.
#[repr(C)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

fn next_id(cmd: Cmd, start: u32) -> io::Result<Option<u32>> {
    let mut attr = IdAttr {
        id: start,
        next_id: 0,
        open_flags: 0,
    };
    match bpf(cmd, &mut attr) {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The id of the first map after `start` on the host.
pub fn map_next_id(start: u32) -> io::Result<Option<u32>> {
    next_id(Cmd::MapGetNextId, start)
}

/// The id of the first program after `start` on the host.
pub fn prog_next_id(start: u32) -> io::Result<Option<u32>> {
    next_id(Cmd::ProgGetNextId, start)
}

fn fd_by_id(cmd: Cmd, id: u32, open_flags: u32) -> io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        next_id: 0,
        open_flags,
    };
    bpf(cmd, &mut attr).map(new_fd)
}

/// A new fd for map `id` (`open_flags` 0 or [`BPF_F_RDONLY`]).
pub fn map_fd_by_id(id: u32, open_flags: u32) -> io::Result<OwnedFd> {
    fd_by_id(Cmd::MapGetFdById, id, open_flags)
}

/// A new fd for program `id`.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    fd_by_id(Cmd::ProgGetFdById, id, 0)
}

/// A new fd for BTF object `id`.
pub fn btf_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    fd_by_id(Cmd::BtfGetFdById, id, 0)
}

/// A NUL-padded kernel name as a string.
pub fn c_str(name: &[u8]) -> String {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// What kind of BPF object an fd is (`bpf-map`, `bpf-prog`, `bpf_link`, …), from its anon inode
/// name; None when it is no BPF object.
pub fn bpf_object_kind(fd: BorrowedFd<'_>) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let name = link.to_str()?.strip_prefix("anon_inode:")?;
    name.starts_with("bpf").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use aya_obj::generated as k;

    use super::*;

    #[test]
    fn command_numbers_match_the_kernel() {
        for (ours, theirs) in [
            (Cmd::MapCreate, k::bpf_cmd::BPF_MAP_CREATE),
            (Cmd::MapLookupElem, k::bpf_cmd::BPF_MAP_LOOKUP_ELEM),
            (Cmd::MapUpdateElem, k::bpf_cmd::BPF_MAP_UPDATE_ELEM),
            (Cmd::MapDeleteElem, k::bpf_cmd::BPF_MAP_DELETE_ELEM),
            (Cmd::MapGetNextKey, k::bpf_cmd::BPF_MAP_GET_NEXT_KEY),
            (Cmd::ObjPin, k::bpf_cmd::BPF_OBJ_PIN),
            (Cmd::ObjGet, k::bpf_cmd::BPF_OBJ_GET),
            (Cmd::ProgGetNextId, k::bpf_cmd::BPF_PROG_GET_NEXT_ID),
            (Cmd::MapGetNextId, k::bpf_cmd::BPF_MAP_GET_NEXT_ID),
            (Cmd::ProgGetFdById, k::bpf_cmd::BPF_PROG_GET_FD_BY_ID),
            (Cmd::MapGetFdById, k::bpf_cmd::BPF_MAP_GET_FD_BY_ID),
            (Cmd::ObjGetInfoByFd, k::bpf_cmd::BPF_OBJ_GET_INFO_BY_FD),
            (Cmd::BtfGetFdById, k::bpf_cmd::BPF_BTF_GET_FD_BY_ID),
            (
                Cmd::MapLookupAndDeleteElem,
                k::bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            ),
            (Cmd::MapLookupBatch, k::bpf_cmd::BPF_MAP_LOOKUP_BATCH),
            (Cmd::MapUpdateBatch, k::bpf_cmd::BPF_MAP_UPDATE_BATCH),
        ] {
            assert_eq!(ours as u32, theirs as u32, "{ours:?}");
        }
    }

    /// Every field we use sits where the kernel headers put it.
    #[test]
    fn attr_layouts_match_the_kernel_headers() {
        type Create = k::bpf_attr__bindgen_ty_1;
        assert_eq!(
            offset_of!(CreateAttr, map_flags),
            offset_of!(Create, map_flags)
        );
        assert_eq!(
            offset_of!(CreateAttr, map_name),
            offset_of!(Create, map_name)
        );
        assert_eq!(offset_of!(CreateAttr, btf_fd), offset_of!(Create, btf_fd));
        assert_eq!(
            offset_of!(CreateAttr, map_extra),
            offset_of!(Create, map_extra)
        );

        type Elem = k::bpf_attr__bindgen_ty_2;
        assert_eq!(offset_of!(ElemAttr, key), offset_of!(Elem, key));
        assert_eq!(
            offset_of!(ElemAttr, value),
            offset_of!(Elem, __bindgen_anon_1)
        );
        assert_eq!(offset_of!(ElemAttr, flags), offset_of!(Elem, flags));
        assert_eq!(size_of::<ElemAttr>(), size_of::<Elem>());

        type Batch = k::bpf_attr__bindgen_ty_3;
        assert_eq!(
            offset_of!(BatchAttr, out_batch),
            offset_of!(Batch, out_batch)
        );
        assert_eq!(offset_of!(BatchAttr, keys), offset_of!(Batch, keys));
        assert_eq!(offset_of!(BatchAttr, values), offset_of!(Batch, values));
        assert_eq!(offset_of!(BatchAttr, count), offset_of!(Batch, count));
        assert_eq!(offset_of!(BatchAttr, map_fd), offset_of!(Batch, map_fd));
        assert_eq!(
            offset_of!(BatchAttr, elem_flags),
            offset_of!(Batch, elem_flags)
        );
        assert_eq!(offset_of!(BatchAttr, flags), offset_of!(Batch, flags));
        assert_eq!(size_of::<BatchAttr>(), size_of::<Batch>());

        type Obj = k::bpf_attr__bindgen_ty_5;
        assert_eq!(offset_of!(ObjAttr, bpf_fd), offset_of!(Obj, bpf_fd));
        assert_eq!(offset_of!(ObjAttr, file_flags), offset_of!(Obj, file_flags));
        assert_eq!(offset_of!(ObjAttr, path_fd), offset_of!(Obj, path_fd));

        type Id = k::bpf_attr__bindgen_ty_8;
        assert_eq!(offset_of!(IdAttr, next_id), offset_of!(Id, next_id));
        assert_eq!(offset_of!(IdAttr, open_flags), offset_of!(Id, open_flags));
    }

    #[test]
    fn c_str_stops_at_nul() {
        assert_eq!(c_str(b"abc\0\0\0"), "abc");
        assert_eq!(c_str(b"full"), "full");
    }
}
