//! The transport-independent sink: bounded queue → batcher → write-ahead to the spool → ordered
//! delivery with retry, shared by every transport (HTTP today, NATS JetStream next).
//!
//! - [`Sink::send`] queues an event (waiting only while `queue` events wait to be batched);
//!   batches close at `batch_max` events or `batch_wait` after their first event.
//! - Each closed batch is written to the spool (on its own thread, see `super::disk`) before it
//!   is sent, and removed once delivered. A kill -9, an OOM kill or a panic therefore loses only
//!   events not yet in a closed batch, and those are counted (the spool's state file, see
//!   `super::state`) and reported by the next run. Should the disk take longer than
//!   [`DISK_PATIENCE`], the batch is sent from memory meanwhile: a slow disk delays crash
//!   safety, not delivery.
//! - If the spool is full or its disk fails (e.g. ENOSPC), batches wait in memory (up to `queue`
//!   events: not crash-safe, so reported once); beyond that, and at exit, they are dropped,
//!   counted and reported with the real reason.
//! - Delivery is in order, one batch at a time. A batch that failed is retried with
//!   exponential backoff (100 ms doubling up to `retry_max`) and everything waits behind it;
//!   each change of failure is reported once, not each retry. A refused batch goes to the
//!   spool's `rejected/` (kept while its share of the limit allows) and is counted; a batch
//!   too large is resent in halves.
//! - On shutdown, queued batches get [`SHUTDOWN_GRACE`] to be delivered while the service
//!   answers; the rest stays in the spool for the next run.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use serde_json::Value;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, sleep_until},
};

use super::{
    batch::{self, Encoded, Envelope},
    disk::{self, Command, Reply},
    spool::Spool,
    state::{Counters, HighWater},
    transport::{Outcome, Transport},
};
use crate::{Error, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long a closed batch waits for the disk before it is sent from memory anyway.
pub const DISK_PATIENCE: Duration = Duration::from_secs(1);
/// How long shutdown keeps delivering a healthy backlog before leaving the rest in the spool.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for the disk to take what is still in memory.
const DISK_GRACE: Duration = Duration::from_secs(10);
/// `seq`s reserved (and fsynced in the state file) ahead of use.
const SEQ_BLOCK: u64 = 1 << 20;

/// Settings shared by every transport.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// Events held in memory: waiting to be batched, and batches not (yet) on disk.
    pub queue: usize,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub retry_max: Duration,
}

/// What happened to the events, reported when the sink finishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub delivered: u64,
    /// Still in the spool at exit: replayed by the next run.
    pub spooled: u64,
    /// Dropped: the spool was full or its disk failed, or a spooled file could not be read back.
    pub dropped: u64,
    /// Refused by the service for good (400, 422, or one event too large); kept in the spool's
    /// `rejected/` while its share of the limit allows.
    pub rejected: u64,
    /// Of `dropped`: because writing to the disk failed (e.g. ENOSPC), not the spool limit.
    pub dropped_disk_error: u64,
    /// Events the previous run had taken but not yet stored when it died (kill -9, OOM,
    /// panic, power loss), counted at start-up.
    pub lost_in_crash: u64,
}

/// The sink's running totals, readable while it runs (the agent's `/metrics`); the same
/// numbers [`SinkStats`] reports at the end.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub rejected: AtomicU64,
}

