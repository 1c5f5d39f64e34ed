//! The agent's pinned state: `<pin_dir>/<family>/<MAP>` for each family's counter maps, a layout
//! marker map per family directory, and an exclusive lock on `<pin_dir>` held while an agent
//! runs (so a second agent never attaches the same programs twice).
//!
//! aya reuses an existing pin without comparing its definition, so every pin is checked against
//! the definition in this binary's object (type, key size, value size, max entries) before it is
//! reused; a mismatch is reported and the pin recreated (its counts start over) — never misread.

use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use crate::{
    loader::Family,
    maps::{
        MapHandle, MapKind, UpdateMode,
        create::{NewMap, create},
        pin,
    },
};

/// Bumped when the meaning of a pinned map changes in a way its definition does not show.
pub const LAYOUT_VERSION: u64 = 1;
/// The marker map in each family directory; its one u64 value is [`LAYOUT_VERSION`].
pub const MARKER: &str = "layout";

/// Why pinned state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "another mapscope agent (pid {pid}) is running with its pins in {dir}: stop it first \
         (`systemctl stop mapscope-agent` or kill {pid})"
    )]
    Locked { dir: PathBuf, pid: String },
    #[error(
        "{dir} is not on a bpffs mount: mount one (`mount -t bpf bpf /sys/fs/bpf`) or set pin_dir"
    )]
    NotBpffs { dir: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Map(#[from] crate::maps::Error),
    #[error("reading the {family:?} object's map definitions: {why}")]
    Object { family: Family, why: String },
}

/// The exclusive lock on the pin root; released when dropped (or when the process dies).
pub struct PinLock {
    _dir: File,
}

/// The family directory name.
pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::Xdp => "xdp",
        Family::Exec => "exec",
        Family::Syscalls => "syscalls",
        Family::Malloc => "malloc",
    }
}

/// Creates `root` (on bpffs) and takes its lock, or names the agent that holds it.
pub fn lock(root: &Path) -> Result<PinLock, PinError> {
    let mut parent = root;
    while !parent.exists() {
        parent = parent.parent().unwrap_or(Path::new("/"));
    }
    if !pin::on_bpffs(parent) {
        return Err(PinError::NotBpffs {
            dir: root.to_path_buf(),
        });
    }
    std::fs::create_dir_all(root).map_err(|source| PinError::Io {
        what: "creating",
        path: root.to_path_buf(),
        source,
    })?;
    let dir = File::open(root).map_err(|source| PinError::Io {
        what: "opening",
        path: root.to_path_buf(),
        source,
    })?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let pid = dir
                .metadata()
                .ok()
                .and_then(|m| lock_holder(m.ino()))
                .unwrap_or_else(|| "unknown".to_string());
            return Err(PinError::Locked {
                dir: root.to_path_buf(),
                pid,
            });
        }
        return Err(PinError::Io {
            what: "locking",
            path: root.to_path_buf(),
            source: err,
        });
    }
    Ok(PinLock { _dir: dir })
}

/// The pid holding a flock on inode `ino`, from /proc/locks.
fn lock_holder(ino: u64) -> Option<String> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    text.lines().find_map(|l| {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 6 && f[1] == "FLOCK" && f[5].rsplit(':').next()? == ino.to_string())
            .then(|| f[4].to_string())
    })
}

/// A map definition as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Def {
    kind: u32,
    key: u32,
    value: u32,
    max_entries: u32,
}

impl std::fmt::Display for Def {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} with {}-byte keys, {}-byte values and {} entries",
            MapKind(self.kind).display(),
            self.key,
            self.value,
            self.max_entries
        )
    }
}

