//! The spool's own thread: every file operation of the sink (writes, fsyncs, reads, removals)
//! runs here, never on a tokio worker, so a slow or frozen disk delays only the spool, not the
//! event readers. Commands are carried out in the order sent; each answer goes back to the
//! pipeline as a [`Reply`].
//!
//! Writes are not fsynced one by one: a batch is usually delivered (and removed) within
//! milliseconds, and what is written survives the death of the process anyway (the page cache
//! belongs to the kernel). Batches still queued [`SYNC_AFTER`] after they were written are
//! fsynced, then the directory; so a power loss can take at most the batches written in the
//! last moments before it.

use std::{
    path::PathBuf,
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::{
    batch::Encoded,
    spool::{Pushed, SetAside, Spool},
    state::{Counters, HighWater, shm_path},
};
use crate::{Error, error::one_line};

/// How long a written batch may stay queued before it is fsynced.
pub const SYNC_AFTER: Duration = Duration::from_secs(1);

/// What the pipeline asks of the spool.
pub enum Command {
    /// Write-ahead of a new batch; answered with [`Reply::Written`].
    Write { id: u64, batch: Encoded },
    /// Replace batch `seq` with its halves; answered with one [`Reply::Written`] per half.
    Split {
        seq: u64,
        ids: [u64; 2],
        halves: [Encoded; 2],
    },
    /// Read a queued batch back; answered with [`Reply::Read`].
    Read { seq: u64 },
    /// The batch is delivered (or gone): remove its file, if any.
    Remove { seq: u64 },
    /// The service refused the batch: out of the queue, into `rejected/`.
    Reject { batch: Encoded, why: String },
    /// Make the `seq` high-water mark `upto` durable.
    Reserve { upto: u64 },
    /// Fsync everything still queued, answer with the events left, and stop.
    Finish(oneshot::Sender<Finished>),
}

/// What the spool answers.
pub enum Reply {
    Written {
        id: u64,
        result: Result<Pushed, Error>,
    },
    Read {
        seq: u64,
        result: Result<Bytes, (Error, SetAside)>,
    },
    Rejected {
        batch: Encoded,
        why: String,
        result: Result<Option<PathBuf>, Error>,
    },
    /// Something went wrong that needs only a report (a removal, an fsync).
    Trouble(String),
}

/// The spool at the end of a run.
pub struct Finished {
    pub events: usize,
}

/// Starts the spool's thread; returns where to send commands.
pub fn spawn(
    spool: Spool,
    counters: Option<Arc<Counters>>,
    high: Option<HighWater>,
    replies: UnboundedSender<Reply>,
) -> std::io::Result<(mpsc::Sender<Command>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("mapscope-spool".into())
        .spawn(move || {
            Disk {
                spool,
                counters,
                high,
                replies,
                unsynced: Vec::new(),
                dir_dirty: false,
            }
            .run(&rx);
        })?;
    Ok((tx, thread))
}

struct Disk {
    spool: Spool,
    counters: Option<Arc<Counters>>,
    high: Option<HighWater>,
    replies: UnboundedSender<Reply>,
    /// Batches written but not fsynced yet, oldest first.
    unsynced: Vec<(u64, Instant)>,
    /// Renames or removals since the directory was last fsynced.
    dir_dirty: bool,
}

impl Disk {
    fn run(mut self, rx: &mpsc::Receiver<Command>) {
        loop {
            // Under a steady stream commands never time out: check the oldest write each time.
            if self
                .unsynced
                .first()
                .is_some_and(|(_, at)| at.elapsed() >= SYNC_AFTER)
            {
                self.sync(Instant::now().checked_sub(SYNC_AFTER));
            }
            let cmd = match rx.recv_timeout(SYNC_AFTER / 2) {
                Ok(cmd) => cmd,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(cutoff) = Instant::now().checked_sub(SYNC_AFTER) {
                        self.sync(Some(cutoff));
                    }
                    continue;
                }
                // The pipeline is gone without finishing (it panicked): keep what is on disk.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.sync(None);
                    return;
                }
            };
            match cmd {
                Command::Write { id, batch } => {
                    // Settled here, the moment the file exists; a crash in between is resolved
                    // by the next run from `writing` and the spool's content.
                    let n = batch.events as u64;
                    if let Some(c) = &self.counters {
                        c.writing(batch.seq, n);
                    }
                    let result = self.spool.push(&batch);
                    if let Some(c) = &self.counters {
                        if matches!(result, Ok(Pushed::Written)) {
                            c.settle(n);
                        }
                        c.writing(0, 0);
                    }
                    if matches!(result, Ok(Pushed::Written)) {
                        self.written(batch.seq);
                    }
                    self.reply(Reply::Written { id, result });
                }
                Command::Split { seq, ids, halves } => {
                    let result = self.spool.split(seq, &halves);
                    if matches!(result, Ok(Pushed::Written)) {
                        self.dir_dirty = true;
                    }
                    for id in ids {
                        let result = match &result {
                            Ok(p) => Ok(*p),
                            Err(e) => Err(Error::InvalidArgument(one_line(e))),
                        };
                        self.reply(Reply::Written { id, result });
                    }
                }
                Command::Read { seq } => {
                    let result = self.spool.read(seq).map(Bytes::from).map_err(|e| {
                        self.dir_dirty = true;
                        (e, self.spool.quarantine(seq))
                    });
                    self.reply(Reply::Read { seq, result });
                }
                Command::Remove { seq } => {
                    if let Err(e) = self.spool.remove(seq) {
                        self.reply(Reply::Trouble(one_line(&e)));
                    }
                    self.dir_dirty = true;
                }
                Command::Reject { batch, why } => {
                    let result = self.spool.reject(&batch);
                    self.dir_dirty = true;
                    self.reply(Reply::Rejected { batch, why, result });
                }
                Command::Reserve { upto } => {
                    if let Some(high) = &self.high
                        && let Err(e) = high.reserve(upto)
                    {
                        self.reply(Reply::Trouble(format!(
                            "saving the seq high-water mark in {}: {e}",
                            self.spool.dir().display()
                        )));
                    }
                }
                Command::Finish(done) => {
                    self.sync(None);
                    // Everything is accounted for: the next run has nothing to learn from them.
                    if self.counters.is_some()
                        && let Ok(path) = shm_path(self.spool.dir())
                    {
                        let _ = std::fs::remove_file(path);
                    }
                    let _ = done.send(Finished {
                        events: self.spool.events(),
                    });
                    return;
                }
            }
        }
    }

    fn reply(&self, r: Reply) {
        let _ = self.replies.send(r);
    }

    fn written(&mut self, seq: u64) {
        self.unsynced.push((seq, Instant::now()));
        self.dir_dirty = true;
    }

    /// Fsyncs the batches written before `older_than` (all with `None`) that are still queued,
    /// then the directory.
    fn sync(&mut self, older_than: Option<Instant>) {
        let due = self
            .unsynced
            .iter()
            .take_while(|(_, at)| older_than.is_none_or(|t| *at <= t))
            .count();
        for (seq, _) in self.unsynced.drain(..due).collect::<Vec<_>>() {
            if let Err(e) = self.spool.sync(seq) {
                self.reply(Reply::Trouble(one_line(&e)));
            }
        }
        if self.dir_dirty && (due > 0 || older_than.is_none() || self.unsynced.is_empty()) {
            self.dir_dirty = false;
            if let Err(e) = self.spool.sync_dir() {
                self.reply(Reply::Trouble(one_line(&e)));
            }
        }
    }
}
