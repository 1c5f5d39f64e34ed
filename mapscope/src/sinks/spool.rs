//! A bounded, ordered on-disk queue of batch bodies: every batch is written here before it is
//! sent and removed once delivered, so a crash or an outage loses nothing that reached it;
//! replayed oldest first, also after a restart of mapscope.
//!
//! One file per batch, `<seq, 20 digits>-<events>.json`, so directory order is delivery order.
//! Each file is written under a temporary name and renamed, so a crash never leaves a
//! half-written batch under a batch name; the caller fsyncs what stays (see `super::disk`). A
//! file cut short anyway (a power loss before its fsync) is caught when read back. Files with
//! other names are not ours and are left alone. A lock file keeps two mapscope processes from
//! sharing one spool.
//!
//! Batches the service refused go to `rejected/`; unreadable ones are renamed `*.bad`. Both count
//! against the same `max_bytes` as the queue, and together may use at most a quarter of it, so
//! the queue always keeps three quarters and the directory never grows past `max_bytes`.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write as _,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use super::batch::{self, Encoded};
use crate::{Error, Result};

const SUFFIX: &str = ".json";
const TMP_SUFFIX: &str = ".tmp";
const BAD_SUFFIX: &str = ".bad";
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
    /// Bytes of the queued batches.
    bytes: u64,
    /// Bytes set aside: `rejected/` and `*.bad`.
    aside: u64,
    max_bytes: u64,
    /// Holds the directory's flock for as long as the spool is open.
    _lock: File,
}

/// How a write went when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Written,
    /// Not written: it would take the spool past its limit.
    Full,
}

/// Where an unreadable batch went.
#[derive(Debug)]
pub enum SetAside {
    Kept(PathBuf),
    /// Removed: the set-aside share of the limit is used up (or the rename failed).
    Removed,
}

/// `(seq, events)` from one of our file names without its suffix: 20 digits, '-', digits.
fn parse_name(stem: &str) -> Option<(u64, usize)> {
    let (seq, events) = stem.split_once('-')?;
    if seq.len() != 20
        || !seq.bytes().all(|b| b.is_ascii_digit())
        || events.is_empty()
        || !events.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((seq.parse().ok()?, events.parse().ok()?))
}

