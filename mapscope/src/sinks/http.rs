//! Web-service sink: events are POSTed as JSON batches, in order, at least once.
//!
//! - Batches close at `batch_max` events or `batch_wait` after their first event.
//! - The worker keeps taking events while a POST is in flight, so a slow service never stalls
//!   the event readers (which would turn into kernel-side loss).
//! - A failed POST (connection error, timeout, 5xx, 408, 429) keeps its batch and retries with
//!   exponential backoff (100 ms, doubling, capped at `retry_max`); later batches queue behind
//!   it, so order is kept.
//! - When the service stays down (3 failed attempts), or more than `queue` events wait in
//!   memory, the waiting batches move to the on-disk [`Spool`], oldest first; new batches follow
//!   them there until the spool has been replayed.
//! - A batch the service refuses for good (any other 4xx) is not retried: it is kept in the
//!   spool's `rejected/` directory and counted, so one bad batch cannot block the stream.
//! - Events are dropped only when the spool is full, and then counted and reported on stderr.
//! - Every batch carries `seq`, which starts at the start-up time in microseconds (or after the
//!   newest spooled batch) and grows by one per batch, so it increases across restarts too and a
//!   receiver can drop a duplicate when a POST succeeded but its answer was lost.
//! - On shutdown, queued batches get [`SHUTDOWN_GRACE`] to be delivered; whatever is left (or
//!   everything, if the service is failing) goes to the spool for the next run.
//!
//! Body: `{"schema":1,"agent":"mapscope","host":"…","seq":N,"lost_total":L,"events":[…]}`.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, sleep_until, timeout},
};

use super::spool::{REJECTED_DIR, Spool};
use crate::{Error, Result, error::one_line, exec::event::SCHEMA_VERSION};

/// Failed attempts after which the service counts as down and batches go to disk.
const ATTEMPTS_BEFORE_SPOOL: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown keeps delivering a healthy backlog before spooling the rest.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings of the sink (see the CLI's `--post*` flags).
#[derive(Clone, Debug)]
pub struct HttpSinkConfig {
    pub url: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// Events held in memory (queued or awaiting retry) before they go to disk.
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
    /// Dropped because the spool was full, or its file could not be read back.
    pub dropped: u64,
    /// Refused by the service for good (4xx); kept in the spool's `rejected/` directory.
    pub rejected: u64,
}

/// Handle to the running sink.
pub struct HttpSink {
    tx: mpsc::Sender<Value>,
    lost: Arc<AtomicU64>,
    task: JoinHandle<SinkStats>,
}

impl HttpSink {
    /// Validates the URL and the spool, warns if the service is unreachable right now (events
    /// then wait in the spool), and starts the delivery task.
    pub async fn start(cfg: HttpSinkConfig) -> Result<Self> {
        let url = reqwest::Url::parse(&cfg.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "--post {:?} is not a valid http(s) URL (e.g. http://127.0.0.1:8080/events)",
                    cfg.url
                ))
            })?;
        if cfg.batch_max == 0 || cfg.queue == 0 {
            return Err(Error::InvalidArgument(
                "--batch-max and --queue must be at least 1".into(),
            ));
        }
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
        if !spool.is_empty() {
            eprintln!(
                "mapscope: {} events from an earlier run wait in {}; replaying them first",
                spool.events(),
                spool.dir().display()
            );
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("building the HTTP client: {e}")))?;
        if let Err(why) = reachable(&url).await {
            eprintln!(
                "mapscope: warning: web service {url} is unreachable ({why}); events will wait in {} and be sent when it is back",
                spool.dir().display()
            );
        }
        let (tx, rx) = mpsc::channel(cfg.queue);
        let lost = Arc::new(AtomicU64::new(0));
        let start_seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let worker = Worker {
            host: hostname(),
            url,
            client,
            next_seq: spool.next_seq().max(start_seq),
            spool,
            pending: VecDeque::new(),
            pending_events: 0,
            batch: Vec::new(),
            batch_deadline: None,
            attempts: 0,
            backoff: FIRST_BACKOFF,
            retry_at: None,
            stats: SinkStats::default(),
            lost: Arc::clone(&lost),
            cfg,
        };
        Ok(Self {
            tx,
            lost,
            task: tokio::spawn(worker.run(rx)),
        })
    }

    /// Queues one event; waits only while `queue` events are already waiting to be batched.
    pub async fn send(&self, event: Value) -> Result<()> {
        self.tx
            .send(event)
            .await
            .map_err(|_| Error::InvalidArgument("the web-service sink stopped".into()))
    }

    /// Records the kernel's lost-event total, carried in every later batch.
    pub fn set_lost(&self, total: u64) {
        self.lost.store(total, Ordering::Relaxed);
    }

    /// Flushes: sends what it can now, spools the rest for the next run, and reports.
    pub async fn finish(self) -> Result<SinkStats> {
        drop(self.tx);
        self.task.await.map_err(|e| {
            Error::InvalidArgument(format!(
                "the web-service sink failed ({e}); check the spool directory"
            ))
        })
    }
}

