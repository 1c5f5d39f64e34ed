//! Readers for both transports, generic over what a record decodes into.
//!
//! [`Buffers`] waits on the buffers' fds with tokio's `AsyncFd` and, on each wake, decodes
//! everything available, on the task that awaits it: a consumer that reads and handles events
//! in one loop pays no channel hop or task wake-up per event (`mapscope exec`).
//! [`EventStream`] puts a [`Buffers`] on its own task feeding a bounded channel, for consumers
//! that want a stream (the agent). Either way, if the consumer falls behind, the reader stops
//! draining and the kernel buffer fills and counts the losses — pressure ends up in a counter,
//! never in a silent drop.

use std::{
    future::poll_fn,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
};

use aya::{
    maps::{
        Map, MapData, PerfEventArray, RingBuf,
        perf::{PerfEvent, PerfEventArrayBuffer},
    },
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

/// One transport's kernel buffers, read in place by whoever awaits [`Buffers::read`].
pub struct Buffers {
    source: Source,
    stats: Arc<ReaderStats>,
    /// A perf sample that straddles the end of its ring, put back together (kept to reuse).
    joined: Vec<u8>,
}

enum Source {
    Ring(AsyncFd<RingBuf<MapData>>),
    /// One buffer per online CPU.
    Perf(Vec<AsyncFd<PerfEventArrayBuffer<MapData>>>),
}

fn map_err(source: aya::maps::MapError) -> Error {
    Error::Map {
        name: "exec events",
        source,
    }
}

impl Buffers {
    /// Reads a ring buffer map.
    pub fn ring(map: Map) -> Result<Self> {
        let ring = RingBuf::try_from(map).map_err(map_err)?;
        // SAFETY: RingBuf owns its map fd and keeps it open, unchanged, for as long as it lives.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| Error::io("polling the ring buffer", e.into()))?;
        Ok(Self::new(Source::Ring(fd)))
    }

    /// Reads one perf buffer of `pages` pages per online CPU.
    pub fn perf(map: Map, pages: usize) -> Result<Self> {
        let mut perf = PerfEventArray::try_from(map).map_err(map_err)?;
        let cpus = online_cpus().map_err(|(what, e)| Error::io(format!("reading {what}"), e))?;
        let mut fds = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let buf = perf.open(cpu, Some(pages)).map_err(|e| {
                Error::io(
                    format!("opening perf buffer on CPU {cpu}"),
                    std::io::Error::other(e),
                )
            })?;
            // SAFETY: the buffer owns its perf fd and keeps it open, unchanged, while it lives.
            let fd = unsafe { AsyncFd::register_with_interest(buf, Interest::READABLE) }
                .map_err(|e| Error::io("polling a perf buffer", e.into()))?;
            fds.push(fd);
        }
        Ok(Self::new(Source::Perf(fds)))
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            stats: Arc::default(),
            joined: Vec::new(),
        }
    }

    /// Reader-side counters.
    pub fn stats(&self) -> &Arc<ReaderStats> {
        &self.stats
    }

    /// Waits until a buffer has records, then decodes every record available into `out` with
    /// `decode` (`None`: malformed, counted). Err only if polling a buffer's fd fails.
    ///
    /// Cancel-safe (a `select!` or timeout may drop it): records are taken only in the poll
    /// that completes it, never across an await.
    pub async fn read<T>(
        &mut self,
        out: &mut Vec<T>,
        mut decode: impl FnMut(&[u8]) -> Option<T>,
    ) -> std::io::Result<()> {
        let Self {
            source,
            stats,
            joined,
        } = self;
        let mut push = |bytes: &[u8]| match decode(bytes) {
            Some(item) => out.push(item),
            None => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
            }
        };
        poll_fn(|cx| match source {
            Source::Ring(fd) => {
                let mut guard = std::task::ready!(fd.poll_read_ready_mut(cx))?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    push(&item);
                }
                guard.clear_ready();
                Poll::Ready(Ok(()))
            }
            Source::Perf(fds) => {
                // Drain every CPU's buffer that is ready; wait (on all of them) if none is.
                let mut any = false;
                for fd in fds.iter_mut() {
                    let Poll::Ready(guard) = fd.poll_read_ready_mut(cx) else {
                        continue;
                    };
                    let mut guard = guard?;
                    guard.get_inner_mut().for_each(|ev| match ev {
                        PerfEvent::Sample { head, tail: [] } => push(head),
                        // A sample that straddles the end of the ring arrives in two pieces.
                        PerfEvent::Sample { head, tail } => {
                            joined.clear();
                            joined.extend_from_slice(head);
                            joined.extend_from_slice(tail);
                            push(joined);
                        }
                        PerfEvent::Lost { count } => {
                            stats.perf_lost.fetch_add(count, Ordering::Relaxed);
                        }
                    });
                    guard.clear_ready();
                    any = true;
                }
                if any {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// Decodes one exec record (the reader's decoder for [`Exec`]).
pub fn decode_exec(bytes: &[u8]) -> Option<Exec> {
    Exec::decode(bytes).ok()
}

/// The live stream of exec events; dropping it stops the reader.
pub struct EventStream {
    rx: mpsc::Receiver<Exec>,
    stats: Arc<ReaderStats>,
    task: JoinHandle<()>,
}

impl EventStream {
    /// Reads `buffers` on a task of its own into a channel of `capacity` events.
    pub fn spawn(mut buffers: Buffers, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::clone(buffers.stats());
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            while buffers.read(&mut batch, decode_exec).await.is_ok() {
                for e in batch.drain(..) {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Self { rx, stats, task }
    }

    /// The next event, or `None` once the reader has stopped.
    pub async fn recv(&mut self) -> Option<Exec> {
        self.rx.recv().await
    }

    /// An event already waiting, without waiting.
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
        self.task.abort();
    }
}