fn file_name(seq: u64, events: usize) -> String {
    format!("{seq:020}-{events}{SUFFIX}")
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `body` to `path` through a temporary file and a rename; with `durable`, also fsyncs
/// the file and the directory. On failure nothing is left behind, not even an empty temporary.
fn write_file(path: &Path, body: &[u8], durable: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| io("creating", e))?;
        f.write_all(body).map_err(|e| io("writing", e))?;
        if durable {
            f.sync_all().map_err(|e| io("syncing", e))?;
        }
        fs::rename(&tmp, path).map_err(|e| io("renaming", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if durable && let Some(dir) = path.parent() {
        sync_dir(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    }
    Ok(())
}

/// Bytes of the regular files directly in `dir` (0 if it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(|e| e.ok()?.metadata().ok())
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    })
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
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut aside = dir_bytes(&dir.join(REJECTED_DIR));
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
            if name.strip_suffix(BAD_SUFFIX).and_then(parse_name).is_some() {
                aside += entry.metadata().map_err(fix)?.len();
                continue;
            }
            let Some((seq, events)) = name.strip_suffix(SUFFIX).and_then(parse_name) else {
                continue;
            };
            let size = entry.metadata().map_err(fix)?.len();
            let new = Entry {
                path: entry.path(),
                size,
                events,
            };
            // Two files of one seq: a crash while a batch was being split. The half (fewer
            // events) was written after the whole, so it wins.
            match entries.get(&seq) {
                Some(old) if old.events <= events => {
                    let _ = fs::remove_file(&new.path);
                }
                Some(_) => {
                    let old = entries.insert(seq, new).expect("present");
                    let _ = fs::remove_file(&old.path);
                }
                None => {
                    entries.insert(seq, new);
                }
            }
        }
        let bytes = entries.values().map(|e| e.size).sum();
        // Probe writability now, so a read-only directory fails at start-up, not mid-outage.
        let probe = dir.join(format!(".probe{TMP_SUFFIX}"));
        fs::write(&probe, b"").map_err(fix)?;
        let _ = fs::remove_file(probe);
        Ok(Self {
            dir: dir.to_path_buf(),
            entries,
            bytes,
            aside,
            max_bytes,
            _lock: lock,
        })
    }

    /// Appends a batch (not fsynced: see [`Spool::sync`]). `Ok(Pushed::Full)` without writing
    /// when it would exceed the limit; an I/O error (e.g. ENOSPC) leaves nothing behind.
    pub fn push(&mut self, b: &Encoded) -> Result<Pushed> {
        let size = b.body.len() as u64;
        if self.bytes + self.aside + size > self.max_bytes {
            return Ok(Pushed::Full);
        }
        let path = self.dir.join(file_name(b.seq, b.events));
        write_file(&path, &b.body, false)?;
        self.entries.insert(
            b.seq,
            Entry {
                path,
                size,
                events: b.events,
            },
        );
        self.bytes += size;
        Ok(Pushed::Written)
    }

    /// Replaces the batch `seq` with its two halves (written first, so a crash in between
    /// leaves the whole or both halves, never neither).
    pub fn split(&mut self, seq: u64, halves: &[Encoded; 2]) -> Result<Pushed> {
        let old = self.entries.get(&seq).map_or(0, |e| e.size);
        let size: u64 = halves.iter().map(|h| h.body.len() as u64).sum();
        if self.bytes + self.aside + size > self.max_bytes + old {
            return Ok(Pushed::Full);
        }
        let [first, second] = halves;
        let whole = self.forget(seq);
        let paths = [first, second].map(|h| self.dir.join(file_name(h.seq, h.events)));
        let written = write_file(&paths[1], &second.body, true)
            .and_then(|()| write_file(&paths[0], &first.body, true));
        if let Err(e) = written {
            let _ = fs::remove_file(&paths[1]);
            if let Some(w) = whole {
                self.bytes += w.size;
                self.entries.insert(seq, w);
            }
            return Err(e);
        }
        if let Some(w) = whole
            && w.path != paths[0]
        {
            let _ = fs::remove_file(&w.path);
        }
        for (h, path) in [first, second].into_iter().zip(paths) {
            let size = h.body.len() as u64;
            self.bytes += size;
            self.entries.insert(
                h.seq,
                Entry {
                    path,
                    size,
                    events: h.events,
                },
            );
        }
        Ok(Pushed::Written)
    }

    /// Reads a batch back. An error (unreadable, or cut short) means the caller should
    /// [`Spool::quarantine`] it rather than retry forever.
    pub fn read(&self, seq: u64) -> Result<Vec<u8>> {
        let e = self
            .entries
            .get(&seq)
            .ok_or_else(|| Error::InvalidArgument(format!("batch {seq} is not in the spool")))?;
        let body = fs::read(&e.path)
            .map_err(|err| Error::io(format!("reading {}", e.path.display()), err))?;
        if !batch::is_whole(&body) {
            return Err(Error::InvalidArgument(format!(
                "{} is cut short or not a batch (power loss before it reached the disk?)",
                e.path.display()
            )));
        }
        Ok(body)
    }

    /// Fsyncs the file of batch `seq`, if it is still queued.
    pub fn sync(&self, seq: u64) -> Result<()> {
        let Some(e) = self.entries.get(&seq) else {
            return Ok(());
        };
        File::open(&e.path)
            .and_then(|f| f.sync_all())
            .map_err(|err| Error::io(format!("syncing {}", e.path.display()), err))
    }

    /// Fsyncs the directory, making renames and removals durable.
    pub fn sync_dir(&self) -> Result<()> {
        sync_dir(&self.dir).map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))
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

    /// Sets an unreadable batch aside as `*.bad` (or removes it when the set-aside share of the
    /// limit is used up) so delivery can go on.
    pub fn quarantine(&mut self, seq: u64) -> SetAside {
        let Some(e) = self.forget(seq) else {
            return SetAside::Removed;
        };
        let bad = e.path.with_extension("bad");
        if self.aside + e.size <= self.aside_cap() && fs::rename(&e.path, &bad).is_ok() {
            self.aside += e.size;
            return SetAside::Kept(bad);
        }
        let _ = fs::remove_file(&e.path);
        SetAside::Removed
    }

    /// Keeps a batch the service refused for good in `rejected/`, out of the delivery order.
    /// `Ok(None)`: not kept, the set-aside share of the limit is used up. Either way the batch
    /// leaves the queue.
    pub fn reject(&mut self, b: &Encoded) -> Result<Option<PathBuf>> {
        self.remove(b.seq)?;
        let size = b.body.len() as u64;
        if self.aside + size > self.aside_cap() || self.bytes + self.aside + size > self.max_bytes {
            return Ok(None);
        }
        let dir = self.dir.join(REJECTED_DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(file_name(b.seq, b.events));
        write_file(&path, &b.body, true)?;
        self.aside += size;
        Ok(Some(path))
    }

    /// How much `rejected/` and `*.bad` may hold together.
    pub fn aside_cap(&self) -> u64 {
        self.max_bytes / 4
    }

    /// Queued batches, oldest first: `(seq, events)`.
    pub fn batches(&self) -> Vec<(u64, usize)> {
        self.entries.iter().map(|(s, e)| (*s, e.events)).collect()
    }

    /// The `seq` after the newest batch's last event, so new batches sort after old ones.
    pub fn next_seq(&self) -> u64 {
        self.entries
            .last_key_value()
            .map_or(0, |(s, e)| s + e.events as u64)
    }

    /// Whether no batch waits (set-aside files do not count).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events waiting in the spool.
    pub fn events(&self) -> usize {
        self.entries.values().map(|e| e.events).sum()
    }

    /// Bytes in use: queued batches plus what is set aside.
    pub fn bytes(&self) -> u64 {
        self.bytes + self.aside
    }

    /// The limit the whole directory is held to.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The spool directory, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests;