/// Cheap start-up check: can we open a TCP connection to the service at all?
async fn reachable(url: &reqwest::Url) -> std::result::Result<(), String> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    match timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_string())
}

/// How one POST ended.
enum Outcome {
    Delivered,
    /// Worth retrying: the service may accept it later.
    Retry(String),
    /// The service refused this batch for good.
    Rejected(String),
}

/// Classifies an HTTP status: 2xx delivered; 408, 429 and 5xx retried; other 4xx refused.
fn outcome(status: reqwest::StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        Outcome::Rejected(format!("HTTP {status}"))
    } else {
        Outcome::Retry(format!("HTTP {status}"))
    }
}

/// A batch waiting in memory.
struct Batch {
    seq: u64,
    body: Arc<Vec<u8>>,
    events: usize,
}

/// The POST under way.
struct InFlight {
    seq: u64,
    events: usize,
    body: Arc<Vec<u8>>,
    task: JoinHandle<Outcome>,
}

struct Worker {
    cfg: HttpSinkConfig,
    url: reqwest::Url,
    client: reqwest::Client,
    host: String,
    spool: Spool,
    /// Batches newer than everything in the spool, oldest first.
    pending: VecDeque<Batch>,
    pending_events: usize,
    /// The batch being filled, and when it must close.
    batch: Vec<Value>,
    batch_deadline: Option<Instant>,
    next_seq: u64,
    attempts: u32,
    backoff: Duration,
    /// When the next delivery attempt is due while the service is failing.
    retry_at: Option<Instant>,
    stats: SinkStats,
    lost: Arc<AtomicU64>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Value>) -> SinkStats {
        let mut inflight: Option<InFlight> = None;
        let mut open = true;
        let mut grace_end: Option<Instant> = None;
        loop {
            if inflight.is_none() && self.due() {
                inflight = self.start_next();
            }
            if let Some(end) = grace_end {
                let idle = inflight.is_none() && (!self.has_backlog() || self.attempts > 0);
                if idle || Instant::now() >= end {
                    break;
                }
            }
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                ev = rx.recv(), if open => match ev {
                    Some(ev) => self.add(ev),
                    None => {
                        open = false;
                        self.close_batch();
                        grace_end = Some(Instant::now() + SHUTDOWN_GRACE);
                    }
                },
                _ = sleep_until(self.batch_deadline.unwrap_or(far)), if self.batch_deadline.is_some() => {
                    self.close_batch();
                }
                done = async { (&mut inflight.as_mut().expect("guarded").task).await }, if inflight.is_some() => {
                    let f = inflight.take().expect("guarded");
                    let result = done.unwrap_or_else(|e| Outcome::Retry(format!("request task failed: {e}")));
                    self.settle(f, result);
                }
                _ = sleep_until(self.retry_at.unwrap_or(far)), if inflight.is_none() && self.retry_at.is_some() => {}
                _ = sleep_until(grace_end.unwrap_or(far)), if grace_end.is_some() => {}
            }
        }
        if let Some(f) = inflight {
            // Out of time: its batch is still queued (memory or spool) and goes to disk below.
            f.task.abort();
        }
        self.spill_all();
        self.stats.spooled = self.spool.events() as u64;
        self.stats
    }

    fn has_backlog(&self) -> bool {
        !self.spool.is_empty() || !self.pending.is_empty()
    }

    fn due(&self) -> bool {
        self.has_backlog() && self.retry_at.is_none_or(|at| Instant::now() >= at)
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

    fn close_batch(&mut self) {
        self.batch_deadline = None;
        if self.batch.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.batch);
        let seq = self.next_seq;
        self.next_seq += 1;
        let n = events.len();
        let body = serde_json::json!({
            "schema": SCHEMA_VERSION,
            "agent": "mapscope",
            "host": self.host,
            "seq": seq,
            "lost_total": self.lost.load(Ordering::Relaxed),
            "events": events,
        });
        let body = Arc::new(serde_json::to_vec(&body).unwrap_or_default());
        self.pending.push_back(Batch {
            seq,
            body,
            events: n,
        });
        self.pending_events += n;
        // Down long enough, or too much in memory: everything waiting goes to disk, in order.
        if self.attempts >= ATTEMPTS_BEFORE_SPOOL || self.pending_events > self.cfg.queue {
            self.spill_all();
        }
    }

    /// Moves every in-memory batch to the spool, oldest first; counts what does not fit.
    fn spill_all(&mut self) {
        while let Some(b) = self.pending.pop_front() {
            self.pending_events -= b.events;
            let why = match self.spool.push(b.seq, &b.body, b.events) {
                Ok(true) => continue,
                Ok(false) => format!(
                    "spool {} full ({} of {} bytes)",
                    self.spool.dir().display(),
                    self.spool.bytes(),
                    self.cfg.spool_max_bytes
                ),
                Err(e) => one_line(&e),
            };
            self.stats.dropped += b.events as u64;
            eprintln!(
                "mapscope: {why}: dropped {} events ({} dropped in all)",
                b.events, self.stats.dropped
            );
        }
    }

    /// Starts the POST of the oldest batch (spool first, then memory).
    fn start_next(&mut self) -> Option<InFlight> {
        let (seq, body, events) = loop {
            match self.spool.oldest() {
                Ok(Some(s)) => break (s.seq, Arc::new(s.body), s.events),
                Ok(None) => {
                    let b = self.pending.front()?;
                    break (b.seq, Arc::clone(&b.body), b.events);
                }
                Err((seq, events, e)) => {
                    // Never retry an unreadable file forever: set it aside and go on.
                    let moved = self.spool.quarantine(seq);
                    self.stats.dropped += events as u64;
                    eprintln!(
                        "mapscope: {}: set aside as {}; dropped {events} events ({} dropped in all)",
                        one_line(&e),
                        moved.map_or_else(|| "-".into(), |p| p.display().to_string()),
                        self.stats.dropped
                    );
                }
            }
        };
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let task = tokio::spawn(async move {
            match request.send().await {
                Ok(resp) => outcome(resp.status()),
                Err(e) => Outcome::Retry(one_line(&e)),
            }
        });
        Some(InFlight {
            seq,
            events,
            body,
            task,
        })
    }

    /// Removes a batch that needs no more delivery, wherever it now is.
    fn forget(&mut self, seq: u64) {
        if self.spool.contains(seq) {
            if let Err(e) = self.spool.remove(seq) {
                eprintln!("mapscope: {}", one_line(&e));
            }
        } else if self.pending.front().is_some_and(|b| b.seq == seq)
            && let Some(b) = self.pending.pop_front()
        {
            self.pending_events -= b.events;
        }
    }

    fn settle(&mut self, f: InFlight, result: Outcome) {
        match result {
            Outcome::Delivered => {
                if self.attempts > 0 {
                    eprintln!(
                        "mapscope: web service {} is back; delivering the backlog",
                        self.url
                    );
                }
                self.attempts = 0;
                self.backoff = FIRST_BACKOFF;
                self.retry_at = None;
                self.stats.delivered += f.events as u64;
                self.forget(f.seq);
            }
            Outcome::Rejected(why) => {
                // The service answered, so it is up: no backoff, but never resend this batch.
                self.attempts = 0;
                self.retry_at = None;
                self.stats.rejected += f.events as u64;
                let kept = match self.spool.reject(f.seq, &f.body, f.events) {
                    Ok(p) => p.display().to_string(),
                    Err(e) => format!("nowhere ({})", one_line(&e)),
                };
                self.forget(f.seq);
                eprintln!(
                    "mapscope: web service refused batch {} ({why}): {} events kept in {kept}, not resent ({} rejected in all; see {}/)",
                    f.seq,
                    f.events,
                    self.stats.rejected,
                    self.spool.dir().join(REJECTED_DIR).display()
                );
            }
            Outcome::Retry(why) => {
                self.attempts += 1;
                if self.attempts == 1 {
                    eprintln!(
                        "mapscope: web service {} failed ({why}); retrying with backoff",
                        self.url
                    );
                }
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(self.cfg.retry_max);
                if self.attempts >= ATTEMPTS_BEFORE_SPOOL {
                    self.spill_all();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn status_classes() {
        assert!(matches!(outcome(StatusCode::OK), Outcome::Delivered));
        assert!(matches!(
            outcome(StatusCode::NO_CONTENT),
            Outcome::Delivered
        ));
        for retry in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert!(matches!(outcome(retry), Outcome::Retry(_)), "{retry}");
        }
        for refuse in [
            StatusCode::BAD_REQUEST,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::NOT_FOUND,
        ] {
            assert!(matches!(outcome(refuse), Outcome::Rejected(_)), "{refuse}");
        }
    }
}
