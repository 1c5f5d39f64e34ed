//! The pipeline's worker: batching, ordered delivery with retry, and what to do with each
//! answer of the transport and of the spool's thread.

use tokio::{sync::oneshot, time::timeout_at};

use super::*;
use crate::{
    error::{one_line, os_error},
    sinks::{
        spool::{Pushed, REJECTED_DIR, SetAside},
        transport::Failure,
    },
};

type Replies = mpsc::UnboundedReceiver<Reply>;

impl<T: Transport> Worker<T> {
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Value>,
        mut replies: Replies,
        hurry: Arc<tokio::sync::Notify>,
    ) -> SinkStats {
        let mut inflight: Option<JoinHandle<Outcome>> = None;
        let mut open = true;
        let mut disk_alive = true;
        let mut grace_end: Option<Instant> = None;
        let mut buf = Vec::with_capacity(256);
        loop {
            if inflight.is_none() {
                inflight = self.pump();
            }
            if let Some(end) = grace_end {
                let idle = inflight.is_none()
                    && self.reading.is_none()
                    && (self.queue.is_empty() || self.failing.is_some());
                if idle || Instant::now() >= end {
                    break;
                }
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let patience = self.patience_deadline(inflight.is_some());
            // Backpressure: stop taking events while more than `queue` wait for the disk.
            let take = open && self.weight.pinned <= self.cfg.queue;
            tokio::select! {
                n = rx.recv_many(&mut buf, 256), if take => {
                    if n == 0 {
                        open = false;
                        self.close_batch();
                        grace_end = Some(Instant::now() + SHUTDOWN_GRACE);
                    } else {
                        for ev in buf.drain(..) {
                            self.add(ev);
                        }
                    }
                }
                _ = sleep_until(self.batch_deadline.unwrap_or(far)), if self.batch_deadline.is_some() => {
                    self.close_batch();
                }
                r = replies.recv(), if disk_alive => match r {
                    Some(r) => self.on_reply(r),
                    None => {
                        disk_alive = false;
                        self.disk_gone();
                    }
                },
                done = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                    inflight = None;
                    let result = done.unwrap_or_else(|e| {
                        Outcome::Retry(Failure::plain(format!("delivery task failed: {e}")))
                    });
                    self.on_outcome(result);
                }
                _ = sleep_until(self.retry_at.unwrap_or(far)), if inflight.is_none() && self.retry_at.is_some() => {}
                _ = sleep_until(patience.unwrap_or(far)), if patience.is_some() => {}
                _ = sleep_until(grace_end.unwrap_or(far)), if grace_end.is_some() => {}
                _ = hurry.notified(), if grace_end.is_some() => grace_end = Some(Instant::now()),
            }
        }
        if let Some(task) = inflight {
            // Out of time: its batch is still queued and stays in the spool.
            task.abort();
            self.inflight_id = None;
        }
        self.shutdown(&mut replies).await
    }

    /// When the first batch may be sent although the disk has not confirmed it yet. Only a
    /// future instant: once past, whatever still holds the batch back (a retry backoff) has its
    /// own wake-up, and a past deadline would spin the loop.
    fn patience_deadline(&self, busy: bool) -> Option<Instant> {
        match self.queue.front() {
            Some(Queued {
                disk: Where::Writing(since),
                body: Some(_),
                ..
            }) if !busy => Some(*since + DISK_PATIENCE).filter(|d| *d > Instant::now()),
            _ => None,
        }
    }

    fn add(&mut self, ev: Value) {
        self.batch.push(ev);
        if self.batch.len() == 1 {
            self.batch_deadline = Some(Instant::now() + self.cfg.batch_wait);
        }
        if self.batch.len() >= self.cfg.batch_max {
            self.close_batch();
        }
    }

    /// Closes the open batch and hands it to the spool (write-ahead).
    fn close_batch(&mut self) {
        self.batch_deadline = None;
        if self.batch.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.batch);
        let b = batch::encode(
            &Envelope {
                host: &self.host,
                seq: self.next_seq,
                lost_total: self.lost.load(Ordering::Relaxed),
            },
            &events,
        );
        self.next_seq += b.events as u64;
        if self.state.is_some() && self.next_seq + SEQ_BLOCK / 2 > self.reserved {
            // Queued before the batch's write, so durable before the batch can be sent.
            self.reserved = self.reserved.max(self.next_seq) + SEQ_BLOCK;
            self.send_disk(Command::Reserve {
                upto: self.reserved,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let q = Queued {
            id,
            seq: b.seq,
            events: b.events,
            body: Some(b.body.clone()),
            disk: Where::Writing(Instant::now()),
        };
        self.weight.add(&q);
        self.queue.push_back(q);
        self.write(id, b);
    }

    fn write(&mut self, id: u64, batch: Encoded) {
        if !self.send_disk(Command::Write { id, batch }) {
            self.on_reply(Reply::Written {
                id,
                result: Err(Error::InvalidArgument("the spool thread stopped".into())),
            });
        }
    }

    fn send_disk(&self, cmd: Command) -> bool {
        self.disk.send(cmd).is_ok()
    }

    /// Starts delivering the first batch if it may go now, or asks the spool for its body.
    fn pump(&mut self) -> Option<JoinHandle<Outcome>> {
        if self.reading.is_some() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let head = self.queue.front()?;
        let Some(body) = &head.body else {
            let seq = head.seq;
            if self.send_disk(Command::Read { seq }) {
                self.reading = Some(seq);
            } else {
                self.drop_at(0, "the spool thread stopped", true);
            }
            return None;
        };
        if let Where::Writing(since) = head.disk
            && Instant::now() < since + DISK_PATIENCE
        {
            return None;
        }
        self.retry_at = None;
        self.inflight_id = Some(head.id);
        Some(tokio::spawn(self.transport.deliver(body.clone())))
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.queue.iter().rposition(|q| q.id == id)
    }

    /// Changes queued batch `i`, keeping the memory accounting right.
    fn edit(&mut self, i: usize, f: impl FnOnce(&mut Queued)) {
        self.weight.sub(&self.queue[i]);
        f(&mut self.queue[i]);
        self.weight.add(&self.queue[i]);
    }

    fn remove_at(&mut self, i: usize) -> Queued {
        let q = self.queue.remove(i).expect("index in range");
        self.weight.sub(&q);
        // On disk (or about to be), the spool's thread settles it; only memory held this one.
        if q.disk == Where::Memory
            && let Some(s) = &self.state
        {
            s.settle(q.events as u64);
        }
        q
    }

    fn drop_at(&mut self, i: usize, why: &str, disk_error: bool) {
        let q = self.remove_at(i);
        self.stats.dropped += q.events as u64;
        self.live
            .dropped
            .fetch_add(q.events as u64, std::sync::atomic::Ordering::Relaxed);
        if disk_error {
            self.stats.dropped_disk_error += q.events as u64;
        }
        (self.report)(&format!(
            "{why}: dropped {} events ({} dropped in all)",
            q.events, self.stats.dropped
        ));
    }

    fn on_reply(&mut self, r: Reply) {
        match r {
            Reply::Written { id, result } => {
                let Some(i) = self.position(id) else {
                    return; // delivered meanwhile, or split: nothing to do
                };
                match result {
                    Ok(Pushed::Written) => {
                        self.edit(i, |q| q.disk = Where::Stored);
                        if self.disk_trouble.take().is_some() {
                            (self.report)(&format!(
                                "spool {} takes batches again",
                                self.spool_dir.display()
                            ));
                        }
                        // Memory stays within `queue`: later batches are read back in turn.
                        if self.weight.held > self.cfg.queue && i > 0 {
                            self.edit(i, |q| q.body = None);
                        }
                    }
                    Ok(Pushed::Full) => {
                        let why = format!(
                            "spool {} is at its limit of {} bytes (--spool-max-bytes)",
                            self.spool_dir.display(),
                            self.max_bytes
                        );
                        self.not_stored(i, why, false);
                    }
                    Err(e) => {
                        let why = match os_error(&e) {
                            Some(code) => format!(
                                "writing to spool {} failed: {}{}",
                                self.spool_dir.display(),
                                std::io::Error::from_raw_os_error(code),
                                errno_name(code)
                                    .map(|n| format!(" ({n})"))
                                    .unwrap_or_default()
                            ),
                            None => format!(
                                "writing to spool {} failed: {}",
                                self.spool_dir.display(),
                                one_line(&e)
                            ),
                        };
                        self.not_stored(i, why, true);
                    }
                }
            }
            Reply::Read { seq, result } => {
                self.reading = None;
                if self.queue.front().is_none_or(|q| q.seq != seq) {
                    return;
                }
                match result {
                    Ok(body) => self.edit(0, |q| q.body = Some(body)),
                    Err((e, aside)) => {
                        let went = match aside {
                            SetAside::Kept(p) => format!("set aside as {}", p.display()),
                            SetAside::Removed => format!(
                                "removed ({REJECTED_DIR}/ and *.bad already use their quarter of --spool-max-bytes)"
                            ),
                        };
                        self.drop_at(0, &format!("{}: {went}", one_line(&e)), false);
                    }
                }
            }
            Reply::Rejected { batch, why, result } => {
                let kept = match result {
                    Ok(Some(p)) => format!("kept in {}", p.display()),
                    Ok(None) => format!(
                        "not kept ({REJECTED_DIR}/ and *.bad already use their quarter of --spool-max-bytes; delete what you have looked at)"
                    ),
                    Err(e) => format!("not kept ({})", one_line(&e)),
                };
                (self.report)(&format!(
                    "{} refused batch {} ({why}): {} events {kept}, not resent ({} rejected in all)",
                    self.target, batch.seq, batch.events, self.stats.rejected
                ));
            }
            Reply::Trouble(msg) => (self.report)(&msg),
        }
    }

    /// Batch `i` could not go to disk: it waits in memory if there is room (and it is not the
    /// last chance, at exit), else it is dropped and counted.
    fn not_stored(&mut self, i: usize, why: String, disk_error: bool) {
        let q = &self.queue[i];
        let inflight = self.inflight_id == Some(q.id);
        if inflight || (!self.closing && self.weight.memory + q.events <= self.cfg.queue) {
            if self.disk_trouble.as_deref() != Some(why.as_str()) {
                (self.report)(&format!(
                    "{why}: batches wait in memory (up to --queue {} events) and are not safe from a crash until it takes them again",
                    self.cfg.queue
                ));
                self.disk_trouble = Some(why);
            }
            self.edit(i, |q| q.disk = Where::Memory);
        } else {
            self.drop_at(i, &why, disk_error);
        }
    }

    fn on_outcome(&mut self, result: Outcome) {
        let id = self.inflight_id.take();
        if self.queue.front().map(|q| q.id) != id {
            return;
        }
        match result {
            Outcome::Delivered => {
                self.recovered();
                let q = self.remove_at(0);
                self.stats.delivered += q.events as u64;
                self.live
                    .delivered
                    .fetch_add(q.events as u64, std::sync::atomic::Ordering::Relaxed);
                if q.disk != Where::Memory {
                    self.send_disk(Command::Remove { seq: q.seq });
                }
            }
            Outcome::Retry(f) => {
                if self.failing.as_deref() != Some(f.class.as_str()) {
                    (self.report)(&format!(
                        "{}; batches wait in {} and are retried with backoff",
                        f.detail,
                        self.spool_dir.display()
                    ));
                    self.failing = Some(f.class);
                }
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(self.cfg.retry_max);
            }
            Outcome::Refused(why) => {
                self.recovered();
                self.refuse_head(why);
            }
            Outcome::TooLarge(why) => {
                self.recovered();
                if !self.split_head(&why) {
                    self.refuse_head(format!(
                        "{why}: a single event larger than the service accepts"
                    ));
                }
            }
        }
    }

    /// The service answered: if it had been failing, say it is back.
    fn recovered(&mut self) {
        if self.failing.take().is_some() {
            (self.report)(&format!("{} is back; delivering the backlog", self.target));
        }
        self.backoff = FIRST_BACKOFF;
        self.retry_at = None;
    }

    fn refuse_head(&mut self, why: String) {
        let q = self.remove_at(0);
        self.stats.rejected += q.events as u64;
        self.live
            .rejected
            .fetch_add(q.events as u64, std::sync::atomic::Ordering::Relaxed);
        let batch = Encoded {
            seq: q.seq,
            events: q.events,
            body: q.body.unwrap_or_default(),
        };
        if !self.send_disk(Command::Reject { batch, why }) {
            (self.report)(&format!(
                "{} refused batch {}: {} events not kept (the spool thread stopped)",
                self.target, q.seq, q.events
            ));
        }
    }

    /// Replaces the first batch with its two halves, first in line. False if it cannot be split.
    fn split_head(&mut self, why: &str) -> bool {
        let Some(halves) = self.queue[0].body.as_deref().and_then(batch::split) else {
            return false;
        };
        if !self.split_told {
            self.split_told = true;
            (self.report)(&format!(
                "{} answered {why} to a batch of {} events: resending batches in halves until they fit (a lower --batch-max saves the extra requests)",
                self.target, self.queue[0].events
            ));
        }
        let whole = self.queue.pop_front().expect("head exists");
        self.weight.sub(&whole);
        let disk = if whole.disk == Where::Memory {
            Where::Memory
        } else {
            Where::Writing(Instant::now())
        };
        let ids = [self.next_id, self.next_id + 1];
        self.next_id += 2;
        for (h, id) in halves.iter().zip(ids).rev() {
            let q = Queued {
                id,
                seq: h.seq,
                events: h.events,
                body: Some(h.body.clone()),
                disk,
            };
            self.weight.add(&q);
            self.queue.push_front(q);
        }
        if disk != Where::Memory {
            let seq = whole.seq;
            if !self.send_disk(Command::Split { seq, ids, halves }) {
                for id in ids {
                    self.on_reply(Reply::Written {
                        id,
                        result: Err(Error::InvalidArgument("the spool thread stopped".into())),
                    });
                }
            }
        }
        true
    }

    fn disk_gone(&mut self) {
        (self.report)(&format!(
            "the spool thread for {} stopped: batches are kept in memory only",
            self.spool_dir.display()
        ));
        for i in 0..self.queue.len() {
            if matches!(self.queue[i].disk, Where::Writing(_)) {
                self.edit(i, |q| q.disk = Where::Memory);
            }
        }
    }

    /// Waits until the spool has answered every write and read under way, or `deadline`.
    async fn await_disk(&mut self, replies: &mut Replies, deadline: Instant) {
        while self.reading.is_some() || self.weight.pinned > self.weight.memory {
            match timeout_at(deadline, replies.recv()).await {
                Ok(Some(r)) => self.on_reply(r),
                _ => break,
            }
        }
    }

    async fn shutdown(mut self, replies: &mut Replies) -> SinkStats {
        let deadline = Instant::now() + DISK_GRACE;
        self.await_disk(replies, deadline).await;
        // Batches only memory holds get a last chance at the spool; failing that, a drop.
        self.closing = true;
        for i in 0..self.queue.len() {
            if self.queue[i].disk == Where::Memory
                && let Some(body) = self.queue[i].body.clone()
            {
                self.edit(i, |q| q.disk = Where::Writing(Instant::now()));
                let q = &self.queue[i];
                let batch = Encoded {
                    seq: q.seq,
                    events: q.events,
                    body,
                };
                self.write(q.id, batch);
            }
        }
        self.await_disk(replies, deadline).await;
        while let Some(i) = self
            .queue
            .iter()
            .position(|q| matches!(q.disk, Where::Writing(_)))
        {
            self.drop_at(
                i,
                &format!(
                    "spool {} did not take the batch within {} s (disk hung?)",
                    self.spool_dir.display(),
                    DISK_GRACE.as_secs()
                ),
                true,
            );
        }
        // Every event taken is now delivered, on disk, or dropped and reported.
        if let Some(s) = &self.state {
            s.settle_all();
        }
        let (tx, rx) = oneshot::channel();
        let stored: usize = self.queue.iter().map(|q| q.events).sum();
        self.stats.spooled = stored as u64;
        if self.send_disk(Command::Finish(tx))
            && let Ok(Ok(f)) = timeout_at(deadline.max(Instant::now() + DISK_PATIENCE), rx).await
        {
            self.stats.spooled = f.events as u64;
        }
        while let Ok(r) = replies.try_recv() {
            self.on_reply(r);
        }
        self.stats
    }
}

/// The symbolic name of the errors a spool disk typically runs into.
fn errno_name(code: i32) -> Option<&'static str> {
    Some(match code {
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EIO => "EIO",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        _ => return None,
    })
}
