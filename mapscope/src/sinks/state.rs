//! What the sink keeps beside its spool to account for a crash and to never reuse a `seq`.
//!
//! [`Counters`]: how many events the sink took and how many reached a fate a crash cannot
//! undo (written to the spool, delivered, or dropped and reported). They live in a shared
//! mapping of a file in `/dev/shm`, so bumping them costs an atomic add and never touches a
//! disk (a store into a mapped file on a real filesystem can wait for its journal), yet the
//! kernel keeps the page when the process dies: after a kill -9, an OOM kill or a panic the next
//! run reads `taken - settled`, the events that were only in memory, and reports them instead
//! of losing them silently. `/dev/shm` does not survive a reboot, so after a power loss or a
//! kernel crash there is nothing to read: that case is documented, not counted.
//!
//! [`HighWater`]: the `seq` high-water mark in `.seq` in the spool directory, reserved ahead in
//! blocks and fsynced before any `seq` of a block is used, so a clock stepped back never makes a
//! restarted mapscope reuse a `seq`.

use std::{
    fs::File,
    io,
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileExt as _, MetadataExt as _},
    },
    path::{Path, PathBuf},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

const SHM_DIR: &str = "/dev/shm";
const SIZE: usize = 4096;
const MAGIC: u64 = u64::from_le_bytes(*b"MSSINK01");
const TAKEN: usize = 8;
const SETTLED: usize = 16;
/// The batch being written to the spool right now: if its file exists after a crash, its
/// events were settled even though the counter could not say so yet.
const WRITING_SEQ: usize = 24;
const WRITING_EVENTS: usize = 32;

/// The counters' file for spool directory `dir`: named after its device and inode, so a
/// restart finds it again whatever path leads to the directory.
pub fn shm_path(dir: &Path) -> io::Result<PathBuf> {
    let meta = std::fs::metadata(dir)?;
    Ok(Path::new(SHM_DIR).join(format!("mapscope-sink-{:x}-{:x}", meta.dev(), meta.ino())))
}

/// What the previous run's counters say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Previous {
    /// Events it had taken but not settled.
    pub unsettled: u64,
    /// The batch it was writing (`seq`, events) when it stopped, if any.
    pub writing: Option<(u64, u64)>,
}

/// The crash-accounting counters of one spool directory.
pub struct Counters {
    map: NonNull<u8>,
}

// SAFETY: the mapping is only accessed through atomics and is unmapped once, on drop.
unsafe impl Send for Counters {}
// SAFETY: as above.
unsafe impl Sync for Counters {}

