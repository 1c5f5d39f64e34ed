//! A bounded, ordered on-disk queue of request bodies: what the web-service sink keeps while the
//! service is down, replayed oldest first, also after a restart of mapscope.
//!
//! One file per batch, `<seq, 20 digits>-<events>.json`, so directory order is delivery order.
//! Each file is written under a temporary name, fsynced, renamed, and the directory fsynced, so
//! neither a crash nor a power loss leaves a half-written batch to be replayed. Files with other
//! names are not ours and are left alone. A lock file keeps two mapscope processes from sharing
//! one spool. Batches the service rejected for good go to `rejected/` beside the spool.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write as _,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

const SUFFIX: &str = ".json";
const TMP_SUFFIX: &str = ".tmp";
const LOCK: &str = ".lock";
/// Where batches the service refused go, inside the spool directory.
pub const REJECTED_DIR: &str = "rejected";

struct Entry {
    path: PathBuf,
    size: u64,
    events: usize,
}

/// The spool directory and what it holds.
pub struct Spool {
    dir: PathBuf,
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    max_bytes: u64,
    /// Holds the directory's flock for as long as the spool is open.
    _lock: File,
}

/// A batch read back from the spool.
pub struct Spooled {
    pub seq: u64,
    pub body: Vec<u8>,
    pub events: usize,
}