impl LiveStats {
    /// The totals now: (delivered, dropped, rejected).
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

/// Where the sink's messages go (stderr, or a test's collector).
pub type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

/// Prints each message on stderr as `mapscope: …`.
pub fn stderr_reporter() -> Reporter {
    Arc::new(|m| eprintln!("mapscope: {m}"))
}

/// Handle to a running sink.
pub struct Sink {
    tx: mpsc::Sender<Value>,
    lost: Arc<AtomicU64>,
    state: Option<Arc<Counters>>,
    target: String,
    task: JoinHandle<SinkStats>,
    hurry: Arc<tokio::sync::Notify>,
    live: Arc<LiveStats>,
}

impl Sink {
    /// Opens the spool (reporting what an earlier run left: batches to replay, events lost in
    /// its crash) and starts delivering to `transport`.
    pub async fn start<T: Transport>(
        cfg: SinkConfig,
        transport: T,
        report: Reporter,
    ) -> Result<Self> {
        if cfg.batch_max == 0 || cfg.queue == 0 {
            return Err(Error::InvalidArgument(
                "--batch-max and --queue must be at least 1".into(),
            ));
        }
        let (dir, max) = (cfg.spool_dir.clone(), cfg.spool_max_bytes);
        let (spool, counters, high, host) = blocking(move || {
            let spool = Spool::open(&dir, max)?;
            Ok((
                spool,
                Counters::open(&dir),
                HighWater::open(&dir),
                hostname(),
            ))
        })
        .await?;
        let (state, previous) = match counters {
            Ok((c, p)) => (Some(Arc::new(c)), p.unwrap_or_default()),
            Err(e) => {
                report(&format!(
                    "warning: cannot keep crash counters for {} in /dev/shm ({e}): events in memory at a crash would go uncounted",
                    spool.dir().display()
                ));
                (None, Default::default())
            }
        };
        let (high, mark) = match high {
            Ok((h, mark)) => (Some(h), mark),
            Err(e) => {
                report(&format!(
                    "warning: cannot keep the seq high-water mark in {} ({e}): seq relies on the clock",
                    spool.dir().display()
                ));
                (None, 0)
            }
        };
        // A batch whose write was under way is settled if its file made it.
        let written = previous
            .writing
            .filter(|(seq, n)| spool.batches().binary_search(&(*seq, *n as usize)).is_ok())
            .map_or(0, |(_, n)| n);
        let lost_in_crash = previous.unsettled.saturating_sub(written);
        if lost_in_crash > 0 {
            report(&format!(
                "the previous run was killed or crashed with {lost_in_crash} events taken but not yet written to {}: those are lost (counted); everything it had written is replayed",
                spool.dir().display()
            ));
        }
        if !spool.is_empty() {
            report(&format!(
                "{} events from an earlier run wait in {}; replaying them first",
                spool.events(),
                spool.dir().display()
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let next_seq = spool.next_seq().max(mark).max(now);
        let mut reserved = next_seq;
        let high = match high {
            Some(h) => {
                let upto = next_seq + SEQ_BLOCK;
                let (h, result) = blocking(move || {
                    let r = h.reserve(upto);
                    Ok((h, r))
                })
                .await?;
                match result {
                    Ok(()) => reserved = upto,
                    Err(e) => report(&format!("warning: saving the seq high-water mark: {e}")),
                }
                Some(h)
            }
            None => None,
        };
        let queue: VecDeque<Queued> = spool
            .batches()
            .into_iter()
            .enumerate()
            .map(|(i, (seq, events))| Queued {
                id: i as u64,
                seq,
                events,
                body: None,
                disk: Where::Stored,
            })
            .collect();
        let next_id = queue.len() as u64;
        let spool_dir = spool.dir().to_path_buf();
        let max_bytes = spool.max_bytes();
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let (disk, _thread) = disk::spawn(spool, state.clone(), high, reply_tx)
            .map_err(|e| Error::io("starting the spool thread", e))?;
        let (tx, rx) = mpsc::channel(cfg.queue);
        let lost = Arc::new(AtomicU64::new(0));
        let target = transport.target();
        let worker = Worker {
            target: target.clone(),
            transport: Arc::new(transport),
            host,
            report,
            lost: Arc::clone(&lost),
            state: state.clone(),
            disk,
            spool_dir,
            max_bytes,
            queue,
            next_id,
            weight: Weight::default(),
            batch: Vec::new(),
            batch_deadline: None,
            next_seq,
            reserved,
            inflight_id: None,
            reading: None,
            closing: false,
            backoff: FIRST_BACKOFF,
            retry_at: None,
            failing: None,
            disk_trouble: None,
            split_told: false,
            stats: SinkStats {
                lost_in_crash,
                ..SinkStats::default()
            },
            live: Arc::new(LiveStats::default()),
            cfg,
        };
        let live = Arc::clone(&worker.live);
        let hurry = Arc::new(tokio::sync::Notify::new());
        Ok(Self {
            tx,
            lost,
            state,
            target,
            task: tokio::spawn(worker.run(rx, replies, Arc::clone(&hurry))),
            hurry,
            live,
        })
    }

    /// Queues one event; waits only while `queue` events are already waiting to be batched.
    pub async fn send(&self, event: Value) -> Result<()> {
        if let Some(s) = &self.state {
            s.take(1);
        }
        self.tx.send(event).await.map_err(|_| {
            if let Some(s) = &self.state {
                s.untake(1);
            }
            Error::InvalidArgument(format!("the sink for {} stopped", self.target))
        })
    }

    /// Records the kernel's lost-event total, carried in every later batch.
    pub fn set_lost(&self, total: u64) {
        self.lost.store(total, Ordering::Relaxed);
    }

    /// A handle that cuts [`Sink::finish`]'s delivery grace short (a second Ctrl-C): what is
    /// not delivered yet goes to the spool at once.
    pub fn hurry_handle(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.hurry)
    }

    /// The running totals, for exporters.
    pub fn live(&self) -> Arc<LiveStats> {
        Arc::clone(&self.live)
    }

    /// Flushes: sends what it can now, leaves the rest in the spool for the next run, reports.
    pub async fn finish(self) -> Result<SinkStats> {
        drop(self.tx);
        self.task.await.map_err(|e| {
            Error::InvalidArgument(format!(
                "the sink for {} failed ({e}); check the spool directory",
                self.target
            ))
        })
    }
}

/// Runs file work on tokio's blocking pool, never on a worker.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::InvalidArgument(format!("spool task failed: {e}")))?
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_string())
}

/// Where a queued batch is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// Handed to the disk thread at this time, not confirmed yet.
    Writing(Instant),
    /// In the spool.
    Stored,
    /// Only in memory: the spool was full or failed.
    Memory,
}

