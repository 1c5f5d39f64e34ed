//! Web-service sink: events are POSTed as JSON batches, in order, at least once.
//!
//! - Batches close at `batch_max` events or `batch_wait` after their first event.
//! - A failed POST keeps its batch in memory and retries with exponential backoff (100 ms,
//!   doubling, capped at `retry_max`); later batches queue behind it, so order is kept.
//! - When the service stays down (3 failed attempts, or more than `queue` events waiting in
//!   memory) the waiting batches move to the on-disk [`Spool`], oldest first; new batches follow
//!   them there until the spool has been replayed.
//! - Events are dropped only when the spool is full, and then counted and reported on stderr.
//! - Every batch carries a `seq` (monotonic across restarts, via the spool) so the receiver can
//!   drop a duplicate if a POST succeeded but its answer was lost.
//!
//! Body: `{"schema":1,"agent":"mapscope","host":"…","seq":N,"lost_total":L,"events":[…]}`.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, sleep_until, timeout},
};

use super::spool::Spool;
use crate::{Error, Result, exec::event::SCHEMA_VERSION};

/// Failed attempts after which the service counts as down and batches go to disk.
const ATTEMPTS_BEFORE_SPOOL: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Dropped because the spool was full.
    pub dropped: u64,
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
        let worker = Worker {
            host: hostname(),
            url,
            client,
            next_seq: spool.next_seq(),
            spool,
            pending: VecDeque::new(),
            pending_events: 0,
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

    /// Queues one event; waits while the in-memory queue is full (back-pressure, not loss).
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
    pub async fn finish(self) -> SinkStats {
        drop(self.tx);
        self.task.await.unwrap_or_default()
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

/// A batch waiting in memory.
struct Batch {
    seq: u64,
    body: Vec<u8>,
    events: usize,
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
        let mut open = true;
        while open {
            // Wait for the first event of a batch, or for a retry to fall due.
            let first = match self.retry_at {
                Some(at) if self.has_backlog() => tokio::select! {
                    ev = rx.recv() => ev,
                    _ = sleep_until(at) => { self.deliver_backlog().await; continue; }
                },
                _ if self.has_backlog() => {
                    self.deliver_backlog().await;
                    continue;
                }
                _ => rx.recv().await,
            };
            let Some(first) = first else { break };
            let mut events = vec![first];
            let deadline = Instant::now() + self.cfg.batch_wait;
            while events.len() < self.cfg.batch_max {
                match timeout_at(deadline, rx.recv()).await {
                    Some(Some(ev)) => events.push(ev),
                    Some(None) => {
                        open = false;
                        break;
                    }
                    None => break,
                }
            }
            self.enqueue(events);
            if self.retry_at.is_none_or(|at| Instant::now() >= at) {
                self.deliver_backlog().await;
            }
        }
        // Closing: one more attempt for everything, then keep the rest for the next run.
        if self.has_backlog() {
            self.retry_at = None;
            self.deliver_backlog().await;
        }
        self.spill_all();
        self.stats.spooled = self.spool.events() as u64;
        self.stats
    }

    fn has_backlog(&self) -> bool {
        !self.spool.is_empty() || !self.pending.is_empty()
    }

    fn enqueue(&mut self, events: Vec<Value>) {
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
        let body = serde_json::to_vec(&body).unwrap_or_default();
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
            match self.spool.push(b.seq, &b.body, b.events) {
                Ok(true) => {}
                Ok(false) => {
                    self.stats.dropped += b.events as u64;
                    eprintln!(
                        "mapscope: spool {} full ({} of {} bytes): dropped {} events ({} dropped in all)",
                        self.spool.dir().display(),
                        self.spool.bytes(),
                        self.cfg.spool_max_bytes,
                        b.events,
                        self.stats.dropped
                    );
                }
                Err(e) => {
                    self.stats.dropped += b.events as u64;
                    eprintln!(
                        "mapscope: {e}: dropped {} events ({} dropped in all)",
                        b.events, self.stats.dropped
                    );
                }
            }
        }
    }

    /// Sends the spool, then the in-memory batches, oldest first, until one fails.
    async fn deliver_backlog(&mut self) {
        loop {
            let (seq, body, events, from_spool) = match self.spool.oldest() {
                Ok(Some(s)) => (s.seq, s.body, s.events, true),
                Ok(None) => match self.pending.front() {
                    Some(b) => (b.seq, b.body.clone(), b.events, false),
                    None => return,
                },
                Err(e) => {
                    eprintln!("mapscope: {e}");
                    return;
                }
            };
            if let Err(why) = self.post(body).await {
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
                return;
            }
            if self.attempts > 0 {
                eprintln!(
                    "mapscope: web service {} is back; delivering the backlog",
                    self.url
                );
            }
            self.attempts = 0;
            self.backoff = FIRST_BACKOFF;
            self.retry_at = None;
            self.stats.delivered += events as u64;
            if from_spool {
                if let Err(e) = self.spool.remove(seq) {
                    eprintln!("mapscope: {e}");
                    return;
                }
            } else if let Some(b) = self.pending.pop_front() {
                self.pending_events -= b.events;
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> std::result::Result<(), String> {
        let resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }
}

/// `tokio::time::timeout_at` returning `None` on timeout.
async fn timeout_at<F: Future>(deadline: Instant, f: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}
