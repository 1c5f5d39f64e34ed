//! A bounded, ordered on-disk queue of request bodies: what the web-service sink keeps while the
//! service is down, replayed oldest first, also after a restart of mapscope.
//!
//! One file per batch, named by a zero-padded sequence number so directory order is delivery
//! order. Each file is written to a temporary name and renamed, so a crash never leaves a
//! half-written batch behind.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

const SUFFIX: &str = ".json";

/// The spool directory and what it holds.
pub struct Spool {
    dir: PathBuf,
    /// seq → (size in bytes, events in the batch)
    entries: BTreeMap<u64, (u64, usize)>,
    bytes: u64,
    max_bytes: u64,
}

/// A batch read back from the spool.
pub struct Spooled {
    pub seq: u64,
    pub body: Vec<u8>,
    pub events: usize,
}

impl Spool {
    /// Opens (creating if needed) `dir`, picking up batches left by an earlier run.
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
        let mut entries = BTreeMap::new();
        let mut bytes = 0;
        for entry in fs::read_dir(dir).map_err(fix)? {
            let entry = entry.map_err(fix)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // Left by a crash mid-write: never renamed, so never counted as spooled.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(seq) = name
                .strip_suffix(SUFFIX)
                .and_then(|s| s.split('-').next())
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let events = name
                .strip_suffix(SUFFIX)
                .and_then(|s| s.split('-').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let size = entry.metadata().map_err(fix)?.len();
            bytes += size;
            entries.insert(seq, (size, events));
        }
        // Probe writability now, so a read-only directory fails at start-up, not mid-outage.
        let probe = dir.join(".probe.tmp");
        fs::write(&probe, b"").map_err(fix)?;
        let _ = fs::remove_file(probe);
        Ok(Self {
            dir: dir.to_path_buf(),
            entries,
            bytes,
            max_bytes,
        })
    }

    fn path(&self, seq: u64, events: usize) -> PathBuf {
        self.dir.join(format!("{seq:020}-{events}{SUFFIX}"))
    }

    /// Appends a batch. Returns `Ok(false)` without writing when it would exceed the limit.
    pub fn push(&mut self, seq: u64, body: &[u8], events: usize) -> Result<bool> {
        let size = body.len() as u64;
        if self.bytes + size > self.max_bytes {
            return Ok(false);
        }
        let path = self.path(seq, events);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, body).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        self.entries.insert(seq, (size, events));
        self.bytes += size;
        Ok(true)
    }

    /// The oldest batch, without removing it.
    pub fn oldest(&self) -> Result<Option<Spooled>> {
        let Some((&seq, &(_, events))) = self.entries.first_key_value() else {
            return Ok(None);
        };
        let path = self.path(seq, events);
        let body =
            fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(Some(Spooled { seq, body, events }))
    }

    /// Removes a delivered batch.
    pub fn remove(&mut self, seq: u64) -> Result<()> {
        if let Some((size, events)) = self.entries.remove(&seq) {
            self.bytes -= size;
            let path = self.path(seq, events);
            fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
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
        self.entries.values().map(|(_, n)| n).sum()
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

        let mut s = Spool::open(dir.path(), 25).unwrap();
        assert_eq!((s.bytes(), s.events(), s.next_seq()), (20, 5, 9));
        let first = s.oldest().unwrap().unwrap();
        assert_eq!(
            (first.seq, first.body.as_slice(), first.events),
            (7, &b"aaaaaaaaaa"[..], 2)
        );
        s.remove(7).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().seq, 8);
        assert!(
            s.push(9, b"cccccccccc", 1).unwrap(),
            "room again after a delivery"
        );
        s.remove(8).unwrap();
        s.remove(9).unwrap();
        assert!(s.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn ignores_half_written_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000000000000003-1.tmp"), b"partial").unwrap();
        let s = Spool::open(dir.path(), 100).unwrap();
        assert!(s.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unusable_directory_names_the_fix() {
        let err = Spool::open(Path::new("/proc/mapscope-spool"), 100)
            .err()
            .unwrap();
        assert!(err.to_string().contains("--spool-dir"), "{err}");
    }
}
