//! Async readers for both transports, each feeding one typed stream of [`Exec`] events.
//!
//! A reader waits on the buffer's fd with tokio's `AsyncFd`, drains everything available on each
//! wake, then hands events to a bounded channel. If the consumer falls behind, the channel
//! fills, the reader stops draining, and the kernel buffer fills and counts the losses — so
//! pressure ends up in a counter, never in a silent drop.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya::{
    maps::{Map, PerfEventArray, RingBuf, perf::PerfEvent},
    util::online_cpus,
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    task::JoinHandle,
};

use super::event::Exec;
use crate::{Error, Result};

/// Counters kept by the readers themselves.
#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Samples too short to be an event (a layout mismatch; should stay 0).
    pub malformed: AtomicU64,
    /// Losses the perf buffers reported (PERF_RECORD_LOST). The kernel's own lost counter
    /// already includes them, so this is a cross-check, not an addition.
    pub perf_lost: AtomicU64,
}

/// The live stream of exec events; dropping it stops the readers.
pub struct EventStream {
    rx: mpsc::Receiver<Exec>,
    stats: Arc<ReaderStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl EventStream {
    /// The next event, or `None` once every reader has stopped.
    pub async fn recv(&mut self) -> Option<Exec> {
        self.rx.recv().await
    }

    /// An event already waiting, without waiting: lets a consumer handle a burst, then flush
    /// its output once.
    pub fn try_recv(&mut self) -> Option<Exec> {
        self.rx.try_recv().ok()
    }

    /// Reader-side counters.
    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn map_err(source: aya::maps::MapError) -> Error {
    Error::Map {
        name: "exec events",
        source,
    }
}

/// Reads the ring buffer.
pub fn ring(map: Map, capacity: usize) -> Result<EventStream> {
    let ring = RingBuf::try_from(map).map_err(map_err)?;
    // SAFETY: RingBuf owns its map fd and keeps it open, unchanged, for as long as it lives.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| Error::io("polling the exec ring buffer", e.into()))?;
    let (tx, rx) = mpsc::channel(capacity);
    let stats = Arc::new(ReaderStats::default());
    let task_stats = Arc::clone(&stats);
    let task = tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            let mut batch = Vec::new();
            {
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    match Exec::decode(&item) {
                        Ok(e) => batch.push(e),
                        Err(_) => {
                            task_stats.malformed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            guard.clear_ready();
            for e in batch {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(EventStream {
        rx,
        stats,
        tasks: vec![task],
    })
}

/// Reads one perf buffer per online CPU.
pub fn perf(map: Map, pages: usize, capacity: usize) -> Result<EventStream> {
    let mut perf = PerfEventArray::try_from(map).map_err(map_err)?;
    let cpus = online_cpus().map_err(|(what, e)| Error::io(format!("reading {what}"), e))?;
    let (tx, rx) = mpsc::channel(capacity);
    let stats = Arc::new(ReaderStats::default());
    let mut tasks = Vec::new();
    for cpu in cpus {
        let buf = perf.open(cpu, Some(pages)).map_err(|e| {
            Error::io(
                format!("opening perf buffer on CPU {cpu}"),
                std::io::Error::other(e),
            )
        })?;
        // SAFETY: the buffer owns its perf fd and keeps it open, unchanged, while it lives.
        let mut fd = unsafe { AsyncFd::register_with_interest(buf, Interest::READABLE) }
            .map_err(|e| Error::io("polling a perf buffer", e.into()))?;
        let tx = tx.clone();
        let task_stats = Arc::clone(&stats);
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(mut guard) = fd.readable_mut().await else {
                    return;
                };
                let mut batch = Vec::new();
                guard.get_inner_mut().for_each(|ev| match ev {
                    PerfEvent::Sample { head, tail } => {
                        // A sample that straddles the end of the ring arrives in two pieces.
                        let decoded = if tail.is_empty() {
                            Exec::decode(head)
                        } else {
                            Exec::decode(&[head, tail].concat())
                        };
                        match decoded {
                            Ok(e) => batch.push(e),
                            Err(_) => {
                                task_stats.malformed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    PerfEvent::Lost { count } => {
                        task_stats.perf_lost.fetch_add(count, Ordering::Relaxed);
                    }
                });
                guard.clear_ready();
                for e in batch {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    Ok(EventStream { rx, stats, tasks })
}