impl Counters {
    /// Opens (creating if needed) the counters of spool directory `dir`, named after its device
    /// and inode so a restart finds them again; returns what the previous run left (`None`
    /// after a reboot or for a new spool) and starts this run's counts at zero. The caller
    /// must hold the spool's lock.
    pub fn open(dir: &Path) -> io::Result<(Self, Option<Previous>)> {
        let meta = std::fs::metadata(dir)?;
        let path =
            Path::new(SHM_DIR).join(format!("mapscope-sink-{:x}-{:x}", meta.dev(), meta.ino()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let fresh = file.metadata()?.len() != SIZE as u64;
        // Allocate the pages now: a store into a sparse mapping of a full tmpfs is a SIGBUS.
        // SAFETY: plain syscall on our descriptor.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, SIZE as libc::off_t) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: a fresh shared mapping of SIZE bytes of a file at least that long.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let c = Self {
            map: NonNull::new(ptr.cast()).expect("mmap returned null"),
        };
        let ours = !fresh && c.at(0).load(Ordering::Relaxed) == MAGIC;
        let previous = ours.then(|| {
            let events = c.at(WRITING_EVENTS).load(Ordering::Relaxed);
            Previous {
                unsettled: c
                    .at(TAKEN)
                    .load(Ordering::Relaxed)
                    .saturating_sub(c.at(SETTLED).load(Ordering::Relaxed)),
                writing: (events > 0).then(|| (c.at(WRITING_SEQ).load(Ordering::Relaxed), events)),
            }
        });
        for off in [TAKEN, SETTLED, WRITING_SEQ, WRITING_EVENTS] {
            c.at(off).store(0, Ordering::Relaxed);
        }
        c.at(0).store(MAGIC, Ordering::Relaxed);
        Ok((c, previous))
    }

    fn at(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: offset is one of the 8-aligned constants above, inside the page-aligned
        // mapping, and that memory is only ever used as this atomic.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(offset).cast()) }
    }

    /// `n` events handed to the sink.
    pub fn take(&self, n: u64) {
        self.at(TAKEN).fetch_add(n, Ordering::Relaxed);
    }

    /// `n` events the sink gave back (the hand-over failed).
    pub fn untake(&self, n: u64) {
        self.at(TAKEN).fetch_sub(n, Ordering::Relaxed);
    }

    /// `n` events reached a fate a crash cannot undo.
    pub fn settle(&self, n: u64) {
        self.at(SETTLED).fetch_add(n, Ordering::Relaxed);
    }

    /// A write of batch `seq` with `events` begins (`events` 0: it ended).
    pub fn writing(&self, seq: u64, events: u64) {
        self.at(WRITING_SEQ).store(seq, Ordering::Relaxed);
        self.at(WRITING_EVENTS).store(events, Ordering::Relaxed);
    }

    /// Everything taken is accounted for (a clean shutdown).
    pub fn settle_all(&self) {
        let taken = self.at(TAKEN).load(Ordering::Relaxed);
        self.at(SETTLED).store(taken, Ordering::Relaxed);
    }

    /// Events taken but not settled yet.
    #[cfg(test)]
    pub fn unsettled(&self) -> u64 {
        self.at(TAKEN)
            .load(Ordering::Relaxed)
            .saturating_sub(self.at(SETTLED).load(Ordering::Relaxed))
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in open, once.
        unsafe { libc::munmap(self.map.as_ptr().cast(), SIZE) };
    }
}

/// The `seq` high-water mark, `.seq` in the spool directory.
pub struct HighWater {
    file: File,
}

impl HighWater {
    /// Opens (creating if needed) `.seq` in `dir`; returns it and the mark it holds (0 if new).
    pub fn open(dir: &Path) -> io::Result<(Self, u64)> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(".seq"))?;
        let mut buf = [0u8; 20];
        let n = file.read_at(&mut buf, 0)?;
        let mark = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok((Self { file }, mark))
    }

    /// Makes `upto` the mark, durably, before returning. Rewritten in place (fixed width), so
    /// it needs no new block even on a full disk.
    pub fn reserve(&self, upto: u64) -> io::Result<()> {
        self.file
            .write_all_at(format!("{upto:020}\n").as_bytes(), 0)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_process_that_never_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let (c, prev) = Counters::open(dir.path()).unwrap();
        assert_eq!(prev, None, "a new spool has no history");
        c.take(10);
        c.settle(7);
        c.writing(42, 2);
        assert_eq!(c.unsettled(), 3);
        // Dropping without settle_all is what a kill -9 leaves: the page keeps the counts.
        drop(c);
        let (c, prev) = Counters::open(dir.path()).unwrap();
        assert_eq!(
            prev,
            Some(Previous {
                unsettled: 3,
                writing: Some((42, 2))
            })
        );
        assert_eq!(c.unsettled(), 0, "this run starts from zero");
        c.take(4);
        c.settle_all();
        drop(c);
        let (_, prev) = Counters::open(dir.path()).unwrap();
        assert_eq!(prev.unwrap(), Previous::default());
        std::fs::remove_file(shm_path(dir.path()).unwrap()).unwrap();
    }

    #[test]
    fn high_water_mark_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (h, mark) = HighWater::open(dir.path()).unwrap();
        assert_eq!(mark, 0);
        h.reserve(1_795_368_245_982_696).unwrap();
        h.reserve(1_795_368_245_982_697).unwrap();
        drop(h);
        assert_eq!(
            HighWater::open(dir.path()).unwrap().1,
            1_795_368_245_982_697
        );
    }
}