/// A closed batch not yet delivered.
struct Queued {
    /// Unique in this run (a split half shares its `seq` with the whole).
    id: u64,
    seq: u64,
    events: usize,
    /// The body, unless it must be read back from the spool.
    body: Option<Bytes>,
    /// Its events are settled in the crash counters once on disk (by the spool's thread) or,
    /// for a batch only memory holds, when it leaves the queue.
    disk: Where,
}

/// Events held in memory, by kind, kept up to date as batches change.
#[derive(Default)]
struct Weight {
    /// Batches whose body is in memory.
    held: usize,
    /// Of those, not in the spool (yet): cannot be dropped from memory.
    pinned: usize,
    /// Of those, only in memory.
    memory: usize,
}

impl Weight {
    fn of(q: &Queued) -> [usize; 3] {
        let held = q.body.is_some();
        [
            usize::from(held) * q.events,
            usize::from(held && q.disk != Where::Stored) * q.events,
            usize::from(held && q.disk == Where::Memory) * q.events,
        ]
    }

    fn add(&mut self, q: &Queued) {
        let [h, p, m] = Self::of(q);
        self.held += h;
        self.pinned += p;
        self.memory += m;
    }

    fn sub(&mut self, q: &Queued) {
        let [h, p, m] = Self::of(q);
        self.held -= h;
        self.pinned -= p;
        self.memory -= m;
    }
}

struct Worker<T> {
    cfg: SinkConfig,
    transport: Arc<T>,
    target: String,
    host: String,
    report: Reporter,
    lost: Arc<AtomicU64>,
    state: Option<Arc<Counters>>,
    disk: std::sync::mpsc::Sender<Command>,
    spool_dir: PathBuf,
    max_bytes: u64,
    /// Every closed batch not yet delivered, in delivery order.
    queue: VecDeque<Queued>,
    next_id: u64,
    weight: Weight,
    /// The batch being filled, and when it must close.
    batch: Vec<Value>,
    batch_deadline: Option<Instant>,
    next_seq: u64,
    /// `seq`s below this are reserved in the state file.
    reserved: u64,
    /// The id of the batch being delivered.
    inflight_id: Option<u64>,
    /// The `seq` being read back from the spool.
    reading: Option<u64>,
    /// Shutting down: a batch the spool cannot take now is dropped, not kept in memory.
    closing: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// The failure being retried (reported when it changes).
    failing: Option<String>,
    /// Why batches cannot go to disk right now (reported when it changes).
    disk_trouble: Option<String>,
    split_told: bool,
    stats: SinkStats,
    /// `stats`' counters, mirrored for readers while the sink runs.
    live: Arc<LiveStats>,
}

mod delivery;
