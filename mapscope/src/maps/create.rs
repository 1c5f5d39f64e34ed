//! `map create` (bpftool's, pinned so the map outlives the command) and the bench's bulk fill.

use std::{os::fd::AsFd as _, path::Path};

use super::{Error, MapHandle, MapKind, Result, pin, sys};

/// `BPF_F_NO_PREALLOC`, which LPM tries require.
const BPF_F_NO_PREALLOC: u32 = 1;

/// A map to create.
#[derive(Clone, Debug)]
pub struct NewMap {
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub name: String,
}

/// Creates the map and pins it at `path` (an unpinned map would vanish when mapscope exits).
pub fn create(spec: &NewMap, path: &Path) -> Result<MapHandle> {
    if spec.name.len() > 15
        || !spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return Err(Error::bad(format!(
            "map name {:?} must be at most 15 characters of A-Z, a-z, 0-9, _ and .",
            spec.name
        )));
    }
    pin::check_new_pin(path)?;
    let mut flags = spec.flags;
    if spec.kind == MapKind::LPM_TRIE {
        flags |= BPF_F_NO_PREALLOC;
    }
    let fd = sys::map_create(&sys::CreateSpec {
        map_type: spec.kind.0,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        flags,
        name: spec.name.clone(),
    })
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => Error::bad(format!(
            "the kernel refused a {} map with {}-byte keys, {}-byte values, {} entries and flags \
             {:#x}: check the sizes this type requires (e.g. queue/stack keys are 0 bytes, array \
             keys 4, LPM trie keys 4 + address bytes)",
            spec.kind.display(),
            spec.key_size,
            spec.value_size,
            spec.max_entries,
            flags
        )),
        _ => Error::sys("creating the map", e),
    })?;
    let map = MapHandle::from_fd(fd)?;
    pin::pin(&map, path)?;
    Ok(map)
}

/// Writes keys `0..count` (little-endian, zero-padded to the key size) with the value
/// `key * 7 + 1` as a u64 (zero-padded to the value size) using `BPF_MAP_UPDATE_BATCH`: the
/// benchmark's way to fill a million entries in a second. Returns entries written.
pub fn fill(map: &MapHandle, count: u64) -> Result<u64> {
    let key_size = map.meta.key_size as usize;
    if key_size == 0 || map.meta.kind.keyless() {
        return Err(Error::bad(format!("{} has no keys to fill", map.label())));
    }
    let stride = map.stride();
    let value_len = map.value_len();
    const CHUNK: u64 = 16_384;
    let mut done = 0u64;
    while done < count {
        let n = CHUNK.min(count - done) as usize;
        let mut keys = vec![0u8; n * key_size];
        let mut values = vec![0u8; n * value_len];
        for i in 0..n {
            let k = (done + i as u64).to_le_bytes();
            let kl = key_size.min(8);
            keys[i * key_size..i * key_size + kl].copy_from_slice(&k[..kl]);
            let v = (done + i as u64)
                .wrapping_mul(7)
                .wrapping_add(1)
                .to_le_bytes();
            let vl = (map.meta.value_size as usize).min(8);
            for cpu in 0..map.cpus() {
                let at = i * value_len + cpu * stride;
                values[at..at + vl].copy_from_slice(&v[..vl]);
            }
        }
        let (written, res) = sys::update_batch(map.fd().as_fd(), &keys, &values, n as u32, 0);
        match res {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::E2BIG)
                    || e.raw_os_error() == Some(libc::ENOMEM) =>
            {
                return Err(Error::Full {
                    map: map.label(),
                    max_entries: map.meta.max_entries,
                });
            }
            Err(e) => return Err(Error::sys(format!("batch update of {}", map.label()), e)),
        }
        done += u64::from(written);
    }
    Ok(done)
}
