//! Pinning maps on bpffs and removing map pins, with the checks that keep `unpin` from ever
//! deleting anything but a pinned map: the path must be on a bpffs mount and open as a map.

use std::{
    os::{fd::AsFd as _, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use super::{Error, MapHandle, Result, sys};

/// `BPF_FS_MAGIC` from linux/magic.h: what statfs reports for a bpffs mount.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `path` lives on a bpffs mount (false when it cannot be checked).
pub fn on_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is writable for the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Checks that a new pin can go at `path`: nothing there yet, its directory exists on bpffs.
pub fn check_new_pin(path: &Path) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        return Err(Error::PinExists {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::NoParent { dir });
    }
    if !on_bpffs(&dir) {
        return Err(Error::NotBpffs {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Pins `map` at `path`.
pub fn pin(map: &MapHandle, path: &Path) -> Result<()> {
    check_new_pin(path)?;
    sys::obj_pin(map.fd(), path).map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => Error::PinExists {
            path: path.to_path_buf(),
        },
        _ => Error::sys(format!("pinning {} at {}", map.label(), path.display()), e),
    })
}

/// Removes the map pin at `path`; anything else (a regular file, a directory, a program or link
/// pin) is refused and left in place.
pub fn unpin(path: &Path) -> Result<()> {
    let refuse = |why: &str| Error::NotAMapPin {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let meta = path
        .symlink_metadata()
        .map_err(|e| Error::sys(format!("reading {}", path.display()), e))?;
    if meta.is_dir() {
        return Err(refuse(
            "is a directory, not a map pin: remove pins one by one (or `rmdir` an empty directory)",
        ));
    }
    if !meta.is_file() || !on_bpffs(path) {
        return Err(refuse(
            "not a BPF map pin (it is not on a bpffs mount); mapscope only removes map pins",
        ));
    }
    let fd = sys::obj_get(path, 0)
        .map_err(|e| Error::sys(format!("opening pin {}", path.display()), e))?;
    match sys::bpf_object_kind(fd.as_fd()).as_deref() {
        Some("bpf-map") => {}
        Some(kind) => {
            return Err(refuse(&format!(
                "is a pinned {kind}, not a map: mapscope only removes map pins (use rm for others)"
            )));
        }
        None => return Err(refuse("not a BPF object pin")),
    }
    std::fs::remove_file(path).map_err(|e| Error::sys(format!("removing {}", path.display()), e))
}
