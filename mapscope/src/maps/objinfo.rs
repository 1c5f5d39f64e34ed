//! BPF_OBJ_GET_INFO_BY_FD for maps, programs and BTF objects: the kernel copies the common
//! prefix of each info struct, so these prefixes work on older and newer kernels alike.

use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd};

use super::sys::{Cmd, bpf, c_str};

/// BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: std::ptr::from_mut(info) as u64,
    };
    bpf(Cmd::ObjGetInfoByFd, &mut attr).map(drop)
}

/// `struct bpf_map_info` up to `map_extra` (older kernels fill less, newer ones have more; the
/// kernel copies the common prefix).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapInfoRaw {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; 16],
    pub ifindex: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_id: u32,
    pub map_extra: u64,
}

/// The map's `bpf_map_info`.
pub fn map_info(fd: BorrowedFd<'_>) -> io::Result<MapInfoRaw> {
    let mut info = MapInfoRaw::default();
    obj_info(fd, &mut info)?;
    Ok(info)
}

/// `struct bpf_prog_info` up to `name`: enough for the program's id, name and map ids.
#[repr(C)]
#[derive(Default)]
struct ProgInfoPrefix {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// A program's id, name and the ids of the maps it uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgMaps {
    pub id: u32,
    pub name: String,
    pub map_ids: Vec<u32>,
}

/// The program's id, name and map ids (asking twice when it uses more than 64 maps).
pub fn prog_maps(fd: BorrowedFd<'_>) -> io::Result<ProgMaps> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut info = ProgInfoPrefix {
            nr_map_ids: ids.len() as u32,
            map_ids: ids.as_mut_ptr() as u64,
            ..Default::default()
        };
        obj_info(fd, &mut info)?;
        let n = info.nr_map_ids as usize;
        if n > ids.len() {
            ids = vec![0; n];
            continue;
        }
        ids.truncate(n);
        return Ok(ProgMaps {
            id: info.id,
            name: c_str(&info.name),
            map_ids: ids,
        });
    }
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Default)]
struct BtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

/// The raw BTF blob of a BTF object (what the program loader gave the kernel).
pub fn btf_blob(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut info = BtfInfo::default();
    obj_info(fd, &mut info)?;
    let mut blob = vec![0u8; info.btf_size as usize];
    let mut info = BtfInfo {
        btf: blob.as_mut_ptr() as u64,
        btf_size: blob.len() as u32,
        ..Default::default()
    };
    obj_info(fd, &mut info)?;
    blob.truncate(info.btf_size as usize);
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use aya_obj::generated as k;

    use super::*;

    #[test]
    fn info_attr_matches_the_kernel_headers() {
        type Info = k::bpf_attr__bindgen_ty_9;
        assert_eq!(offset_of!(InfoAttr, info_len), offset_of!(Info, info_len));
        assert_eq!(offset_of!(InfoAttr, info), offset_of!(Info, info));
    }

    #[test]
    fn info_layouts_match_the_kernel_headers() {
        type M = k::bpf_map_info;
        assert_eq!(offset_of!(MapInfoRaw, name), offset_of!(M, name));
        assert_eq!(offset_of!(MapInfoRaw, netns_dev), offset_of!(M, netns_dev));
        assert_eq!(offset_of!(MapInfoRaw, btf_id), offset_of!(M, btf_id));
        assert_eq!(
            offset_of!(MapInfoRaw, btf_key_type_id),
            offset_of!(M, btf_key_type_id)
        );
        assert_eq!(
            offset_of!(MapInfoRaw, btf_value_type_id),
            offset_of!(M, btf_value_type_id)
        );
        assert_eq!(offset_of!(MapInfoRaw, map_extra), offset_of!(M, map_extra));
        assert_eq!(size_of::<MapInfoRaw>(), size_of::<M>());

        type P = k::bpf_prog_info;
        assert_eq!(offset_of!(ProgInfoPrefix, id), offset_of!(P, id));
        assert_eq!(
            offset_of!(ProgInfoPrefix, nr_map_ids),
            offset_of!(P, nr_map_ids)
        );
        assert_eq!(offset_of!(ProgInfoPrefix, map_ids), offset_of!(P, map_ids));
        assert_eq!(offset_of!(ProgInfoPrefix, name), offset_of!(P, name));

        type B = k::bpf_btf_info;
        assert_eq!(offset_of!(BtfInfo, btf_size), offset_of!(B, btf_size));
        assert_eq!(offset_of!(BtfInfo, kernel_btf), offset_of!(B, kernel_btf));
        assert_eq!(size_of::<BtfInfo>(), size_of::<B>());
    }
}