/// `(seq, events)` from one of our file names without its suffix: 20 digits, '-', digits.
fn parse_name(stem: &str) -> Option<(u64, usize)> {
    let (seq, events) = stem.split_once('-')?;
    if seq.len() != 20
        || !seq.bytes().all(|b| b.is_ascii_digit())
        || !events.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((seq.parse().ok()?, events.parse().ok()?))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `body` to `path` durably: temporary file, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, body: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(|e| io("creating", e))?;
    f.write_all(body).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    fs::rename(&tmp, path).map_err(|e| io("renaming", e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    }
    Ok(())
}

impl Spool {
    /// Opens (creating if needed) `dir`, locks it, and picks up batches left by an earlier run.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        let fix = |e| {
            Error::io(
                format!(
                    "spool directory {} is not usable (choose another with --spool-dir)",
                    dir.display()
                ),
                e,
            )
        };
        fs::create_dir_all(dir).map_err(fix)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .map_err(fix)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::InvalidArgument(format!(
                "spool directory {} is in use by another mapscope: choose another with --spool-dir",
                dir.display()
            )));
        }
        let mut entries = BTreeMap::new();
        let mut bytes = 0;
        for entry in fs::read_dir(dir).map_err(fix)? {
            let entry = entry.map_err(fix)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(TMP_SUFFIX) {
                if parse_name(stem).is_some() {
                    // Ours, left by a crash mid-write: never renamed, so never counted as spooled.
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            let Some((seq, events)) = name.strip_suffix(SUFFIX).and_then(parse_name) else {
                continue;
            };
            let size = entry.metadata().map_err(fix)?.len();
            bytes += size;
            entries.insert(
                seq,
                Entry {
                    path: entry.path(),
                    size,
                    events,
                },
            );
        }
        // Probe writability now, so a read-only directory fails at start-up, not mid-outage.
        let probe = dir.join(format!(".probe{TMP_SUFFIX}"));
        fs::write(&probe, b"").map_err(fix)?;
        let _ = fs::remove_file(probe);
        Ok(Self {
            dir: dir.to_path_buf(),
            entries,
            bytes,
            max_bytes,
            _lock: lock,
        })
    }

    /// Appends a batch. Returns `Ok(false)` without writing when it would exceed the limit.
    pub fn push(&mut self, seq: u64, body: &[u8], events: usize) -> Result<bool> {
        let size = body.len() as u64;
        if self.bytes + size > self.max_bytes {
            return Ok(false);
        }
        let path = self.dir.join(format!("{seq:020}-{events}{SUFFIX}"));
        write_durably(&path, body)?;
        self.entries.insert(seq, Entry { path, size, events });
        self.bytes += size;
        Ok(true)
    }

    /// The oldest batch, without removing it. `Err((seq, events, error))` when its file cannot
    /// be read: the caller should [`Spool::quarantine`] it rather than retry forever.
    pub fn oldest(&self) -> std::result::Result<Option<Spooled>, (u64, usize, Error)> {
        let Some((&seq, e)) = self.entries.first_key_value() else {
            return Ok(None);
        };
        match fs::read(&e.path) {
            Ok(body) => Ok(Some(Spooled {
                seq,
                body,
                events: e.events,
            })),
            Err(err) => Err((
                seq,
                e.events,
                Error::io(format!("reading {}", e.path.display()), err),
            )),
        }
    }

    /// Whether `seq` is in the spool.
    pub fn contains(&self, seq: u64) -> bool {
        self.entries.contains_key(&seq)
    }

    /// Removes a delivered batch.
    pub fn remove(&mut self, seq: u64) -> Result<()> {
        if let Some(e) = self.forget(seq) {
            match fs::remove_file(&e.path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(format!("removing {}", e.path.display()), err)),
            }
        }
        Ok(())
    }

    fn forget(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(&seq)?;
        self.bytes -= e.size;
        Some(e)
    }

    /// Sets an unreadable batch aside (renamed to `*.bad`, or just forgotten if even that fails)
    /// so delivery can go on; returns where it went.
    pub fn quarantine(&mut self, seq: u64) -> Option<PathBuf> {
        let e = self.forget(seq)?;
        let bad = e.path.with_extension("bad");
        fs::rename(&e.path, &bad).ok().map(|()| bad)
    }

    /// Keeps a batch the service refused for good in `rejected/`, out of the delivery order.
    pub fn reject(&mut self, seq: u64, body: &[u8], events: usize) -> Result<PathBuf> {
        let dir = self.dir.join(REJECTED_DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(format!("{seq:020}-{events}{SUFFIX}"));
        write_durably(&path, body)?;
        self.remove(seq)?;
        Ok(path)
    }

    /// The sequence number after the newest batch, so new batches sort after old ones.
    pub fn next_seq(&self) -> u64 {
        self.entries.last_key_value().map_or(0, |(s, _)| s + 1)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events waiting in the spool.
    pub fn events(&self) -> usize {
        self.entries.values().map(|e| e.events).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_order_across_reopen_and_enforces_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 25).unwrap();
        assert!(s.is_empty());
        assert!(s.push(7, b"aaaaaaaaaa", 2).unwrap());
        assert!(s.push(8, b"bbbbbbbbbb", 3).unwrap());
        assert!(
            !s.push(9, b"cccccccccc", 1).unwrap(),
            "over the 25-byte limit"
        );
        assert_eq!((s.bytes(), s.events(), s.next_seq()), (20, 5, 9));
        drop(s);

        let mut s = Spool::open(dir.path(), 25).unwrap();
        assert_eq!((s.bytes(), s.events(), s.next_seq()), (20, 5, 9));
        let first = s.oldest().ok().unwrap().unwrap();
        assert_eq!(
            (first.seq, first.body.as_slice(), first.events),
            (7, &b"aaaaaaaaaa"[..], 2)
        );
        s.remove(7).unwrap();
        assert_eq!(s.oldest().ok().unwrap().unwrap().seq, 8);
        assert!(
            s.push(9, b"cccccccccc", 1).unwrap(),
            "room again after a delivery"
        );
        s.remove(8).unwrap();
        s.remove(9).unwrap();
        assert!(s.is_empty());
        assert_eq!(listing(dir.path()), [LOCK]);
    }

    #[test]
    fn ignores_foreign_files_and_removes_our_half_written_ones() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "00000000000000000003-1.tmp",
            "5.json",
            "notes.txt",
            "12-x.json",
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        let s = Spool::open(dir.path(), 100).unwrap();
        assert!(s.is_empty());
        assert_eq!(
            listing(dir.path()),
            [LOCK, "12-x.json", "5.json", "notes.txt"]
        );
    }

    #[test]
    fn a_second_spool_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), 100).unwrap();
        let err = Spool::open(dir.path(), 100).err().unwrap().to_string();
        assert!(
            err.contains("in use by another mapscope") && err.contains("--spool-dir"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_batch_is_quarantined_and_rejected_batches_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1000).unwrap();
        s.push(1, b"one", 1).unwrap();
        s.push(2, b"two", 2).unwrap();
        fs::remove_file(dir.path().join("00000000000000000001-1.json")).unwrap();
        fs::create_dir(dir.path().join("00000000000000000001-1.json")).unwrap();
        let (seq, events, _) = s.oldest().err().unwrap();
        assert_eq!((seq, events), (1, 1));
        assert!(s.quarantine(seq).is_some());
        assert_eq!(s.oldest().ok().unwrap().unwrap().seq, 2);
        let kept = s.reject(2, b"two", 2).unwrap();
        assert_eq!(fs::read(kept).unwrap(), b"two");
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn unusable_directory_names_the_fix() {
        let err = Spool::open(Path::new("/proc/mapscope-spool"), 100)
            .err()
            .unwrap();
        assert!(err.to_string().contains("--spool-dir"), "{err}");
    }
}