/// Prepares `<root>/<family>/` for `maps`: creates it with its marker, or checks an existing
/// one; pins of another layout or definition are removed (and reported in the returned lines)
/// so the loader creates them afresh.
pub fn prepare(
    root: &Path,
    family: Family,
    maps: &[&str],
) -> Result<(PathBuf, Vec<String>), PinError> {
    let dir = root.join(family_name(family));
    std::fs::create_dir_all(&dir).map_err(|source| PinError::Io {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    let mut reports = Vec::new();
    let marker = dir.join(MARKER);
    let layout_ok = match MapHandle::from_pin(&marker) {
        Ok(m) => {
            let v = m.get(&0u32.to_ne_bytes()).unwrap_or_default();
            let found = v
                .get(..8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap()));
            if found == Some(LAYOUT_VERSION) {
                true
            } else {
                reports.push(format!(
                    "{} has layout {found:?}, this mapscope writes {LAYOUT_VERSION}: recreating \
                     its maps (their counts start over)",
                    dir.display()
                ));
                false
            }
        }
        Err(_) => {
            if maps.iter().any(|n| dir.join(n).symlink_metadata().is_ok()) {
                reports.push(format!(
                    "{} has pins but no layout marker: recreating its maps (their counts start \
                     over)",
                    dir.display()
                ));
            }
            false
        }
    };
    let expected = definitions(family)?;
    for name in maps {
        let path = dir.join(name);
        if path.symlink_metadata().is_err() {
            continue;
        }
        let want = expected.iter().find(|(n, _)| n == name).map(|(_, d)| *d);
        let found = MapHandle::from_pin(&path).ok().map(|m| Def {
            kind: m.meta.kind.0,
            key: m.meta.key_size,
            value: m.meta.value_size,
            max_entries: m.meta.max_entries,
        });
        if layout_ok && found.is_some() && found == want {
            continue;
        }
        if layout_ok {
            reports.push(format!(
                "pinned map {} is {}, this mapscope expects {}: recreated (its counts start over)",
                path.display(),
                found.map_or_else(|| "not a map".to_string(), |d| d.to_string()),
                want.map_or_else(|| "no such map".to_string(), |d| d.to_string()),
            ));
        }
        std::fs::remove_file(&path).map_err(|source| PinError::Io {
            what: "removing",
            path: path.clone(),
            source,
        })?;
    }
    if !layout_ok {
        let _ = std::fs::remove_file(&marker);
        let m = create(
            &NewMap {
                kind: MapKind::ARRAY,
                key_size: 4,
                value_size: 8,
                max_entries: 1,
                flags: 0,
                name: "ms_layout".to_string(),
            },
            &marker,
        )?;
        m.set(
            &0u32.to_ne_bytes(),
            &LAYOUT_VERSION.to_ne_bytes(),
            UpdateMode::Any,
        )?;
    }
    Ok((dir, reports))
}

/// Every map definition of `family`'s embedded object.
fn definitions(family: Family) -> Result<Vec<(String, Def)>, PinError> {
    let obj = aya_obj::Object::parse(family.object()).map_err(|e| PinError::Object {
        family,
        why: e.to_string(),
    })?;
    Ok(obj
        .maps
        .iter()
        .map(|(n, m)| {
            (
                n.clone(),
                Def {
                    kind: m.map_type(),
                    key: m.key_size(),
                    value: m.value_size(),
                    max_entries: m.max_entries(),
                },
            )
        })
        .collect())
}

/// Removes everything the agent pins under `root` (map pins of the known names and the markers,
/// then the emptied directories); anything else is left in place. Returns the paths removed.
pub fn reset(root: &Path, families: &[(Family, &[&str])]) -> Result<Vec<PathBuf>, PinError> {
    let mut removed = Vec::new();
    for (family, maps) in families {
        let dir = root.join(family_name(*family));
        for name in maps.iter().copied().chain([MARKER]) {
            let path = dir.join(name);
            if path.symlink_metadata().is_ok() {
                pin::unpin(&path)?;
                removed.push(path);
            }
        }
        if dir.is_dir() && std::fs::remove_dir(&dir).is_ok() {
            removed.push(dir);
        }
    }
    if root.is_dir() && std::fs::remove_dir(root).is_ok() {
        removed.push(root.to_path_buf());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_maps_are_in_the_objects() {
        for (f, maps) in [
            (Family::Exec, &crate::exec::PINNED_MAPS[..]),
            (Family::Syscalls, &crate::syscalls::PINNED_MAPS[..]),
            (Family::Malloc, &crate::malloc::PINNED_MAPS[..]),
        ] {
            if f.object().is_empty() {
                return; // AYA_BUILD_SKIP build
            }
            let defs = definitions(f).unwrap();
            for m in maps {
                assert!(defs.iter().any(|(n, _)| n == m), "{f:?} has no map {m}");
            }
        }
    }
}
